/**
 * `npm run bench -- storage [--writes N] [--runs R] [--dir PATH]`
 *
 * Prints, in one run on this machine:
 * - raw device baseline: 1 KiB records appended with fs.write + fdatasync in
 *   256 KiB batches (what the disk can do with perfect batching), and in
 *   64 KiB batches (the most 64 writers with one write each in flight can
 *   put under one fdatasync);
 * - the runtime's floor: the same 64 Effect writers, each write one Effect.async
 *   resumed after a pipelined group commit, with nothing but a copy of the row,
 *   a Map insert and crc32 per write (what any engine in this runtime pays
 *   before doing its own work);
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
import * as Zlib from "node:zlib"
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
import * as Row from "../../packages/storage/src/Row.js"
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
/**
 * Rows per engine.write call (default 1: the target's definition, one 1 KiB
 * row per write). More shows what the engine does when a caller batches.
 */
const ROWS_PER_WRITE = arg("rows-per-write", 1)
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

/** Appends `records` 1 KiB records in `batchBytes` write + fdatasync batches; records per second. */
const rawAppend = (records: number, batchBytes = RAW_BATCH): number => {
  const dir = freshDir("raw")
  const fd = Fs.openSync(Path.join(dir, "raw.log"), "w")
  const batch = Buffer.alloc(batchBytes, 0x5a)
  const perBatch = batchBytes / ROW_BYTES
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

// --- the runtime's floor ---------------------------------------------------------

/** `--sync none` is a diagnostic: it shows the engine's CPU cost per write without the device. */
const syncMode: StorageConfig.SyncMode = process.argv.includes("none") ? "none" : "always"

const tenant = tenantId("bench")
/** Every row's 1 KiB: a 256-dim vector (the engine's rows and the floor's). */
const vector = Array.from({ length: ROW_BYTES / 4 }, (_, i) => Math.sin(i))
/** The ids written, in order (the engine's entities and the floor's keys). */
const rowId = (i: number) => entityId(`row-${String(i).padStart(8, "0")}`)

/**
 * 64 Effect writers as in the engine run, but the "engine" is a skeleton: a
 * write copies its row (key + 256 float32) into a slab, looks its key up in a
 * Map and queues itself; queued writes are written with one write(2) (crc32
 * over the batch) while the previous batch is in fdatasync, and resumed, with
 * their keys put in the Map, when their fdatasync is done. Writes per second
 * and CPU per write.
 */
const floorRun = async (): Promise<{ readonly writesPerSec: number; readonly cpuMicrosPerWrite: number }> => {
  const dir = freshDir("floor")
  const fd = Fs.openSync(Path.join(dir, "wal"), "w")
  const index = new Map<string, number>()
  const keys = Array.from({ length: WRITES }, (_, i) => Row.makeKey(tenant, rowId(i)))
  const SLAB = 16 << 20
  let slab = Buffer.allocUnsafe(SLAB)
  let slabPos = 0
  const row = new Float32Array(ROW_BYTES / 4)
  const rowBytes = new Uint8Array(row.buffer)
  interface Pending {
    readonly slab: Buffer
    readonly start: number
    readonly end: number
    readonly key: string
    readonly resume: (effect: Effect.Effect<void>) => void
  }
  let queued: Array<Pending> = []
  let written: Array<Pending> = []
  let writeScheduled = false
  let syncing = false
  const startSync = (): void => {
    if (syncing || written.length === 0) return
    syncing = true
    const group = written
    written = []
    const synced = (error: NodeJS.ErrnoException | null): void => {
      if (error !== null) throw error
      syncing = false
      for (const p of group) {
        index.set(p.key, p.start)
        p.resume(Effect.void)
      }
      startSync()
    }
    if (syncMode === "always") Fs.fdatasync(fd, synced)
    else setImmediate(synced, null)
  }
  const writeQueued = (): void => {
    writeScheduled = false
    const batch = queued
    queued = []
    let i = 0
    while (i < batch.length) {
      // One write(2) per run of writes contiguous in one slab.
      let j = i + 1
      while (j < batch.length && batch[j]!.slab === batch[i]!.slab && batch[j]!.start === batch[j - 1]!.end) j++
      const bytes = batch[i]!.slab.subarray(batch[i]!.start, batch[j - 1]!.end)
      Zlib.crc32(bytes)
      Fs.writeSync(fd, bytes)
      i = j
    }
    for (const p of batch) written.push(p)
    startSync()
  }
  const write = (key: string) =>
    Effect.async<void>((resume) => {
      for (let i = 0; i < row.length; i++) row[i] = vector[i]!
      if (slabPos + key.length + ROW_BYTES > SLAB) {
        slab = Buffer.allocUnsafe(SLAB)
        slabPos = 0
      }
      const start = slabPos
      slabPos += slab.write(key, slabPos, "latin1")
      slab.set(rowBytes, slabPos)
      slabPos += ROW_BYTES
      index.get(key)
      queued.push({ slab, start, end: slabPos, key, resume })
      if (!writeScheduled) {
        writeScheduled = true
        setImmediate(writeQueued)
      }
    })
  let next = 0
  const writer = Effect.gen(function* () {
    while (next < WRITES) yield* write(keys[next++]!)
  })
  const start = performance.now()
  const cpuStart = process.cpuUsage()
  await Effect.runPromise(Effect.all(Array.from({ length: WRITERS }, () => writer), { concurrency: "unbounded", discard: true }))
  const seconds = (performance.now() - start) / 1000
  const cpu = process.cpuUsage(cpuStart)
  Fs.closeSync(fd)
  Fs.rmSync(dir, { recursive: true, force: true })
  return { writesPerSec: WRITES / seconds, cpuMicrosPerWrite: (cpu.user + cpu.system) / WRITES }
}

// --- engine ---------------------------------------------------------------------



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
        (_, i) => new Entity({ id: rowId(i), vector }, { disableValidation: true }),
      )
      const latencies = new Float64Array(WRITES)
      let next = 0
      const writer = Effect.gen(function* () {
        while (next < WRITES) {
          const i = next
          const end = Math.min(WRITES, i + ROWS_PER_WRITE)
          next = end
          const t0 = performance.now()
          const mutations: Array<StorageEngine.Mutation> = []
          for (let j = i; j < end; j++) mutations.push({ _tag: "PutEntity", tenant, entity: entities[j]! })
          yield* engine.write(tenant, mutations)
          const latency = performance.now() - t0
          for (let j = i; j < end; j++) latencies[j] = latency
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
    `storage bench: ${fmt(WRITES)} writes of ${ROW_BYTES} B rows by ${WRITERS} concurrent writers` +
      `${ROWS_PER_WRITE === 1 ? "" : ` (${ROWS_PER_WRITE} rows per write call: a diagnostic, not the target's definition)`}, ` +
      `${fmt(GETS)} point gets, ${RUNS} runs (medians), data in ${dirArg}, ${Os.cpus().length} CPUs, node ${process.version}`,
  )
  const raw: Array<number> = []
  /** The same with 64 KiB batches: the most 64 writers with one write each in flight can put in one fdatasync. */
  const raw64: Array<number> = []
  const floors: Array<{ readonly writesPerSec: number; readonly cpuMicrosPerWrite: number }> = []
  const runs: Array<EngineRun> = []
  for (let r = 0; r < RUNS; r++) {
    raw.push(rawAppend(WRITES))
    raw64.push(rawAppend(WRITES / 4, WRITERS * ROW_BYTES))
    floors.push(await floorRun())
    const dir = freshDir("engine")
    try {
      const run = await Effect.runPromise(engineRun(dir).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
      runs.push(run)
      console.log(
        `  run ${r + 1}: raw ${fmt(raw[r]!)} rec/s (64 KiB batches ${fmt(raw64[r]!)}) | floor ${fmt(floors[r]!.writesPerSec)} writes/s, ${fmt(floors[r]!.cpuMicrosPerWrite, 1)} µs CPU/write | engine ${fmt(run.writesPerSec)} writes/s, p50 ${fmt(run.p50Ms, 2)} ms, ` +
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
    `raw, 64 KiB batches (64 writers' most)   : ${fmt(median(raw64))} records/s — one fdatasync every ${fmt((1000 * WRITERS) / median(raw64), 3)} ms`,
  )
  const floor = median(floors.map((f) => f.writesPerSec))
  console.log(
    `runtime floor (64 Effect writers, copy + Map + crc32, pipelined group commit): ${fmt(floor)} writes/s = ` +
      `${fmt((100 * floor) / rawMedian, 1)}% of raw, ${fmt(median(floors.map((f) => f.cpuMicrosPerWrite)), 1)} µs CPU per write`,
  )
  console.log(
    `engine durable writes (64 writers, 1 KiB): ${fmt(writes)} writes/s = ${fmt((100 * writes) / rawMedian, 1)}% of raw, ` +
      `${fmt((100 * writes) / floor, 0)}% of the floor (target ≥ 100,000/s and ≥ 25% of raw)`,
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
