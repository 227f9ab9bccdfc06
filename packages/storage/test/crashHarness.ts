/**
 * Kill -9 crash rounds against a real child process (crash-child.ts): the
 * child writes with acknowledgements, is killed at a random moment, and the
 * data dir is then opened in this process and checked against what the child
 * acknowledged: every acknowledged write is there with its latest value, no
 * deleted row comes back; a key whose write was in flight may show either.
 * The check runs in a second process (the child in verify mode).
 * Used by Crash.test.ts (20 rounds) and scripts/crash-storage (200 rounds).
 */
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type * as StorageConfig from "../src/StorageConfig.js"
import { SeededRandom } from "@allidb/core"

/** Small memtables, segments and a low compaction threshold: every round crosses flushes, rotations and compactions. */
export const crashConfig: Partial<StorageConfig.StorageConfigShape> = {
  syncMode: "always",
  memtableBytes: 64 * 1024,
  walSegmentBytes: 32 * 1024,
  blockBytes: 4 * 1024,
  compactionMinThreshold: 2,
  compactionMaxThreshold: 4,
  compactionMbPerSec: 0,
}

const here = Path.dirname(fileURLToPath(import.meta.url))
const repoRoot = Path.resolve(here, "..", "..", "..")
const childScript = Path.join(here, "crash-child.ts")

export interface CrashOptions {
  readonly rounds: number
  readonly seed: number
  readonly keys?: number
  readonly writers?: number
  /** Random kill delay after the child reports READY, in ms. */
  readonly minKillMs?: number
  readonly maxKillMs?: number
  readonly log?: (line: string) => void
}

export interface CrashSummary {
  readonly rounds: number
  readonly acknowledged: number
  readonly inflightAtKill: number
  readonly liveKeys: number
  readonly tableFiles: number
  readonly walSegments: number
}

const rng = SeededRandom.mulberry32

/**
 * The command that starts the child. Bundling it once with esbuild (already
 * installed with tsx and vite) cuts each child's start-up from ~1.7 s to
 * ~0.2 s of CPU, which is most of a round; without esbuild it runs through tsx.
 */
const childCommand = (workDir: string): ReadonlyArray<string> => {
  const esbuild = Path.join(repoRoot, "node_modules", ".bin", "esbuild")
  const outfile = Path.join(workDir, "crash-child.mjs")
  // The esbuild CLI, not its JS API: the API's service process does not get along with vitest workers.
  const built = spawnSync(
    esbuild,
    [
      childScript,
      "--bundle",
      "--platform=node",
      "--format=esm",
      `--outfile=${outfile}`,
      "--log-level=error",
      // Bundled CommonJS dependencies call require().
      '--banner:js=import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
    ],
    { cwd: repoRoot, encoding: "utf8", timeout: 60_000 },
  )
  return built.status === 0 && Fs.existsSync(outfile) ? [outfile] : ["--import", "tsx", childScript]
}

/** Runs the child until it is killed; calls `onLine` for each stdout line. */
const runChild = (
  command: ReadonlyArray<string>,
  dataDir: string,
  seed: number,
  killAfterMs: number,
  keys: number,
  writers: number,
  onLine: (line: string) => void,
) =>
  new Promise<{ readonly stderr: string; readonly killed: boolean }>((resolve, reject) => {
    const child = spawn(process.execPath, [...command, dataDir, String(seed), String(keys), String(writers)], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    })
    let buffered = ""
    let stderr = ""
    let timer: NodeJS.Timeout | undefined
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk
      let nl = buffered.indexOf("\n")
      while (nl >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (line === "READY" && timer === undefined) {
          timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs)
        }
        onLine(line)
        nl = buffered.indexOf("\n")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.on("error", reject)
    child.on("exit", (_code, signal) => {
      if (timer !== undefined) clearTimeout(timer)
      // A partial last line was cut by the kill: it was never a complete report.
      resolve({ stderr, killed: signal === "SIGKILL" })
    })
  })

/**
 * Opens the data dir in a fresh process (the same child, verify mode) and
 * reads every key's value (null = absent or deleted). A separate process, so
 * nothing of the verifier can run on while the next round writes.
 */
const readAll = (command: ReadonlyArray<string>, dataDir: string, keys: number) =>
  new Promise<Map<string, string | null>>((resolve, reject) => {
    const child = spawn(process.execPath, [...command, dataDir, "verify", String(keys)], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.on("error", reject)
    child.on("exit", (code) => {
      const lines = stdout.split("\n")
      if (code !== 0 || !lines.includes("DONE")) {
        return reject(new Error(`the verifier failed (exit ${code}):\n${stderr}\n${stdout.slice(-2000)}`))
      }
      const out = new Map<string, string | null>()
      for (const line of lines) {
        const [kind, key, value] = line.split(" ")
        if (kind === "V") out.set(key!, value === "-" ? null : value!)
      }
      if (out.size !== keys) return reject(new Error(`the verifier reported ${out.size} of ${keys} keys`))
      resolve(out)
    })
  })

export const runCrashRounds = async (options: CrashOptions): Promise<CrashSummary> => {
  const keys = options.keys ?? 200
  const writers = options.writers ?? 8
  const random = rng(options.seed)
  const log = options.log ?? (() => {})
  const workDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-crash-"))
  const dataDir = Path.join(workDir, "data")
  const command = childCommand(workDir)
  const acked = new Map<string, string | null>()
  let acknowledged = 0
  let inflightAtKill = 0
  try {
    for (let round = 0; round < options.rounds; round++) {
      const childSeed = Math.floor(random() * 2 ** 31)
      const minKill = options.minKillMs ?? 50
      const killAfter = minKill + Math.floor(random() * ((options.maxKillMs ?? 500) - minKill))
      const inflight = new Map<string, string | null>()
      let ready = false
      const result = await runChild(command, dataDir, childSeed, killAfter, keys, writers, (line) => {
        const [kind, key, rest] = line.split(" ")
        if (kind === "READY") ready = true
        else if (kind === "I") inflight.set(key!, rest === "-" ? null : rest!)
        else if (kind === "A") {
          if (!inflight.has(key!)) throw new Error(`round ${round}: ack of ${key} without an intent`)
          acked.set(key!, inflight.get(key!)!)
          inflight.delete(key!)
          acknowledged++
        }
      })
      if (!ready || !result.killed) {
        throw new Error(`round ${round} (seed ${options.seed}): the child did not run until killed:\n${result.stderr}`)
      }
      inflightAtKill += inflight.size
      if (process.env.ALLIDB_CRASH_TRACE) log(`round ${round + 1}: child exited, verifying`)
      const found = await readAll(command, dataDir, keys)
      for (const [key, got] of found) {
        const allowed: Array<string | null> = [acked.has(key) ? acked.get(key)! : null]
        if (inflight.has(key)) allowed.push(inflight.get(key)!)
        if (!allowed.includes(got)) {
          throw new Error(
            `round ${round} (seed ${options.seed}, child seed ${childSeed}, killed after ${killAfter} ms): ` +
              `${key} is ${JSON.stringify(got)}, expected ${allowed.map((a) => JSON.stringify(a)).join(" or ")}`,
          )
        }
        // What survived is the durable state the next round builds on.
        acked.set(key, got)
      }
      log(`round ${round + 1}/${options.rounds}: killed after ${killAfter} ms, ${acknowledged} acks so far, ${inflight.size} in flight — ok`)
    }
    const liveKeys = [...acked.values()].filter((v) => v !== null).length
    const tableFiles = Fs.readdirSync(Path.join(dataDir, "sst")).filter((f) => !f.startsWith("MANIFEST")).length
    const walSegments = Fs.readdirSync(Path.join(dataDir, "wal")).length
    return { rounds: options.rounds, acknowledged, inflightAtKill, liveKeys, tableFiles, walSegments }
  } finally {
    Fs.rmSync(workDir, { recursive: true, force: true })
  }
}
