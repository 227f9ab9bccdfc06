/**
 * `npm run bench -- all [--quick] [--skip a,b] [--only a,b]`
 *
 * Every benchmark, each as its own child process (a fresh heap, and a crash in
 * one does not lose the others), then the plots (docs/bench/*.svg). `--quick`
 * runs the same tables on smaller sizes and must finish in under 10 minutes on
 * a 2-core machine; the run prints how long each step and the whole took and
 * writes scripts/bench/results/all-<date>.json.
 */
import { spawnSync } from "node:child_process"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { ensureBuilt } from "./_allidb.js"
import { BENCH_DIR, flag, fmt, log, option, quick, ROOT, table, writeResult } from "./_lib.js"
import { ensurePeers, peerVersions } from "./_peers.js"

/** A step that outlives its timeout is stopped (SIGTERM) and the run goes on. */
type Step = readonly [label: string, script: string, args: ReadonlyArray<string>, timeoutSeconds?: number]

const quickSteps: ReadonlyArray<Step> = [
  ["storage", "storage", ["--writes", "20000", "--gets", "10000", "--runs", "3"], 90],
  ["index", "index", ["--quick", "--n", "10000", "--queries", "100"], 150],
  ["ingest", "ingest", ["--quick", "--n", "5k", "--repeats", "3", "--once", "AlliDB HTTP,AlliDB HTTP wait=false,AlliDB RPC client"]],
  ["query", "query", ["--quick", "--queries", "200", "--efs", "10,16,64,128"]],
  ["query-768", "query", ["--quick", "--n", "3k", "--dim", "768", "--queries", "100", "--efs", "16,64", "--peers", "hnswlib", "--no-http"]],
  ["hybrid", "hybrid", ["--quick", "--queries", "100", "--efs", "16,64", "--rounds", "2"]],
  ["mixed", "mixed", ["--quick"]],
  ["restart", "restart", ["--quick", "--repeats", "2"]],
  ["scale", "scale", ["--quick", "--sizes", "2k,5k,10k"]],
]

// Ordered so the headline figures (100k × 128) come first. On this shared
// 2-core machine one single-threaded HNSW build of 100k takes minutes, so the
// long ingest paths run once and the in-process load doubles as the cached
// data dir for the query workloads.
const fullSteps: ReadonlyArray<Step> = [
  ["storage", "storage", []],
  ["index", "index", []],
  [
    "ingest",
    "ingest",
    ["--repeats", option("ingest-repeats", "1"), "--paths", "hnswlib-node addPoint,AlliDB in-process,AlliDB HTTP,AlliDB RPC client"],
  ],
  ["query", "query", []],
  ["restart", "restart", ["--repeats", option("restart-repeats", "2")]],
  ["hybrid", "hybrid", ["--hnswlib", "no"]],
  ["mixed", "mixed", []],
  ["scale", "scale", ["--sizes", option("scale-sizes", "10k,100k,1M")]],
  ["query-768", "query", ["--n", option("n-768", "100k"), "--dim", "768", "--queries", "300", "--no-http", "--efs", "16,32,64,128,256"]],
]

const list = (name: string) =>
  option(name, "")
    .split(",")
    .filter((s) => s !== "")

const started = Date.now()
ensureBuilt()
ensurePeers()
const only = list("only")
const skip = list("skip")
const steps = (quick ? quickSteps : fullSteps).filter(([label]) => (only.length === 0 || only.includes(label)) && !skip.includes(label))
// node + the tsx loader (not the tsx wrapper), so a step's timeout stops the step itself.
const tsxLoader = pathToFileURL(Path.join(ROOT, "node_modules", "tsx", "dist", "loader.mjs")).href
const runScript = (script: string, args: ReadonlyArray<string>, timeoutSeconds?: number) =>
  spawnSync(process.execPath, ["--import", tsxLoader, Path.join(BENCH_DIR, `${script}.ts`), ...args], {
    stdio: "inherit",
    env: process.env,
    ...(timeoutSeconds === undefined ? {} : { timeout: timeoutSeconds * 1000, killSignal: "SIGTERM" as const }),
  })
const done: Array<{ step: string; seconds: number; exit: number | null }> = []
for (const [label, script, args, timeoutSeconds] of steps) {
  log(`\n==================== ${label}: npm run bench -- ${script} ${args.join(" ")} ====================`)
  const t0 = Date.now()
  const r = runScript(script, args, timeoutSeconds)
  done.push({ step: label, seconds: (Date.now() - t0) / 1000, exit: r.status })
  if (r.status !== 0) log(`!! ${label} exited with ${r.status}`)
}
if (!flag("no-plots")) {
  const t0 = Date.now()
  const r = runScript("plot", quick ? ["--quick"] : [], 120)
  done.push({ step: "plots", seconds: (Date.now() - t0) / 1000, exit: r.status })
}
const seconds = (Date.now() - started) / 1000
table(
  `bench all${quick ? " --quick" : ""}: ${fmt(seconds / 60, 1)} min`,
  ["step", "seconds", "exit"],
  done.map((d) => [d.step, fmt(d.seconds, 0), String(d.exit)]),
)
writeResult(quick ? "all-quick" : "all", { seconds, steps: done, peers: peerVersions() })
process.exit(done.some((d) => d.exit !== 0) ? 1 : 0)
