/**
 * Size-tiered compaction. Tables of similar size form a bucket; once a bucket
 * holds `compactionMinThreshold` tables, up to `compactionMaxThreshold` of its
 * smallest are merged (Row.merge, the same rule as reads) into one table,
 * tombstones older than the grace period are purged on the way, and the
 * result is swapped in with one atomic manifest change (SSTableStore.replace).
 * Interrupting a compaction at any point leaves the live set as it was.
 *
 * Tombstone purge is safe against the tables outside the compaction (bloom +
 * oldest timestamp, SSTableStore.mayHoldOlder). Memtables are not consulted:
 * a write whose HLC timestamp is older than the grace period arriving after
 * the purge could resurface — the usual gc-grace contract (repair must run
 * within the grace period), as in Cassandra.
 *
 * Bytes written are throttled by a byte-rate token bucket (compactionMbPerSec;
 * reads are proportional); the background loop is forked in the layer's scope.
 */
import { type Corruption, Hlc, type StorageFailure } from "@allidb/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Metrics from "./Metrics.js"
import * as Row from "./Row.js"
import type * as Reader from "./SSTableReader.js"
import * as SSTableStore from "./SSTableStore.js"
import { StorageConfig } from "./StorageConfig.js"

/** Tables up to this size share one bucket: tiny tables are not worth telling apart. */
export const SMALL_TABLE_BYTES = 1024 * 1024

/** A table joins a bucket when its size is within [LOW, HIGH] × the bucket's average size. */
const BUCKET_LOW = 0.5
const BUCKET_HIGH = 1.5

export interface Sized {
  readonly id: number
  readonly fileBytes: number
}

/** Groups tables by similar size (pure; tables in ascending size order inside each bucket). */
export const bucketsOf = <T extends Sized>(tables: ReadonlyArray<T>): Array<Array<T>> => {
  const sorted = [...tables].sort((a, b) => a.fileBytes - b.fileBytes || a.id - b.id)
  const buckets: Array<{ tables: Array<T>; total: number }> = []
  for (const t of sorted) {
    const last = buckets[buckets.length - 1]
    if (last !== undefined) {
      const avg = last.total / last.tables.length
      const similar = t.fileBytes >= avg * BUCKET_LOW && t.fileBytes <= avg * BUCKET_HIGH
      const bothSmall = t.fileBytes <= SMALL_TABLE_BYTES && avg <= SMALL_TABLE_BYTES
      if (similar || bothSmall) {
        last.tables.push(t)
        last.total += t.fileBytes
        continue
      }
    }
    buckets.push({ tables: [t], total: t.fileBytes })
  }
  return buckets.map((b) => b.tables)
}

/**
 * The tables to compact next: from the bucket of smallest tables that holds at
 * least `min` of them, its `max` smallest. Undefined when no bucket qualifies.
 */
export const pickCompactionBucket = <T extends Sized>(
  tables: ReadonlyArray<T>,
  min: number,
  max: number,
): ReadonlyArray<T> | undefined => {
  const bucket = bucketsOf(tables).find((b) => b.length >= Math.max(2, min))
  return bucket?.slice(0, Math.max(2, max))
}

/**
 * A token bucket over bytes: `take(n)` lets n bytes through, sleeping (by
 * Clock) when the budget is exhausted. Debt-based, so a chunk larger than the
 * burst still passes, followed by a proportional pause. Rate 0 = unlimited.
 */
export const makeByteLimiter = (bytesPerSecond: number, burstBytes = bytesPerSecond) =>
  Effect.gen(function* () {
    let tokens = burstBytes
    let last = yield* Clock.currentTimeMillis
    const take = (n: number): Effect.Effect<void> =>
      bytesPerSecond <= 0
        ? Effect.void
        : Effect.flatMap(Clock.currentTimeMillis, (now) => {
            tokens = Math.min(burstBytes, tokens + ((now - last) * bytesPerSecond) / 1000)
            last = now
            tokens -= n
            return tokens >= 0 ? Effect.void : Effect.sleep(Duration.millis((-tokens * 1000) / bytesPerSecond))
          })
    return { take }
  })

export interface CompactionResult {
  readonly inputs: ReadonlyArray<number>
  readonly output: SSTableStore.TableInfo | undefined
  readonly bytesIn: number
  readonly bytesOut: number
  readonly rowsIn: number
  readonly rowsOut: number
  readonly tombstonesPurged: number
}

export interface CompactorShape {
  /** Runs one compaction if a bucket qualifies; undefined when there is nothing to do. */
  readonly compactNow: Effect.Effect<CompactionResult | undefined, StorageFailure | Corruption>
  /** Merges every live table into one (tests, bench, operator "major compaction"). */
  readonly compactAll: Effect.Effect<CompactionResult | undefined, StorageFailure | Corruption>
}

export class Compactor extends Context.Tag("@allidb/storage/Compactor")<Compactor, CompactorShape>() {}

/** How often the background loop looks for work when the last look found none. */
export const IDLE_INTERVAL = Duration.seconds(1)

/** With `background: false` nothing runs until compactNow/compactAll is called (tests, benchmarks). */
export const makeWith = (options: {
  readonly background: boolean
}): Effect.Effect<CompactorShape, never, SSTableStore.SSTableStore | StorageConfig | Scope.Scope> =>
  Effect.gen(function* () {
    const store = yield* SSTableStore.SSTableStore
    const config = yield* StorageConfig
    const limiter = yield* makeByteLimiter(config.compactionMbPerSec * 1024 * 1024)
    // One compaction at a time: the background loop and compactNow share it.
    const running = yield* Effect.makeSemaphore(1)

    const compact = (inputs: ReadonlyArray<SSTableStore.TableInfo>) =>
      Effect.gen(function* () {
        const ids = inputs.map((t) => t.id)
        yield* Metric.increment(Metrics.compactionsStarted)
        const exclude = new Set(ids)
        const now = yield* Clock.currentTimeMillis
        const cutoffWall = (now - config.tombstoneGraceMs) * Hlc.LOGICAL_SPAN
        const source = yield* store.scan(undefined, undefined, { tableIds: ids, fillCache: false })
        let rowsIn = 0
        let rowsOut = 0
        let purged = 0
        // A row's tombstones older than the cutoff are dropped unless a table
        // outside this compaction may still hold an older version of the key
        // (dropping the tombstone would resurrect it).
        const purging: Reader.Cursor<Reader.ReadError> = {
          next: Effect.gen(function* () {
            for (;;) {
              const next = yield* source.next
              if (next === undefined) return undefined
              rowsIn++
              const { key, row } = next
              const newestPurgeable = newestTombstoneBefore(row, cutoffWall)
              if (newestPurgeable === undefined || (yield* store.mayHoldOlder(key, newestPurgeable + 1, exclude))) {
                rowsOut++
                return next
              }
              const kept = Row.purgeTombstones(row, cutoffWall)
              purged += Row.tombstoneCount(row) - (kept === undefined ? 0 : Row.tombstoneCount(kept))
              if (kept !== undefined) {
                rowsOut++
                return { key, row: kept }
              }
            }
          }),
        }
        const output = yield* store.replace(ids, purging, { onBytes: limiter.take })
        const bytesIn = inputs.reduce((n, t) => n + t.fileBytes, 0)
        const bytesOut = output?.fileBytes ?? 0
        yield* Metric.increment(Metrics.compactions)
        yield* Metric.incrementBy(Metrics.compactionBytesIn, bytesIn)
        yield* Metric.incrementBy(Metrics.compactionBytesOut, bytesOut)
        yield* Metric.incrementBy(Metrics.tombstonesPurged, purged)
        yield* Effect.logInfo("Compactor: compacted").pipe(
          Effect.annotateLogs({ inputs: ids.join(","), output: output?.name ?? "none", bytesIn, bytesOut, purged }),
        )
        return { inputs: ids, output, bytesIn, bytesOut, rowsIn, rowsOut, tombstonesPurged: purged }
      }).pipe(Effect.scoped, Effect.withSpan("Compactor.compact"))

    const compactNow = running.withPermits(1)(
      Effect.flatMap(store.tables, (tables) => {
        const pick = pickCompactionBucket(tables, config.compactionMinThreshold, config.compactionMaxThreshold)
        return pick === undefined ? Effect.succeed(undefined) : compact(pick)
      }),
    )

    const compactAll = running.withPermits(1)(
      Effect.flatMap(store.tables, (tables) =>
        // A lone table is still worth rewriting when it holds tombstones to purge.
        tables.length === 0 || (tables.length === 1 && tables[0]?.properties.tombstones === 0)
          ? Effect.succeed(undefined)
          : compact(tables),
      ),
    )

    // Background: compact while there is work, then look again every IDLE_INTERVAL.
    // A failure is logged and retried later; it never takes the node down.
    const loop = compactNow.pipe(
      Effect.repeat({ until: (r) => r === undefined }),
      Effect.catchAllCause((cause) => Effect.logError("Compactor: compaction failed", cause)),
      Effect.repeat(Schedule.spaced(IDLE_INTERVAL)),
    )
    // A fork inherits the interruptibility of the code that forks it: a layer
    // built inside an uninterruptible region (an acquire, a finalizer) would
    // otherwise get a loop that its scope can never interrupt.
    if (options.background) yield* Effect.forkScoped(Effect.interruptible(loop))

    return { compactNow, compactAll }
  })

export const make: Effect.Effect<CompactorShape, never, SSTableStore.SSTableStore | StorageConfig | Scope.Scope> =
  makeWith({ background: true })

/** Newest wall among the row's tombstones that are older than the cutoff, or undefined. */
const newestTombstoneBefore = (row: Row.Row, cutoffWall: number): number | undefined => {
  let newest: number | undefined
  if (row.deletedAt !== undefined && row.deletedAt.wall < cutoffWall) newest = row.deletedAt.wall
  for (const cell of row.cells.values()) {
    if (cell.value === undefined && cell.ts.wall < cutoffWall && (newest === undefined || cell.ts.wall > newest)) {
      newest = cell.ts.wall
    }
  }
  return newest
}

export const layer: Layer.Layer<Compactor, never, SSTableStore.SSTableStore | StorageConfig> = Layer.scoped(
  Compactor,
  make,
)

/** A Compactor without the background loop (tests and benchmarks drive it with compactNow). */
export const layerManual: Layer.Layer<Compactor, never, SSTableStore.SSTableStore | StorageConfig> = Layer.scoped(
  Compactor,
  makeWith({ background: false }),
)
