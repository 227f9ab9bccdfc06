/**
 * Diagnostic, not part of `all`: the in-process durable ingest beside raw
 * hnswlib-node addPoint of the same vectors, in interleaved rounds, with wall
 * and CPU time per entity. Small enough to run under `node --cpu-prof`:
 *
 *   npx tsc -b && node --import tsx scripts/bench/_ingestprofile.ts --n 20k --rounds 3
 *   node --import tsx scripts/bench/_ingestprofile.ts --n 20k --rounds 1 --only allidb --profile /tmp/ingest.cpuprofile
 *
 * `--profile FILE` writes a CPU profile (node:inspector, 100 µs sampling) of
 * the measured AlliDB runs only: data generation, start-up and the warm-up
 * are outside it.
 *
 * The packages come from their compiled dist (function names survive in the
 * profile); only this script goes through tsx. The AlliDB path is the one
 * `query` loads its data dir with: batches of 1,000, two in flight,
 * Coordinator.upsert with wait = true, sync-mode always, a fresh data dir.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Inspector from "node:inspector/promises"
import hnswlib from "hnswlib-node"
import { type EntityJson, entitiesOf, openInProcess } from "./_allidb.js"
import { type Dataset, generate, toArray, vectorOf } from "./_data.js"
import { fmt, log, median, now, option } from "./_lib.js"

const parseCount = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)([kM]?)$/.exec(s)
  if (m === null) throw new Error(`not a count: ${s}`)
  return Math.round(Number(m[1]) * (m[2] === "k" ? 1e3 : m[2] === "M" ? 1e6 : 1))
}

const n = parseCount(option("n", "20k"))
const rounds = Number(option("rounds", "3"))
const only = option("only", "")
const profileFile = option("profile", "")
const BATCH = 1000
const INFLIGHT = 2

interface Measured {
  readonly seconds: number
  readonly cpuSeconds: number
}

const cpuNow = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** What `query`'s ceiling does: addPoint one at a time, the Float32Array converted inside the clock. */
const raw = (d: Dataset): Measured => {
  const index = new hnswlib.HierarchicalNSW("cosine", d.dim)
  index.initIndex({ maxElements: d.n, m: 16, efConstruction: 200, randomSeed: 100 })
  const c0 = cpuNow()
  const t0 = now()
  for (let i = 0; i < d.n; i++) index.addPoint(toArray(vectorOf(d, i)), i)
  return { seconds: (now() - t0) / 1000, cpuSeconds: cpuNow() - c0 }
}

let session: Inspector.Session | undefined
const profiles: Array<unknown> = []

const allidb = async (batches: ReadonlyArray<ReadonlyArray<EntityJson>>): Promise<Measured> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-ingestprofile-"))
  try {
    const db = await openInProcess(dir)
    if (session !== undefined) await session.post("Profiler.start")
    const c0 = cpuNow()
    const t0 = now()
    let next = 0
    const worker = async () => {
      for (;;) {
        const i = next++
        if (i >= batches.length) return
        await db.upsert(batches[i]!, true)
      }
    }
    await Promise.all(Array.from({ length: INFLIGHT }, worker))
    const measured = { seconds: (now() - t0) / 1000, cpuSeconds: cpuNow() - c0 }
    if (session !== undefined) {
      const { profile } = await session.post("Profiler.stop")
      profiles.push(profile)
    }
    await db.close()
    return measured
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const main = async () => {
  const d = generate({ n, dim: 128, queries: 10, seed: 42 })
  const batches: Array<Array<EntityJson>> = []
  for (let s = 0; s < d.n; s += BATCH) batches.push(entitiesOf(d, s, Math.min(d.n, s + BATCH)))
  // Warm-up (not measured): JIT and first-use costs would otherwise land in round 1.
  if (only !== "raw") await allidb(batches.slice(0, 3))
  if (profileFile !== "") {
    session = new Inspector.Session()
    session.connect()
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 100 })
  }
  const ratios: Array<number> = []
  const cpuRatios: Array<number> = []
  const rawCpu: Array<number> = []
  const dbCpu: Array<number> = []
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so a drift in neighbour load hits both.
    const order = r % 2 === 0 ? ["raw", "allidb"] : ["allidb", "raw"]
    let rawRun: Measured | undefined
    let dbRun: Measured | undefined
    for (const which of order) {
      if (which === "raw" && only !== "allidb") rawRun = raw(d)
      if (which === "allidb" && only !== "raw") dbRun = await allidb(batches)
    }
    const per = (m: Measured | undefined) =>
      m === undefined ? "-" : `${fmt(d.n / m.seconds)}/s, ${fmt((m.cpuSeconds / d.n) * 1e6)} µs CPU each`
    let line = `round ${r + 1}: raw addPoint ${per(rawRun)}; AlliDB ${per(dbRun)}`
    if (rawRun !== undefined) rawCpu.push((rawRun.cpuSeconds / d.n) * 1e6)
    if (dbRun !== undefined) dbCpu.push((dbRun.cpuSeconds / d.n) * 1e6)
    if (rawRun !== undefined && dbRun !== undefined) {
      const ratio = rawRun.seconds / dbRun.seconds
      const cpuRatio = rawRun.cpuSeconds / dbRun.cpuSeconds
      ratios.push(ratio)
      cpuRatios.push(cpuRatio)
      line += ` → ${fmt(ratio, 3)}× (per CPU-second ${fmt(cpuRatio, 3)}×)`
    }
    log(line)
  }
  if (profiles.length > 0) {
    // The first measured run's profile (one run per file keeps the per-entity arithmetic simple).
    Fs.writeFileSync(profileFile, JSON.stringify(profiles[0]))
    log(`CPU profile of the first measured AlliDB run (${fmt(d.n)} entities) written to ${profileFile}`)
  }
  if (ratios.length > 0) {
    log(
      `median of ${ratios.length}: ${fmt(median(ratios), 3)}× (per CPU-second ${fmt(median(cpuRatios), 3)}×); CPU per entity raw ${fmt(median(rawCpu))} µs, AlliDB ${fmt(median(dbCpu))} µs`,
    )
  } else if (dbCpu.length > 0) {
    log(`AlliDB CPU per entity median ${fmt(median(dbCpu))} µs`)
  }
}

await main()
