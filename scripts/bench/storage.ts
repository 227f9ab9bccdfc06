/**
 * `npm run bench -- storage [--writes N] [--runs R] [--dir PATH]`
 *
 * Prints, in one run on this machine:
 * - raw device baseline: 1 KiB records appended with fs.write + fdatasync in
 *   256 KiB batches (what the disk can do with perfect batching);
 * - durable engine writes: 64 concurrent writers, one 1 KiB row per write
 *   (a 256-dim float32 vector), acknowledged after group commit + fdatasync;
 *   throughput, p50/p99 latency, and the ratio to the raw baseline;
 * - point gets served from SSTables (memtables flushed first);
 * - compaction MB/s (all tables merged into one, no rate limit).
 * Each figure is the median of R runs on a fresh data dir.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Entity, entityId, tenantId } from "@allidb/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Compactor from "../../packages/storage/src/Compactor.js"
import * as Disk from "../../packages/storage/src/Disk.js"
import * as Memtable from "../../packages/storage/src/Memtable.js"
import * as Metrics from "../../packages/storage/src/Metrics.js"
import * as SSTableStore from "../../packages/storage/src/SSTableStore.js"
import * as StorageConfig from "../../packages/storage/src/StorageConfig.js"
import * as StorageEngine from "../../packages/storage/src/StorageEngine.js"
import * as TenantGuard from "../../packages/storage/src/TenantGuard.js"
import * as Wal from "../../packages/storage/src/Wal.js"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const dirArg = (() => {
  const i = process.argv.indexOf("--dir")
  return i >= 0 ? process.argv[i + 1]! : Os.tmpdir()
})()

const WRITES = arg("writes", 200_000)
const RUNS = arg("runs", 3)
const WRITERS = 64
const ROW_BYTES = 1024
const GETS = arg("gets", 100_000)
const RAW_BATCH = 256 * 1024

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}
const percentile = (sorted: Float64Array, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const freshDir = (label: string) => Fs.mkdtempSync(Path.join(dirArg, `allidb-bench-${label}-`))

// --- raw baseline -------------------------------------------------------------

/** Appends `records` 1 KiB records in 256 KiB write + fdatasync batches; records per second. */
const rawAppend = (records: number): number => {
  const dir = freshDir("raw")
  const fd = Fs.openSync(Path.join(dir, "raw.log"), "w")
  const batch = Buffer.alloc(RAW_BATCH, 0x5a)
  const perBatch = RAW_BATCH / ROW_BYTES
  const start = performance.now()
  for (let written = 0; written < records; written += perBatch) {
    Fs.writeSync(fd, batch)
    Fs.fdatasyncSync(fd)
  }
  const seconds = (performance.now() - start) / 1000
  Fs.closeSync(fd)
  Fs.rmSync(dir, { recursive: true, force: true })
  return records / seconds
}

// --- engine ---------------------------------------------------------------------

const tenant = tenantId("bench")
const vector = Array.from({ length: ROW_BYTES / 4 }, (_, i) => Math.sin(i))

/** `--sync none` is a diagnostic: it shows the engine's CPU cost per write without the device. */
const syncMode: StorageConfig.SyncMode = process.argv.includes("none") ? "none" : "always"

const stack = (dataDir: string) => {
  const base = Layer.merge(Disk.layerNode, StorageConfig.layer({ dataDir, compactionMbPerSec: 0, syncMode }))
  const parts = Layer.mergeAll(Wal.layer, Memtable.layer, SSTableStore.layer, TenantGuard.layer).pipe(
    Layer.provideMerge(base),
  )
  // Manual compaction: the write figure measures the write path, the compaction figure compaction.
  return StorageEngine.layer.pipe(Layer.provideMerge(Compactor.layerManual.pipe(Layer.provideMerge(parts))))
}

interface EngineRun {
  /** Process CPU (all threads, incl. libuv's I/O threads) per write during the write phase. */
  readonly cpuMicrosPerWrite: number
  /** The kernel's share of it (write + fdatasync system calls, page cache). */
  readonly systemMicrosPerWrite: number
  /** Mean group-commit size (cumulative over the runs of this process). */
  readonly writesPerSync: number
  /**
   * Mean fdatasync time during the write phase as the WAL's syncer sees it
   * (the device's time plus the event loop's delay in delivering the
   * completion while it runs the writers), and the share of the phase a sync
   * was outstanding.
   */
  readonly fsyncMs: number
  readonly fsyncBusy: number
  readonly writesPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly getsPerSec: number
  readonly compactionMBps: number
  readonly compactedMB: number
}

const engineRun = (dataDir: string): Effect.Effect<EngineRun, unknown> =>
  Effect.scoped(
    Effect.gen(function* () {
      const context = yield* Layer.build(stack(dataDir))
      const engine = Context.get(context, StorageEngine.StorageEngineAdmin)
      const compactor = Context.get(context, Compactor.Compactor)
      // Entities are built up front: the figure is the engine's, not the Schema constructor's.
      const entities = Array.from(
        { length: WRITES },
        (_, i) => new Entity({ id: entityId(`row-${String(i).padStart(8, "0")}`), vector }, { disableValidation: true }),
      )
      const latencies = new Float64Array(WRITES)
      let next = 0
      const writer = Effect.gen(function* () {
        while (next < WRITES) {
          const i = next++
          const t0 = performance.now()
          yield* engine.write(tenant, [{ _tag: "PutEntity", tenant, entity: entities[i]! }])
          latencies[i] = performance.now() - t0
        }
      })
      const syncsBefore = yield* Metric.value(Metrics.walFsyncSeconds)
      const start = performance.now()
      const cpuStart = process.cpuUsage()
      yield* Effect.all(Array.from({ length: WRITERS }, () => writer), { concurrency: "unbounded", discard: true })
      const writeSeconds = (performance.now() - start) / 1000
      const cpu = process.cpuUsage(cpuStart)
      const commits = yield* Metric.value(Metrics.walGroupCommitSize)
      const syncsAfter = yield* Metric.value(Metrics.walFsyncSeconds)
      const syncs = syncsAfter.count - syncsBefore.count
      const syncSeconds = syncsAfter.sum - syncsBefore.sum
      latencies.sort()

      const writeFigures = {
        cpuMicrosPerWrite: (cpu.user + cpu.system) / WRITES,
        systemMicrosPerWrite: cpu.system / WRITES,
        writesPerSync: commits.sum / Math.max(1, commits.count),
        fsyncMs: (1000 * syncSeconds) / Math.max(1, syncs),
        fsyncBusy: syncSeconds / writeSeconds,
        writesPerSec: WRITES / writeSeconds,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
      }
      // `--writes-only`: for profiling the write phase (node --cpu-prof) without the rest.
      if (process.argv.includes("--writes-only")) return { ...writeFigures, getsPerSec: 0, compactionMBps: 0, compactedMB: 0 }

      // Point gets from SSTables: flush every memtable first so no get is answered from memory.
      yield* engine.flush
      const keys = Array.from({ length: GETS }, (_, i) => entities[(i * 7919) % WRITES]!.id)
      const getStart = performance.now()
      let found = 0
      yield* Effect.forEach(
        keys,
        (id) =>
          Effect.map(engine.get(tenant, tenant, id), (e) => {
            if (e !== undefined) found++
          }),
        { concurrency: 16, discard: true },
      )
      const getSeconds = (performance.now() - getStart) / 1000
      if (found !== GETS) throw new Error(`point gets found ${found} of ${GETS} rows`)

      const compactStart = performance.now()
      const result = yield* compactor.compactAll
      const compactSeconds = (performance.now() - compactStart) / 1000
      const inputBytes = result === undefined ? 0 : result.bytesIn
      return {
        ...writeFigures,
        getsPerSec: GETS / getSeconds,
        compactionMBps: inputBytes / 1024 / 1024 / compactSeconds,
        compactedMB: inputBytes / 1024 / 1024,
      }
    }),
  )

const main = async () => {
  console.log(
    `storage bench: ${fmt(WRITES)} writes of ${ROW_BYTES} B rows by ${WRITERS} concurrent writers, ` +
      `${fmt(GETS)} point gets, ${RUNS} runs (medians), data in ${dirArg}, ${Os.cpus().length} CPUs, node ${process.version}`,
  )
  const raw: Array<number> = []
  const runs: Array<EngineRun> = []
  for (let r = 0; r < RUNS; r++) {
    raw.push(rawAppend(WRITES))
    const dir = freshDir("engine")
    try {
      const run = await Effect.runPromise(engineRun(dir).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
      runs.push(run)
      console.log(
        `  run ${r + 1}: raw ${fmt(raw[r]!)} rec/s | engine ${fmt(run.writesPerSec)} writes/s, p50 ${fmt(run.p50Ms, 2)} ms, ` +
          `p99 ${fmt(run.p99Ms, 2)} ms, ${fmt(run.cpuMicrosPerWrite, 1)} µs CPU/write (${fmt(run.systemMicrosPerWrite, 1)} system), ${fmt(run.writesPerSync, 1)} writes/fdatasync, fdatasync seen in ${fmt(run.fsyncMs, 2)} ms, outstanding ${fmt(100 * run.fsyncBusy, 0)}% of the time | gets ${fmt(run.getsPerSec)}/s | compaction ${fmt(run.compactionMBps, 1)} MB/s (${fmt(run.compactedMB, 0)} MB)`,
      )
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  const rawMedian = median(raw)
  const writes = median(runs.map((r) => r.writesPerSec))
  console.log("")
  console.log(`raw fs.write+fdatasync, 256 KiB batches : ${fmt(rawMedian)} records/s (${fmt((rawMedian * ROW_BYTES) / 1048576, 1)} MiB/s)`)
  console.log(
    `engine durable writes (64 writers, 1 KiB): ${fmt(writes)} writes/s = ${fmt((100 * writes) / rawMedian, 1)}% of raw ` +
      `(target ≥ 100,000/s and ≥ 25%)`,
  )
  console.log(
    `engine CPU per write (all threads)      : ${fmt(median(runs.map((r) => r.cpuMicrosPerWrite)), 1)} µs ` +
      `(${fmt(median(runs.map((r) => r.systemMicrosPerWrite)), 1)} µs of it in the kernel)`,
  )
  console.log(
    `write latency                            : p50 ${fmt(median(runs.map((r) => r.p50Ms)), 2)} ms, p99 ${fmt(median(runs.map((r) => r.p99Ms)), 2)} ms`,
  )
  console.log(
    `fdatasync as the WAL's syncer sees it     : ${fmt(median(runs.map((r) => r.fsyncMs)), 2)} ms mean (device + event-loop delay), ` +
      `outstanding ${fmt(100 * median(runs.map((r) => r.fsyncBusy)), 0)}% of the write phase`,
  )
  console.log(`point gets from SSTables                 : ${fmt(median(runs.map((r) => r.getsPerSec)))} gets/s`)
  console.log(`compaction (unthrottled)                 : ${fmt(median(runs.map((r) => r.compactionMBps)), 1)} MB/s of input`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
