/**
 * Shared helpers of the benchmark suite: flags, seeded randomness, timing and
 * percentile statistics, tables, the machine description, and the JSON result
 * files under scripts/bench/results/. Benchmarks are scripts, not tests: every
 * figure that matters is printed beside a baseline measured in the same run.
 */
import { execSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { SeededRandom } from "@allidb/core"

export const BENCH_DIR = Path.dirname(fileURLToPath(import.meta.url))
export const ROOT = Path.resolve(BENCH_DIR, "..", "..")
export const CACHE_DIR = Path.join(ROOT, ".bench-cache")
export const RESULTS_DIR = Path.join(BENCH_DIR, "results")

// --- flags -------------------------------------------------------------------
const argv = process.argv.slice(2)
export const flag = (name: string): boolean => argv.includes(`--${name}`)
export const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`)
  if (i >= 0 && argv[i + 1] !== undefined) return argv[i + 1]!
  const eq = argv.find((a) => a.startsWith(`--${name}=`))
  return eq === undefined ? fallback : eq.slice(name.length + 3)
}
export const numbers = (name: string, fallback: string): Array<number> =>
  option(name, fallback)
    .split(",")
    .filter((s) => s !== "")
    .map((s) => Number(s.replace(/k$/i, "000").replace(/m$/i, "000000")))
export const quick = flag("quick")

// --- seeded randomness (mulberry32 + Box-Muller): same seed, same bytes ------
export const rng = SeededRandom.mulberry32
export const gaussian = (random: () => number): (() => number) => {
  let spare: number | undefined
  return () => {
    if (spare !== undefined) {
      const s = spare
      spare = undefined
      return s
    }
    const u = Math.max(random(), 1e-12)
    const v = random()
    const r = Math.sqrt(-2 * Math.log(u))
    spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

// --- statistics --------------------------------------------------------------
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const s = Float64Array.from(xs).sort()
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}
export const median = (xs: ReadonlyArray<number>): number => percentile(xs, 50)
export const mean = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

export const now = (): number => performance.now()
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
export const rssMiB = (): number => process.memoryUsage().rss / 1024 / 1024

/** Resident set size of another process (Linux /proc), in bytes. */
export const rssOf = (pid: number): number => {
  try {
    const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(status)
    return m === null ? Number.NaN : Number(m[1]) * 1024
  } catch {
    return Number.NaN
  }
}

// --- output ------------------------------------------------------------------
export const log = (line = ""): void => {
  console.log(line)
}
export const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "—"

export const table = (title: string, header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  const text = [
    `\n### ${title}\n`,
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map(line),
  ].join("\n")
  log(text)
  return text
}

export interface Machine {
  readonly nproc: number
  readonly cpu: string
  readonly memoryGiB: number
  readonly node: string
  readonly platform: string
  readonly commit: string
  readonly loadAverage: ReadonlyArray<number>
}
export const gitHead = (): string => {
  try {
    return execSync("git rev-parse --short HEAD", { cwd: ROOT }).toString().trim()
  } catch {
    return "unknown"
  }
}
// The data-dir cache tag is fixed once per run (and handed to child
// processes), so a commit landing mid-run does not force a reload.
process.env.ALLIDB_BENCH_TAG ??= gitHead()

export const machine = (): Machine => ({
  nproc: Os.availableParallelism(),
  cpu: Os.cpus()[0]?.model ?? "unknown",
  memoryGiB: Math.round((Os.totalmem() / 1024 ** 3) * 10) / 10,
  node: process.version,
  platform: `${Os.platform()} ${Os.release()}`,
  commit: gitHead(),
  loadAverage: Os.loadavg().map((x) => Math.round(x * 100) / 100),
})

/**
 * Writes scripts/bench/results/<name>-<date>.json and a stable <name>-latest.json
 * copy (for the plots). A --quick run writes <name>-quick-…, so it never
 * replaces the figures of a full run.
 */
export const writeResult = (baseName: string, body: Record<string, unknown>): string => {
  const name = quick && !baseName.endsWith("-quick") ? `${baseName}-quick` : baseName
  Fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, "-")
  const file = Path.join(RESULTS_DIR, `${name}-${stamp}.json`)
  const doc = { name, date: new Date().toISOString(), argv: process.argv.slice(2), machine: machine(), ...body }
  Fs.writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`)
  Fs.writeFileSync(Path.join(RESULTS_DIR, `${name}-latest.json`), `${JSON.stringify(doc, null, 2)}\n`)
  log(`\nresults: ${Path.relative(ROOT, file)}`)
  return file
}

/** Runs `f` for `repeats` rounds and keeps every round (callers report the median). */
export const repeat = async <A>(repeats: number, f: (round: number) => Promise<A>): Promise<Array<A>> => {
  const out: Array<A> = []
  for (let r = 0; r < repeats; r++) out.push(await f(r))
  return out
}

/** Runs `count` tasks with at most `concurrency` in flight; returns per-task latencies (ms). */
export const runConcurrent = async (
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<{ readonly latencies: Array<number>; readonly seconds: number }> => {
  const latencies = new Array<number>(count)
  let next = 0
  const started = now()
  const worker = async () => {
    for (;;) {
      const i = next++
      if (i >= count) return
      const t0 = now()
      await task(i)
      latencies[i] = now() - t0
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return { latencies, seconds: (now() - started) / 1000 }
}

export const isMain = (url: string): boolean =>
  process.argv[1] !== undefined && fileURLToPath(url) === Path.resolve(process.argv[1])
