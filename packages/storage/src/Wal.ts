/**
 * The write-ahead log: append-only segment files `<dataDir>/wal/<first seq>.wal`.
 *
 * Invariants:
 * - The WAL assigns commit sequence numbers, at the moment an append joins
 *   the queue, so the log order IS the seq order.
 * - Group commit: one writer fiber drains every queued append into ONE record
 *   (one write + one fdatasync); an append completes only once its record is
 *   durable (syncMode "always", or `sync: true` per call).
 * - Start-up recovery reads every segment: a damaged tail (no valid record
 *   after it) is a torn write and is truncated; damage followed by valid
 *   records is corruption of acknowledged data and stops start-up (core
 *   `Corruption` naming segment and offset) unless `walSalvage` is set.
 * - New writes always go to a fresh segment, never after a recovered tail.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { Corruption, StorageFailure } from "@allidb/core"
import * as Disk from "./Disk.js"
import * as Metrics from "./Metrics.js"
import { StorageConfig } from "./StorageConfig.js"
import { Waiters } from "./Waiters.js"
import * as WalFormat from "./WalFormat.js"

export interface WalShape {
  /**
   * Appends one opaque payload; succeeds with its commit seq once the group
   * commit holding it is durable (or, with syncMode "none" and no `sync`,
   * once it is written to the OS).
   */
  readonly append: (payload: Uint8Array, sync?: boolean) => Effect.Effect<number, StorageFailure>
  /**
   * Calls `apply` for every recovered entry with seq > `afterSeq`, in seq
   * order. The first call uses what start-up recovery read; later calls read
   * the segments again.
   */
  readonly replay: <E>(
    afterSeq: number,
    apply: (seq: number, payload: Uint8Array) => Effect.Effect<void, E>,
  ) => Effect.Effect<void, E | StorageFailure | Corruption>
  /** The highest seq assigned so far (recovered at start-up). */
  readonly lastSeq: Effect.Effect<number>
  /** Makes the next assigned seq greater than `floor` (the engine passes the manifest's flushedSeq). */
  readonly advanceSeq: (floor: number) => Effect.Effect<void>
  /** Removes segments whose every entry has seq ≤ `seq` (they are durable in SSTables). Never the active one. */
  readonly deleteThrough: (seq: number) => Effect.Effect<void, StorageFailure>
  /** Makes everything appended so far durable (useful with syncMode "none"). */
  readonly sync: Effect.Effect<void, StorageFailure>
  /** Names of the live segment files, oldest first. */
  readonly segments: Effect.Effect<ReadonlyArray<string>>
  /**
   * `append` without an Effect, for the engine's hot path: enqueues the
   * payload and returns its seq at once (or the failure when the WAL refuses
   * it; `done` is then never called). `done` runs synchronously in the WAL's
   * writer once the group commit holding the payload is durable (same rule as
   * `append`), in seq order, with undefined, or with the failure that stopped
   * the batch. It must not throw.
   */
  readonly submit: (
    payload: Uint8Array,
    sync: boolean,
    done: (error: StorageFailure | undefined) => void,
  ) => number | StorageFailure
}

export class Wal extends Context.Tag("@allidb/storage/Wal")<Wal, WalShape>() {}

/** A batch is cut at this many bytes so one group commit's latency stays bounded. */
const MAX_BATCH_BYTES = 4 * 1024 * 1024

interface Pending {
  readonly seq: number
  readonly payload: Uint8Array
  readonly sync: boolean
  readonly done: (error: StorageFailure | undefined) => void
}

interface Segment {
  readonly name: string
  readonly path: string
  readonly firstSeq: number
  /** Highest seq in the segment (firstSeq - 1 when it holds none). */
  lastSeq: number
}

interface Recovery {
  readonly segments: Array<Segment>
  readonly entries: Array<WalFormat.Entry>
  readonly lastSeq: number
}

const walDir = (dataDir: string) => `${dataDir}/wal`

/**
 * Reads every segment in order. With `repair`, a torn tail is truncated (and
 * counted); without it (a later re-read) torn tails are simply where reading
 * stops.
 */
const recover = (
  disk: Disk.DiskShape,
  dir: string,
  salvage: boolean,
  repair: boolean,
): Effect.Effect<Recovery, StorageFailure | Corruption> =>
  Effect.gen(function* () {
    const names = (yield* disk.list(dir))
      .map((name) => ({ name, firstSeq: WalFormat.parseSegmentName(name) }))
      .filter((s): s is { name: string; firstSeq: number } => s.firstSeq !== undefined)
      .sort((a, b) => a.firstSeq - b.firstSeq)
    const files: Array<{ readonly segment: Segment; bytes: Uint8Array }> = []
    for (const { name, firstSeq } of names) {
      const path = `${dir}/${name}`
      files.push({ segment: { name, path, firstSeq, lastSeq: firstSeq - 1 }, bytes: yield* disk.readFile(path) })
    }
    const entries: Array<WalFormat.Entry> = []
    let lastSeq = 0

    const corruption = (path: string, offset: number, message: string) =>
      new Corruption({ file: path, offset, message: `WAL segment ${path} is damaged at offset ${offset}: ${message}` })

    /** Whether any segment after index `i` holds a valid record. */
    const validRecordAfter = (i: number): boolean => {
      for (let j = i + 1; j < files.length; j++) {
        const bytes = files[j]!.bytes
        if (WalFormat.checkHeader(bytes)._tag !== "Ok") continue
        const first = WalFormat.readRecord(bytes, WalFormat.HEADER_BYTES)
        if (first._tag === "Record") return true
        if (WalFormat.findNextRecord(bytes, WalFormat.HEADER_BYTES, 0) !== undefined) return true
      }
      return false
    }

    /** Cuts segment `i` at `offset` and empties every later one (they hold nothing valid). */
    const truncateTail = (i: number, offset: number, reason: string) =>
      Effect.gen(function* () {
        const { segment } = files[i]!
        yield* Effect.logWarning(
          `WAL: torn tail in ${segment.path} at offset ${offset} (${reason}); truncating it — the write it held was never acknowledged`,
        )
        yield* Metric.increment(Metrics.walTornTails)
        if (!repair) return
        for (let j = i; j < files.length; j++) {
          const { segment: s, bytes } = files[j]!
          const cut = j === i ? offset : WalFormat.HEADER_BYTES
          if (bytes.length <= cut) continue
          if (cut < WalFormat.HEADER_BYTES || WalFormat.checkHeader(bytes)._tag !== "Ok") {
            yield* disk.remove(s.path)
          } else {
            yield* Effect.scoped(
              Effect.gen(function* () {
                const file = yield* disk.open(s.path, "append")
                yield* file.truncate(cut)
                yield* file.sync
              }),
            )
          }
          files[j]!.bytes = bytes.subarray(0, cut)
        }
        yield* disk.syncDir(dir)
      })

    segments: for (let i = 0; i < files.length; i++) {
      const { segment, bytes } = files[i]!
      const header = WalFormat.checkHeader(bytes)
      if (header._tag === "UnknownVersion") {
        return yield* corruption(
          segment.path,
          4,
          `format version ${header.version} is newer than this reader (version ${WalFormat.VERSION})`,
        )
      }
      if (header._tag !== "Ok") {
        if (!validRecordAfter(i)) {
          yield* truncateTail(i, 0, header._tag === "Torn" ? "header cut short" : "bad magic")
          break
        }
        if (!salvage) return yield* corruption(segment.path, 0, "bad segment header")
        yield* Effect.logError(`WAL salvage: skipping segment ${segment.path} with a damaged header`)
        yield* Metric.increment(Metrics.walSkippedRecords)
        yield* Metric.increment(Metrics.corruptionsDetected)
        continue
      }
      let offset = WalFormat.HEADER_BYTES
      while (true) {
        const result = WalFormat.readRecord(bytes, offset)
        if (result._tag === "End") break
        if (result._tag === "Record") {
          if (result.entries[0]!.seq <= lastSeq) {
            return yield* corruption(segment.path, offset, `seq ${result.entries[0]!.seq} does not follow ${lastSeq}`)
          }
          for (const entry of result.entries) entries.push(entry)
          lastSeq = result.entries[result.entries.length - 1]!.seq
          segment.lastSeq = lastSeq
          offset = result.next
          continue
        }
        const next = WalFormat.findNextRecord(bytes, offset, lastSeq)
        if (next === undefined && !validRecordAfter(i)) {
          yield* truncateTail(i, offset, result.reason)
          break segments
        }
        if (!salvage) {
          return yield* corruption(
            segment.path,
            offset,
            `${result.reason}, and valid records follow it (acknowledged data is damaged; set walSalvage to skip it)`,
          )
        }
        yield* Effect.logError(
          `WAL salvage: skipping a damaged record in ${segment.path} at offset ${offset} (${result.reason})`,
        )
        yield* Metric.increment(Metrics.walSkippedRecords)
        yield* Metric.increment(Metrics.corruptionsDetected)
        if (next === undefined) break
        offset = next
      }
    }

    // Segments left with no records (a torn creation, or emptied above) are dropped.
    const live: Array<Segment> = []
    for (const { segment, bytes } of files) {
      if (repair && bytes.length <= WalFormat.HEADER_BYTES) yield* disk.remove(segment.path)
      else live.push(segment)
    }
    return { segments: live, entries, lastSeq }
  })

export const make: Effect.Effect<WalShape, StorageFailure | Corruption, Disk.Disk | StorageConfig | Scope.Scope> =
  Effect.gen(function* () {
    const disk = yield* Disk.Disk
    const config = yield* StorageConfig
    const layerScope = yield* Effect.scope
    const dir = walDir(config.dataDir)
    yield* disk.mkdir(dir)

    const recovered = yield* recover(disk, dir, config.walSalvage, true)
    let retained: Array<WalFormat.Entry> | undefined = recovered.entries
    const closedSegments: Array<Segment> = recovered.segments
    let lastAssigned = recovered.lastSeq
    yield* Metric.set(Metrics.walSegments, closedSegments.length)
    if (recovered.entries.length > 0 || closedSegments.length > 0) {
      yield* Effect.logInfo(
        `WAL: recovered ${recovered.entries.length} entries from ${closedSegments.length} segments, last seq ${recovered.lastSeq}`,
      )
    }

    // --- the active segment (opened lazily by the first batch) -------------
    // Segment files live in their own scope, created before the draining
    // finalizer below, so they are closed only after it has synced them.
    const segmentsScope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
    let active: { segment: Segment; file: Disk.DiskFile; scope: Scope.CloseableScope; size: number } | undefined

    const openSegment = (firstSeq: number) =>
      Effect.gen(function* () {
        const name = WalFormat.segmentName(firstSeq)
        const path = `${dir}/${name}`
        const scope = yield* Scope.fork(segmentsScope, ExecutionStrategy.sequential)
        const file = yield* disk.open(path, "truncate").pipe(Scope.extend(scope))
        yield* file.append(WalFormat.encodeHeader())
        yield* file.sync
        // The segment's name must be durable before any write in it is acknowledged.
        yield* disk.syncDir(dir)
        return { segment: { name, path, firstSeq, lastSeq: firstSeq - 1 }, file, scope, size: WalFormat.HEADER_BYTES }
      })

    const rotate = (firstSeq: number) =>
      Effect.gen(function* () {
        if (active !== undefined) {
          const old = active
          active = undefined
          yield* old.file.sync
          yield* Scope.close(old.scope, Exit.void)
          closedSegments.push(old.segment)
        }
        active = yield* openSegment(firstSeq)
        yield* Metric.set(Metrics.walSegments, closedSegments.length + 1)
      })

    // --- group commit --------------------------------------------------------
    //
    // Two fibers. The writer takes queued appends as one batch, writes it as
    // one record and hands it to the syncer; the syncer fdatasyncs and then
    // completes every batch written before that sync, in seq order. So a
    // batch is written while the previous one is still in fdatasync: the
    // device works while the CPU prepares the next writes. When nothing is in
    // fdatasync, the writer sends half of a large queue ahead, so the two
    // halves take turns between the CPU and the device instead of the whole
    // group waiting for one fdatasync at a time.
    let queue: Array<Pending> = []
    /** The writer waiting for appends, and the syncer waiting for written batches. */
    const workWaiter = new Waiters()
    let writing = false
    let closing = false
    let failed: StorageFailure | undefined
    const idleWaiters = new Waiters()
    /** Written batches waiting for the syncer, oldest first. */
    let unsynced: Array<{ readonly batch: ReadonlyArray<Pending>; readonly sync: boolean }> = []
    let syncing = false
    const writtenWaiter = new Waiters()
    const syncerIdleWaiters = new Waiters()

    /** Appends worth splitting: below this a half-batch saves less than an fdatasync costs. */
    const SPLIT_MIN = 16

    const takeBatch = (): Array<Pending> => {
      const limit = !syncing && unsynced.length === 0 && queue.length >= SPLIT_MIN ? queue.length >> 1 : queue.length
      let bytes = 0
      let n = 0
      while (n < limit && (n === 0 || bytes + queue[n]!.payload.length <= MAX_BATCH_BYTES)) {
        bytes += queue[n]!.payload.length
        n++
      }
      if (n === queue.length) {
        const batch = queue
        queue = []
        return batch
      }
      return queue.splice(0, n)
    }

    /** Waits until every written batch is synced and completed (before a rotation, and when idle). */
    const syncerIdle = Effect.suspend(() => (unsynced.length === 0 && !syncing ? Effect.void : syncerIdleWaiters.wait))

    const writeBatch = (batch: ReadonlyArray<Pending>) =>
      Effect.gen(function* () {
        const first = batch[0]!.seq
        if (active === undefined || active.size >= config.walSegmentBytes) {
          // Everything in the old segment is synced before it is closed.
          yield* syncerIdle
          if (failed !== undefined) return yield* Effect.fail(failed)
          yield* rotate(first)
        }
        const current = active!
        let payloadBytes = 0
        for (const p of batch) payloadBytes += p.payload.length
        const record = new Uint8Array(WalFormat.recordSize(payloadBytes, batch.length))
        WalFormat.writeRecord(record, 0, batch)
        yield* current.file.append(record)
        current.size += record.length
        current.segment.lastSeq = batch[batch.length - 1]!.seq
        yield* Metric.incrementBy(Metrics.walBytes, record.length)
        yield* Metric.incrementBy(Metrics.walRecords, batch.length)
        yield* Metric.update(Metrics.walGroupCommitSize, batch.length)
      })

    const failAll = (error: StorageFailure, batch: ReadonlyArray<Pending>) => {
      const waiting = unsynced
      unsynced = []
      const rest = queue
      queue = []
      for (const w of waiting) for (const p of w.batch) p.done(error)
      for (const p of batch) p.done(error)
      for (const p of rest) p.done(error)
    }

    const fail = (cause: Cause.Cause<StorageFailure>, batch: ReadonlyArray<Pending>) =>
      Effect.suspend(() => {
        // After a failed write or fdatasync the file's state is unknown
        // (the kernel may have dropped the dirty pages): refuse every later
        // append rather than acknowledge on top of a hole.
        const first = failed === undefined
        const error: StorageFailure =
          failed ??
          Option.getOrElse(
            Cause.failureOption(cause),
            () => new StorageFailure({ operation: "wal.append", message: Cause.pretty(cause) }),
          )
        failed = error
        failAll(error, batch)
        return first
          ? Effect.logError(`WAL: write failed, refusing further writes until restart: ${error.message}`)
          : Effect.void
      })

    /** Nothing queued, being written or waiting for a sync. */
    const isIdle = (): boolean => queue.length === 0 && !writing && unsynced.length === 0 && !syncing

    const notifyIdle = (): void => {
      if (isIdle()) idleWaiters.releaseAll()
    }

    const waitForWork = Effect.suspend(() => (queue.length > 0 ? Effect.void : workWaiter.wait))

    const writer = Effect.gen(function* () {
      while (true) {
        if (queue.length === 0) {
          writing = false
          notifyIdle()
          yield* waitForWork
          // Let the fibers that are already runnable (writers just resumed by
          // the previous commit) enqueue first: bigger batches, fewer syncs.
          yield* Effect.yieldNow()
        }
        writing = true
        const batch = takeBatch()
        if (failed !== undefined) {
          failAll(failed, batch)
          continue
        }
        const exit = yield* Effect.exit(writeBatch(batch))
        if (Exit.isFailure(exit)) {
          yield* fail(exit.cause, batch)
          continue
        }
        let sync = config.syncMode === "always"
        for (const p of batch) if (p.sync) sync = true
        unsynced.push({ batch, sync })
        // A split batch: let the idle syncer start on this half before the
        // next half is written, so the next half gets its own fdatasync.
        if (writtenWaiter.releaseAll() && queue.length > 0) yield* Effect.yieldNow()
      }
    })

    const waitForWritten = Effect.suspend(() => (unsynced.length > 0 ? Effect.void : writtenWaiter.wait))

    const syncer = Effect.gen(function* () {
      while (true) {
        if (unsynced.length === 0) {
          syncing = false
          syncerIdleWaiters.releaseAll()
          notifyIdle()
          yield* waitForWritten
        }
        syncing = true
        const group = unsynced
        unsynced = []
        // Batches of one segment: a rotation waits for this fiber to be idle first.
        if (group.some((g) => g.sync) && active !== undefined) {
          const start = yield* Clock.currentTimeNanos
          const exit = yield* Effect.exit(active.file.sync)
          if (Exit.isFailure(exit)) {
            unsynced = [...group, ...unsynced]
            yield* fail(exit.cause, [])
            continue
          }
          const end = yield* Clock.currentTimeNanos
          yield* Metric.update(Metrics.walFsyncSeconds, Number(end - start) / 1e9)
        }
        // Durable even if a later batch failed meanwhile (that one was refused already).
        // In seq order: the engine applies and publishes commits from here.
        for (const g of group) for (const p of g.batch) p.done(undefined)
      }
    })
    yield* Effect.forkScoped(writer)
    yield* Effect.forkScoped(syncer)

    const closedError = () =>
      new StorageFailure({ operation: "wal.append", message: "the WAL is closed (the node is stopping)" })

    const submit = (
      payload: Uint8Array,
      sync: boolean,
      done: (error: StorageFailure | undefined) => void,
    ): number | StorageFailure => {
      if (failed !== undefined) return failed
      if (closing) return closedError()
      const seq = ++lastAssigned
      queue.push({ seq, payload, sync, done })
      workWaiter.releaseAll()
      return seq
    }

    const append = (payload: Uint8Array, sync = false): Effect.Effect<number, StorageFailure> =>
      Effect.async<number, StorageFailure>((resume) => {
        const seq = submit(payload, sync, (error) => resume(error === undefined ? Effect.succeed(seq as number) : Effect.fail(error)))
        if (typeof seq !== "number") resume(Effect.fail(seq))
      })

    const waitIdle = Effect.suspend(() => (isIdle() ? Effect.void : idleWaiters.wait))

    const syncActive = Effect.suspend(() => (active === undefined ? Effect.void : active.file.sync))

    // Runs before the writer fiber is interrupted (finalizers run in reverse):
    // stop taking appends, let the queue drain, make the tail durable.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        closing = true
        yield* Effect.logDebug("WAL: closing")
        yield* waitIdle.pipe(Effect.timeout("10 seconds"), Effect.ignore)
        if (failed === undefined) {
          yield* syncActive.pipe(
            Effect.catchAll((e) => Effect.logError(`WAL: final sync failed: ${e.message}`)),
          )
        }
        yield* Effect.logDebug("WAL: closed")
      }),
    )

    const removeSegment = (segment: Segment) =>
      disk.remove(segment.path).pipe(Effect.tap(() => Effect.logDebug(`WAL: removed segment ${segment.name}`)))

    return {
      append,
      submit,
      replay: <E>(afterSeq: number, apply: (seq: number, payload: Uint8Array) => Effect.Effect<void, E>) =>
        Effect.gen(function* () {
          let entries = retained
          retained = undefined
          if (entries === undefined) entries = (yield* recover(disk, dir, config.walSalvage, false)).entries
          for (const entry of entries) {
            if (entry.seq > afterSeq) yield* apply(entry.seq, entry.payload)
          }
        }),
      lastSeq: Effect.sync(() => lastAssigned),
      advanceSeq: (floor) =>
        Effect.sync(() => {
          if (floor > lastAssigned) lastAssigned = floor
        }),
      deleteThrough: (seq) =>
        Effect.gen(function* () {
          const doomed: Array<Segment> = []
          for (let i = 0; i < closedSegments.length; ) {
            if (closedSegments[i]!.lastSeq <= seq) doomed.push(...closedSegments.splice(i, 1))
            else i++
          }
          for (const segment of doomed) yield* removeSegment(segment)
          if (doomed.length > 0) {
            yield* disk.syncDir(dir)
            yield* Metric.set(Metrics.walSegments, closedSegments.length + (active === undefined ? 0 : 1))
          }
        }),
      sync: Effect.gen(function* () {
        yield* waitIdle
        yield* syncActive
      }),
      segments: Effect.sync(() => [
        ...closedSegments.map((s) => s.name),
        ...(active === undefined ? [] : [active.segment.name]),
      ]),
    }
  })

export const layer: Layer.Layer<Wal, StorageFailure | Corruption, Disk.Disk | StorageConfig> = Layer.scoped(Wal, make)
