/**
 * One HNSW index per tenant (hnswlib-node) plus in-memory out/in adjacency,
 * fed from StorageEngine commits after they are durable. `appliedSeq` is the
 * newest commit the index reflects; `awaitSeq` is how a write waits for
 * read-your-writes.
 *
 * CONTRACT (used by packages/cluster's Coordinator): keep these signatures;
 * add to them only.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric_ from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { DimensionMismatch, type Entity, type EntityId, type TenantId } from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
import { Slice } from "./EventLoop.js"
import * as IndexConfig from "./IndexConfig.js"
import * as Metrics from "./Metrics.js"
import * as Snapshot from "./Snapshot.js"
import { type ApplyCounts, type HnswParams, TenantIndex } from "./TenantIndex.js"

export type Metric = "cosine" | "l2" | "ip"

export interface TenantIndexStats {
  readonly tenant: TenantId
  readonly dimension: number | undefined
  readonly metric: Metric
  readonly vectors: number
  readonly entities: number
  readonly edges: number
  readonly capacity: number
}

export interface UnifiedIndexShape {
  /**
   * Fixes the tenant's dimension on its first vector (or checks it against
   * the fixed one). Called before a vector is written to storage.
   */
  readonly ensureDimension: (tenant: TenantId, dimension: number, field: string) => Effect.Effect<void, DimensionMismatch>
  readonly dimension: (tenant: TenantId) => Effect.Effect<number | undefined>
  /** The newest commit seq reflected in the index. */
  readonly appliedSeq: Effect.Effect<number>
  /** Completes once every commit up to `seq` is reflected. */
  readonly awaitSeq: (seq: number) => Effect.Effect<void>
  readonly stats: Effect.Effect<ReadonlyArray<TenantIndexStats>>
  /** Writes a snapshot now (also done periodically in the background). */
  readonly snapshot: Effect.Effect<void>
}

export class UnifiedIndex extends Context.Tag("@allidb/index/UnifiedIndex")<UnifiedIndex, UnifiedIndexShape>() {}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

/**
 * Read access to the live per-tenant indexes, for the QueryExecutor. A
 * separate tag so the UnifiedIndex contract stays as the coordinator sees it.
 * Callers must not mutate what they get and must not hold labels across a
 * yield (a label can be reused by the next write); ids are stable.
 */
export interface TenantsShape {
  readonly get: (tenant: TenantId) => TenantIndex | undefined
  readonly config: IndexConfig.IndexConfigShape
  /** Where the apply loop's time went since start (benchmarks and diagnostics). */
  readonly applyStats: () => ApplyStats
}

/** Main-thread milliseconds of the apply loop, summed over every tenant since the layer started. */
export interface ApplyStats {
  /** Rows applied (commits, catch-up, resyncs). */
  readonly rows: number
  /** Committed rows re-read from storage (the rest came offered with their commit, or from catch-up streams). */
  readonly rowsRead: number
  /** Waiting for storage re-reads of committed rows (`getMany`), wall time. */
  readonly readMs: number
  /** Applying rows to the in-memory indexes, yields excluded. */
  readonly applyMs: number
  /** Of `applyMs`, inside hnswlib's addPoint; the rest is the index's own work. */
  readonly addPointMs: number
}

export class Tenants extends Context.Tag("@allidb/index/UnifiedIndex/Tenants")<Tenants, TenantsShape>() {}

/**
 * Committed rows are re-read this many at a time, each group just before it
 * is applied. Applying a row costs a native insert (~0.3 ms at 100k × 128),
 * so rows read a whole commit (1,000) ahead stayed alive for a third of a
 * second — through several young-generation collections, each copying them
 * (and their vector arrays) until they were promoted and died in the old
 * generation. Read just ahead, they mostly die young.
 */
const GET_MANY_BATCH = 64
const CLOSE_SNAPSHOT_TIMEOUT = "60 seconds"
const MAX_EVENTS_PER_BATCH = 4096
/** Inserts measured before runs of rows are sized by their average cost (until then, one row per run). */
const MIN_INSERTS_MEASURED = 16
/** Longest run of rows applied between two slice checks. */
const MAX_RUN_ROWS = 256

/** One tenant's rows in a batch of commit events: its ids (each once) and the entities commits offered. */
interface TenantBatch {
  readonly ids: Array<EntityId>
  readonly seen: Set<EntityId>
  readonly offered: Map<EntityId, { readonly event: StorageEngine.CommitEvent; readonly j: number }>
}

/** Storage reads of the apply loop are retried until they work: the index must not skip a commit. */
const readRetry = Schedule.union(Schedule.exponential("20 millis"), Schedule.spaced("2 seconds"))

export const make: Effect.Effect<
  { readonly index: UnifiedIndexShape; readonly tenants: TenantsShape },
  StorageEngine.ReadError,
  StorageEngine.StorageEngine | IndexConfig.IndexConfig | Scope.Scope
> = Effect.gen(function* () {
  const storage = yield* StorageEngine.StorageEngine
  const config = yield* IndexConfig.IndexConfig
  const params: HnswParams = {
    m: config.m,
    efConstruction: config.efConstruction,
    randomSeed: config.randomSeed,
    initialCapacity: config.initialCapacity,
    growthFactor: config.growthFactor,
  }
  const tenants = new Map<string, TenantIndex>()
  /** Per tenant: bumped on every applied change, and the value the last snapshot saw. */
  const versions = new Map<string, { changed: number; snapshotted: number }>()
  let applied = 0
  const stats = { rows: 0, rowsRead: 0, readMs: 0, applyMs: 0, addPointMsOfReplaced: 0 }
  let waiters: Array<{ readonly seq: number; readonly deferred: Deferred.Deferred<void> }> = []
  // Serialises every mutation of the native indexes with snapshots (hnswlib
  // writes its file on a worker thread while the main thread must not insert).
  const lock = yield* Effect.makeSemaphore(1)

  const fresh = (tenant: string): TenantIndex =>
    new TenantIndex(tenant, IndexConfig.metricOf(config, tenant), params, config.tenantDimensions[tenant])

  const tenantIndex = (tenant: string): TenantIndex => {
    let index = tenants.get(tenant)
    if (index === undefined) {
      index = fresh(tenant)
      tenants.set(tenant, index)
    }
    return index
  }

  const markChanged = (tenant: string): void => {
    const v = versions.get(tenant)
    if (v === undefined) versions.set(tenant, { changed: 1, snapshotted: 0 })
    else v.changed++
  }

  const setApplied = (seq: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (seq <= applied) return Effect.void
      applied = seq
      const ready = waiters.filter((w) => w.seq <= seq)
      if (ready.length === 0) return Effect.void
      waiters = waiters.filter((w) => w.seq > seq)
      return Effect.forEach(ready, (w) => Deferred.succeed(w.deferred, undefined), { discard: true })
    })

  /**
   * Applies rows (parallel lists of ids and merged entities) in time slices;
   * returns the number of vectors inserted. Rows go to the tenant index in
   * runs (`applyRange`: the run's native inserts back to back) sized to take
   * about half a slice at the tenant's measured insert cost, so a slice ends
   * at most that much late.
   */
  const applyRows = (
    index: TenantIndex,
    ids: ReadonlyArray<string>,
    entities: ReadonlyArray<Entity | undefined>,
    slice: Slice,
  ): Effect.Effect<number> =>
    Effect.gen(function* () {
      const counts: ApplyCounts = { inserted: 0, skipped: 0 }
      let started = performance.now()
      for (let i = 0; i < ids.length; ) {
        const end = Math.min(ids.length, i + runLength(index))
        index.applyRange(ids, entities, i, end, counts)
        i = end
        if (slice.due) {
          stats.applyMs += performance.now() - started
          yield* slice.yieldIfDue
          started = performance.now()
        }
      }
      stats.applyMs += performance.now() - started
      stats.rows += ids.length
      if (ids.length > 0) markChanged(index.tenant)
      if (counts.inserted > 0) yield* Metric_.incrementBy(Metrics.inserts, counts.inserted)
      if (counts.skipped > 0) {
        yield* Metric_.incrementBy(Metrics.skippedVectors, counts.skipped)
        yield* Effect.logWarning("stored vectors of another dimension were not indexed").pipe(
          Effect.annotateLogs({ tenant: index.tenant, count: counts.skipped, dimension: index.dimension }),
        )
      }
      return counts.inserted
    })

  /** Rows per `applyRange` run: half a slice of native inserts at the tenant's average cost so far. */
  const runLength = (index: TenantIndex): number => {
    if (index.addPointCount < MIN_INSERTS_MEASURED) return 1
    const perInsertMs = index.addPointMs / index.addPointCount
    return Math.max(1, Math.min(MAX_RUN_ROWS, Math.floor(config.sliceMs / 2 / perInsertMs)))
  }

  const updateGauge = (index: TenantIndex) => Metric_.set(Metrics.vectorsOf(index.tenant), index.liveVectors)

  /**
   * Streams rows from storage into `index`. With `reconcile`, entities the
   * stream did not mention are removed (a full resync after an import or
   * repair, where purged tombstones leave no trace).
   */
  const applyStream = (index: TenantIndex, afterSeq: number, reconcile: boolean) =>
    Effect.gen(function* () {
      const slice = new Slice(config.sliceMs)
      const seen = new Set<string>()
      yield* Stream.runForEachChunk(storage.changedSince(index.tenant as TenantId, afterSeq), (chunk) => {
        const rows = Chunk.toReadonlyArray(chunk)
        const ids = rows.map((row) => row.id)
        if (reconcile) for (const id of ids) seen.add(id)
        return applyRows(
          index,
          ids,
          rows.map((row) => row.entity),
          slice,
        )
      })
      if (reconcile) {
        const gone = [...index.attrs.keys()].filter((id) => !seen.has(id))
        yield* applyRows(index, gone, new Array<undefined>(gone.length), slice)
      }
      yield* updateGauge(index)
    })

  const rebuild = (tenant: string) =>
    Effect.gen(function* () {
      const index = fresh(tenant)
      yield* applyStream(index, 0, false)
      const replaced = tenants.get(tenant)
      if (replaced !== undefined) stats.addPointMsOfReplaced += replaced.addPointMs
      tenants.set(tenant, index)
      markChanged(tenant)
      yield* Metric_.increment(Metrics.rebuilds)
    }).pipe(Effect.withSpan("UnifiedIndex.rebuild", { attributes: { tenant } }))

  const loadTenant = (tenant: string, storageSeq: number) =>
    Effect.gen(function* () {
      const loaded = yield* Snapshot.load(
        config.dataDir,
        tenant,
        { metric: IndexConfig.metricOf(config, tenant), dimension: config.tenantDimensions[tenant], params },
        config.sliceMs,
      ).pipe(
        Effect.filterOrElse(
          (l) => l.seq <= storageSeq,
          (l) =>
            Effect.fail(
              new Snapshot.Unusable({
                tenant,
                reason: `snapshot covers seq ${l.seq} but storage only has ${storageSeq}`,
              }),
            ),
        ),
        Effect.either,
      )
      if (loaded._tag === "Right") {
        // Unchanged since its snapshot unless the catch-up applies something.
        versions.set(tenant, { changed: 0, snapshotted: 0 })
        yield* applyStream(loaded.right.index, loaded.right.seq, false)
        tenants.set(tenant, loaded.right.index)
        yield* Effect.logInfo("index loaded from snapshot").pipe(
          Effect.annotateLogs({ tenant, seq: loaded.right.seq, vectors: loaded.right.index.liveVectors }),
        )
        return
      }
      if (!loaded.left.reason.includes("ENOENT")) {
        yield* Metric_.increment(Metrics.snapshotLoadFailures)
        yield* Effect.logWarning("index snapshot unusable; rebuilding from storage").pipe(
          Effect.annotateLogs({ tenant, reason: loaded.left.reason }),
        )
      }
      yield* rebuild(tenant)
    }).pipe(Effect.withSpan("UnifiedIndex.loadTenant", { attributes: { tenant } }))

  // Subscribe before reading lastSeq: every commit after `startSeq` is in the
  // queue, every commit up to it is in what the catch-up reads.
  const commits = yield* storage.subscribe
  const tableChanges = yield* storage.tableChanges
  const startSeq = yield* storage.lastSeq
  const known = yield* storage.tenants
  for (const tenant of known) yield* loadTenant(tenant, startSeq)
  applied = startSeq

  const warnRead = (tenant: TenantId) => (e: StorageEngine.ReadError) =>
    Effect.logWarning("index could not read committed rows; retrying").pipe(Effect.annotateLogs({ tenant, error: String(e) }))

  /**
   * `getMany` retried until it works. The retry schedule is only set up after
   * a failure: set up on every call it cost more than the read of a small
   * group of rows.
   */
  const readCommitted = (tenant: TenantId, ids: ReadonlyArray<EntityId>) =>
    Effect.catchAll(storage.getMany(tenant, tenant, ids), (first) =>
      Effect.zipRight(
        warnRead(tenant)(first),
        storage.getMany(tenant, tenant, ids).pipe(Effect.tapError(warnRead(tenant)), Effect.retry(readRetry)),
      ),
    )

  const applyCommits = Effect.gen(function* () {
    const events = yield* Queue.takeBetween(commits, 1, MAX_EVENTS_PER_BATCH)
    // Ids per tenant, each once, and the entities the commits offer for
    // them: an id a commit wrote whole (a fresh key) and no other commit of
    // this batch touched is taken as offered; every other one is re-read.
    const byTenant = new Map<string, TenantBatch>()
    let maxSeq = 0
    for (const event of events) {
      let batch = byTenant.get(event.tenant)
      if (batch === undefined) {
        batch = { ids: [], seen: new Set(), offered: new Map() }
        byTenant.set(event.tenant, batch)
      }
      for (let j = 0; j < event.ids.length; j++) {
        const id = event.ids[j]!
        if (batch.seen.has(id)) {
          batch.offered.delete(id)
          continue
        }
        batch.seen.add(id)
        batch.ids.push(id)
        if (event.stored !== undefined) batch.offered.set(id, { event, j })
      }
      if (event.seq > maxSeq) maxSeq = event.seq
    }
    yield* lock.withPermits(1)(
      Effect.gen(function* () {
        const slice = new Slice(config.sliceMs)
        for (const [tenant, { ids, offered }] of byTenant) {
          const index = tenantIndex(tenant)
          for (let i = 0; i < ids.length; i += GET_MANY_BATCH) {
            const group = ids.length <= GET_MANY_BATCH ? ids : ids.slice(i, i + GET_MANY_BATCH)
            // Re-read the merged rows the commits did not offer: whatever
            // order the writes arrived in, the index mirrors what storage
            // answers now.
            const entities: Array<Entity | undefined> = new Array(group.length)
            const toRead: Array<EntityId> = []
            const readAt: Array<number> = []
            for (let k = 0; k < group.length; k++) {
              const offer = offered.get(group[k]!)
              const entity = offer?.event.stored?.(offer.j)
              if (entity !== undefined) entities[k] = entity
              else {
                toRead.push(group[k]!)
                readAt.push(k)
              }
            }
            if (toRead.length > 0) {
              const readStarted = performance.now()
              const read = yield* readCommitted(tenant as TenantId, toRead)
              stats.readMs += performance.now() - readStarted
              stats.rowsRead += toRead.length
              for (let k = 0; k < read.length; k++) entities[readAt[k]!] = read[k]
            }
            yield* applyRows(index, group, entities, slice)
          }
          yield* updateGauge(index)
        }
        yield* setApplied(maxSeq)
      }),
    )
  }).pipe(Effect.withSpan("UnifiedIndex.applyCommits"))

  const resync = (tenant: string) =>
    lock
      .withPermits(1)(
        Effect.gen(function* () {
          const index = tenantIndex(tenant)
          yield* applyStream(index, 0, true)
          yield* Metric_.increment(Metrics.rebuilds)
        }),
      )
      .pipe(
        Effect.retry(readRetry),
        Effect.withSpan("UnifiedIndex.resync", { attributes: { tenant } }),
      )

  const snapshotTenant = (index: TenantIndex) =>
    lock.withPermits(1)(
      Effect.gen(function* () {
        // Mutations only happen under this lock, so `changed` is stable here.
        const v = versions.get(index.tenant) ?? { changed: 1, snapshotted: 0 }
        if (v.changed === v.snapshotted) return
        const started = performance.now()
        yield* Snapshot.write(config.dataDir, index, applied, config.sliceMs)
        versions.set(index.tenant, { changed: v.changed, snapshotted: v.changed })
        yield* Metric_.update(Metrics.snapshotSeconds, (performance.now() - started) / 1000)
      }).pipe(
        Effect.catchAll((e) =>
          Effect.logWarning("index snapshot failed").pipe(Effect.annotateLogs({ tenant: index.tenant, reason: e.reason })),
        ),
        Effect.withSpan("UnifiedIndex.snapshotTenant", { attributes: { tenant: index.tenant } }),
      ),
    )

  const snapshotAll: Effect.Effect<void> = Effect.suspend(() =>
    Effect.forEach([...tenants.values()], snapshotTenant, { discard: true }),
  )

  // A defect here (hnswlib out of memory, a broken invariant) stops the index
  // from following storage; it must be loud, never a silent stale index.
  yield* applyCommits.pipe(
    Effect.forever,
    Effect.tapErrorCause((cause) => Effect.logError("index apply loop stopped", cause)),
    Effect.forkScoped,
  )
  yield* Queue.take(tableChanges).pipe(
    Effect.flatMap(({ tenants: changed }) => Effect.forEach(changed, resync, { discard: true })),
    Effect.forever,
    Effect.forkScoped,
  )
  if (config.snapshotIntervalMs > 0) {
    yield* snapshotAll.pipe(
      Effect.delay(config.snapshotIntervalMs),
      Effect.forever,
      Effect.forkScoped,
    )
  }
  // Bounded: shutdown must not hang on a stuck storage read (the apply loop
  // holds the lock while it reads). An interrupted snapshot never reaches its
  // MANIFEST, so the previous one stays in force.
  if (config.snapshotOnClose) {
    yield* Effect.addFinalizer(() =>
      snapshotAll.pipe(
        Effect.timeout(CLOSE_SNAPSHOT_TIMEOUT),
        Effect.catchAll(() => Effect.logWarning("index snapshot at shutdown timed out; the previous one stays in force")),
      ),
    )
  }

  const index: UnifiedIndexShape = {
    ensureDimension: (tenant, dimension, field) =>
      Effect.suspend(() => {
        const idx = tenantIndex(tenant)
        return idx.fixDimension(dimension)
          ? Effect.void
          : Effect.fail(new DimensionMismatch({ field, expected: idx.dimension!, actual: dimension }))
      }),
    dimension: (tenant) => Effect.sync(() => tenants.get(tenant)?.dimension ?? config.tenantDimensions[tenant]),
    appliedSeq: Effect.sync(() => applied),
    awaitSeq: (seq) =>
      Effect.suspend(() => {
        if (seq <= applied) return Effect.void
        return Effect.flatMap(Deferred.make<void>(), (deferred) => {
          const waiter = { seq, deferred }
          waiters.push(waiter)
          return Deferred.await(deferred).pipe(
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                waiters = waiters.filter((w) => w !== waiter)
              }),
            ),
          )
        })
      }),
    stats: Effect.sync(() =>
      [...tenants.values()].map((t) => ({
        tenant: t.tenant as TenantId,
        dimension: t.dimension,
        metric: t.metric,
        vectors: t.liveVectors,
        entities: t.attrs.size,
        edges: t.edges,
        capacity: t.capacity,
      })),
    ),
    snapshot: snapshotAll.pipe(Effect.withSpan("UnifiedIndex.snapshot")),
  }
  const applyStats = (): ApplyStats => {
    let addPointMs = stats.addPointMsOfReplaced
    for (const t of tenants.values()) addPointMs += t.addPointMs
    return { rows: stats.rows, rowsRead: stats.rowsRead, readMs: stats.readMs, applyMs: stats.applyMs, addPointMs }
  }
  return { index, tenants: { get: (tenant) => tenants.get(tenant), config, applyStats } }
})

/** Provides UnifiedIndex and the Tenants view the QueryExecutor reads. */
export const layer: Layer.Layer<
  UnifiedIndex | Tenants,
  StorageEngine.ReadError,
  StorageEngine.StorageEngine | IndexConfig.IndexConfig
> = Layer.scopedContext(
  Effect.map(make, ({ index, tenants }) => Context.make(UnifiedIndex, index).pipe(Context.add(Tenants, tenants))),
)
