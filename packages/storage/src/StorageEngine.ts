/**
 * The facade the rest of the server calls: it composes Wal, Memtable,
 * SSTableStore, Compactor and TenantGuard. A write is acknowledged once its
 * WAL batch is durable and it is in the memtable; each acknowledged batch gets
 * a local, strictly increasing commit sequence number (`seq`) that survives
 * restarts and is published to subscribers (the index) in order.
 *
 * Semantics:
 * - PutEntity replaces the whole entity: a row tombstone at the write's
 *   timestamp shadows every older cell, and the new cells carry that timestamp.
 *   `createdAt` is kept from the existing row unless the entity gives one.
 * - PutEdge / DeleteEdge touch one edge cell, leaving the rest of the row.
 * - DeleteEntity writes a row tombstone.
 * - Every key names its tenant; TenantGuard checks it against the caller's.
 *
 * CONTRACT (used by packages/index and packages/cluster): keep these
 * signatures; add to them only.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  Corruption,
  type Entity,
  type EntityId,
  type GraphEdge,
  Hlc,
  type Relation,
  StorageFailure,
  type TenantId,
  type TenantViolation,
  Unavailable,
} from "@allidb/core"
import * as Compactor from "./Compactor.js"
import * as Disk from "./Disk.js"
import * as Memtable from "./Memtable.js"
import * as Metrics from "./Metrics.js"
import * as Row from "./Row.js"
import * as RowCodec from "./RowCodec.js"
import * as SSTableReader from "./SSTableReader.js"
import * as SSTableStore from "./SSTableStore.js"
import * as SSTableWriter from "./SSTableWriter.js"
import * as StorageConfig from "./StorageConfig.js"
import * as TenantGuard from "./TenantGuard.js"
import { makeSignal, Waiters } from "./Waiters.js"
import * as Wal from "./Wal.js"

export type Mutation =
  | { readonly _tag: "PutEntity"; readonly tenant: TenantId; readonly entity: Entity }
  | { readonly _tag: "DeleteEntity"; readonly tenant: TenantId; readonly id: EntityId }
  | { readonly _tag: "PutEdge"; readonly tenant: TenantId; readonly from: EntityId; readonly edge: GraphEdge }
  | {
      readonly _tag: "DeleteEdge"
      readonly tenant: TenantId
      readonly from: EntityId
      readonly to: EntityId
      readonly relation: Relation
    }

/** Published after a batch is durable and visible to reads. */
export interface CommitEvent {
  readonly seq: number
  readonly tenant: TenantId
  /** Ids of the rows the batch touched (the index re-reads them, unless `stored` offers the row). */
  readonly ids: ReadonlyArray<EntityId>
  /**
   * For `ids[j]`, the entity a read right after this commit returns, when
   * the commit wrote the key's whole stored row (a PutEntity of a key no
   * memtable or table held): a follower may take it instead of reading.
   * undefined when the row must be read. Built on call.
   */
  readonly stored?: (j: number) => Entity | undefined
}

export interface WriteOptions {
  /** Wait for fdatasync before acknowledging (default: the engine's sync mode). */
  readonly sync?: boolean
}

export interface ScanOptions {
  /** Inclusive lower bound on entity id. */
  readonly start?: string
  /** Exclusive upper bound on entity id. */
  readonly end?: string
  readonly limit: number
  /** Opaque token from a previous page; overrides `start`. */
  readonly pageToken?: string
}

export interface ScanResult {
  readonly entities: ReadonlyArray<Entity>
  readonly nextPageToken?: string
}

/** A row as the index sees it during catch-up: `entity` is undefined when deleted. */
export interface ChangedRow {
  readonly id: EntityId
  readonly seq: number
  readonly entity: Entity | undefined
}

export type ReadError = StorageFailure | Corruption | TenantViolation
export type WriteError = StorageFailure | TenantViolation | Unavailable

export interface StorageEngineShape {
  /** Applies the mutations as one durable batch; returns its commit sequence number. */
  readonly write: (
    caller: TenantId,
    mutations: ReadonlyArray<Mutation>,
    options?: WriteOptions,
  ) => Effect.Effect<{ readonly seq: number }, WriteError>
  readonly get: (caller: TenantId, tenant: TenantId, id: EntityId) => Effect.Effect<Entity | undefined, ReadError>
  readonly getMany: (
    caller: TenantId,
    tenant: TenantId,
    ids: ReadonlyArray<EntityId>,
  ) => Effect.Effect<ReadonlyArray<Entity | undefined>, ReadError>
  /** Live entities of one tenant in id order, paged. */
  readonly scan: (caller: TenantId, tenant: TenantId, options: ScanOptions) => Effect.Effect<ScanResult, ReadError>
  /** Tenants that have any rows. */
  readonly tenants: Effect.Effect<ReadonlyArray<TenantId>, ReadError>
  /**
   * Rows of a tenant whose latest change has seq > `afterSeq`, deletions
   * included while their tombstones are kept (see the compaction grace
   * period). `afterSeq = 0` streams every row: a full rebuild.
   */
  readonly changedSince: (tenant: TenantId, afterSeq: number) => Stream.Stream<ChangedRow, ReadError>
  /** The newest acknowledged commit sequence number. */
  readonly lastSeq: Effect.Effect<number>
  /** A queue of every commit from now on, in seq order; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<CommitEvent>, never, Scope.Scope>
  /**
   * Called when tables enter the live set from outside the write path
   * (import, repair): a queue of tenants whose data changed.
   */
  readonly tableChanges: Effect.Effect<Queue.Dequeue<{ readonly tenants: ReadonlyArray<TenantId> }>, never, Scope.Scope>
}

export class StorageEngine extends Context.Tag("@allidb/storage/StorageEngine")<StorageEngine, StorageEngineShape>() {}

// ---------------------------------------------------------------------------
// Implementation
//
// Write path: guard → HLC timestamps → rows → one WAL payload → Wal.submit
// (assigns the seq). The WAL's writer, once the group commit holding the
// payload is durable, runs the write's callback: seq stamped on the rows →
// memtable → publish. Callbacks run in seq order as plain code inside the
// writer, so a batch in the log always reaches the memtable (even if its
// caller was interrupted meanwhile) and commits publish in seq order.
//
// `applied` is the watermark: every seq ≤ applied is in a memtable. A frozen
// memtable is flushed with flushedSeq = the watermark at its freeze (never its
// max seq: a later seq may sit in it while an earlier one is not applied yet),
// so the WAL is only cut below data that is certainly in a table.
// ---------------------------------------------------------------------------

/** What the engine offers beyond the contract (tests, the bench, the import path). */
export interface Engine extends StorageEngineShape {
  /** Freezes the active memtable and flushes every frozen one now. */
  readonly flush: Effect.Effect<void, StorageFailure | Corruption>
  /** Publishes to `tableChanges` (import and repair call it after adding tables). */
  readonly notifyTablesChanged: (tenants: ReadonlyArray<TenantId>) => Effect.Effect<void>
}

/** Version byte of the engine's WAL payload (FORMAT.md "WAL"). */
export const WAL_PAYLOAD_VERSION = 1

/**
 * One write encoded as its WAL payload (FORMAT.md "WAL"; the seq is not in
 * it: the WAL record tags each payload with it), with what the memtable
 * takes of each row: its key, where its encoding lies in the payload (the
 * memtable keeps those bytes where they are, not a copy), its timestamp and
 * its stats.
 */
interface EncodedWrite {
  readonly payload: Uint8Array
  readonly keys: ReadonlyArray<Row.Key>
  readonly stamps: ReadonlyArray<Hlc.Timestamp>
  /** Start and end offset of row i at 2i and 2i + 1. */
  readonly spans: ReadonlyArray<number>
  readonly stats: ReadonlyArray<Row.RowStats>
}

/** CommitEvent.stored for a write whose mutation i wrote its key's whole row when `whole[i]`. */
const storedOf =
  (mutations: ReadonlyArray<Mutation>, stamps: ReadonlyArray<Hlc.Timestamp>, whole: ReadonlyArray<boolean>) =>
  (j: number): Entity | undefined => {
    const m = mutations[j]
    return m?._tag === "PutEntity" && whole[j] === true ? Row.storedEntity(m.entity, stamps[j]!) : undefined
  }

/** The row key of each mutation (the write path computes them once: a Map lookup hashes a key string once). */
const mutationKeys = (mutations: ReadonlyArray<Mutation>): Array<Row.Key> => {
  const keys: Array<Row.Key> = new Array(mutations.length)
  for (let i = 0; i < mutations.length; i++) keys[i] = Row.makeKey(mutations[i]!.tenant, mutationId(mutations[i]!))
  return keys
}

/**
 * Encodes each mutation's row straight into the payload, carved from a
 * shared slab. A PutEntity (most writes) is encoded from the entity without
 * building its row (Row.writeEntityRow); `createdAts[i]`, when set, is the
 * stored createdAt mutation i keeps.
 */
const encodeWrite = (
  mutations: ReadonlyArray<Mutation>,
  keys: ReadonlyArray<Row.Key>,
  createdAts: ReadonlyArray<number | undefined>,
  stamps: ReadonlyArray<Hlc.Timestamp>,
): EncodedWrite => {
  let estimate = 16
  for (let i = 0; i < mutations.length; i++) {
    const m = mutations[i]!
    estimate += keys[i]!.length + 8 + (m._tag === "PutEntity" ? Row.entityRowSizeEstimate(m.entity) : 256)
  }
  const spans: Array<number> = new Array(2 * mutations.length)
  const stats: Array<Row.RowStats> = new Array(mutations.length)
  // Sized from the estimate so the buffer rarely grows (and copies) while encoding.
  const payload = RowCodec.writeInSlab(estimate, (w) => {
    w.u8(WAL_PAYLOAD_VERSION).varint(mutations.length)
    for (let i = 0; i < mutations.length; i++) {
      const m = mutations[i]!
      w.latin1(keys[i]!)
      spans[2 * i] = w.length
      if (m._tag === "PutEntity") {
        stats[i] = Row.writeEntityRow(w, m.entity, stamps[i]!, 0, createdAts[i] ?? m.entity.createdAt)
      } else {
        const { row } = Row.fromMutation(m, stamps[i]!, 0)
        RowCodec.writeRow(w, row)
        stats[i] = Row.rowStats(row)
      }
      spans[2 * i + 1] = w.length
    }
  })
  return { payload, keys, stamps, spans, stats }
}

/** Decodes a WAL payload; every row gets the payload's seq. Throws RowCodec.DecodeError when malformed. */
export const decodeWalPayload = (bytes: Uint8Array, seq: number): Array<Row.KeyedRow> => {
  const r = new RowCodec.Reader(bytes)
  const version = r.u8()
  if (version !== WAL_PAYLOAD_VERSION) throw new RowCodec.DecodeError(`unknown WAL payload version ${version}`, 0)
  const count = r.varint()
  const rows: Array<Row.KeyedRow> = new Array(count)
  for (let i = 0; i < count; i++) {
    const key = r.latin1() as Row.Key
    const row = RowCodec.readRow(r)
    rows[i] = { key, row: { deletedAt: row.deletedAt, cells: row.cells, seq } }
  }
  if (r.remaining !== 0) throw new RowCodec.DecodeError(`${r.remaining} trailing bytes`, r.pos)
  return rows
}

const PAGE_TOKEN_PREFIX = "k"

const encodePageToken = (id: string): string => PAGE_TOKEN_PREFIX + Buffer.from(id, "utf8").toString("base64url")

const decodePageToken = (token: string): string | undefined =>
  token.startsWith(PAGE_TOKEN_PREFIX) ? Buffer.from(token.slice(1), "base64url").toString("utf8") : undefined

/** The smallest key strictly greater than `key` (keys are binary strings). */
const keyAfter = (key: Row.Key): Row.Key => `${key}\u0000` as Row.Key

const mutationId = (m: Mutation): EntityId => {
  switch (m._tag) {
    case "PutEntity":
      return m.entity.id
    case "DeleteEntity":
      return m.id
    case "PutEdge":
    case "DeleteEdge":
      return m.from
  }
}

export const make: Effect.Effect<
  Engine,
  StorageFailure | Corruption,
  | StorageConfig.StorageConfig
  | Wal.Wal
  | Memtable.Memtable
  | SSTableStore.SSTableStore
  | TenantGuard.TenantGuard
  | Scope.Scope
> = Effect.gen(function* () {
  const config = yield* StorageConfig.StorageConfig
  const wal = yield* Wal.Wal
  const memtable = yield* Memtable.Memtable
  const store = yield* SSTableStore.SSTableStore
  const guard = yield* TenantGuard.TenantGuard
  const providedHlc = yield* Effect.serviceOption(Hlc.Hlc)
  // Without a shared Hlc (a single node) the engine keeps its own, with a
  // synchronous `now` for the write path (Hlc.make's rule, read off the same
  // Clock): one Effect step less per write.
  const clock = yield* Effect.clock
  let localNow: (() => Hlc.Timestamp) | undefined
  let hlc: Hlc.HlcShape
  if (Option.isSome(providedHlc)) {
    hlc = providedHlc.value
  } else {
    const node = Hlc.nodeTiebreak("allidb-local")
    let last = 0
    const now = (): Hlc.Timestamp => {
      last = Hlc.nextWall(last, clock.unsafeCurrentTimeMillis())
      return { wall: last, node }
    }
    localNow = now
    hlc = {
      now: Effect.sync(now),
      observe: (remote) =>
        Effect.sync(() => {
          if (remote.wall > last) last = remote.wall
        }),
    }
  }
  const commits = yield* PubSub.unbounded<CommitEvent>()
  const tableChangeHub = yield* PubSub.unbounded<{ readonly tenants: ReadonlyArray<TenantId> }>()

  // --- reads ---------------------------------------------------------------

  /** The merged row of a key. Memtables are read BEFORE tables: a flush adds its table before releasing its memtable. */
  const readRow = (key: Row.Key): Effect.Effect<Row.Row | undefined, ReadError> =>
    Effect.flatMap(memtable.get(key), (mem) =>
      Effect.map(store.get(key), (table) =>
        mem === undefined ? table : table === undefined ? mem : Row.merge(mem, table),
      ),
    )

  /**
   * Merged rows with start ≤ key < end, in key order (memtables snapshotted
   * first, as in readRow); the tables stay readable until the scope closes.
   */
  const mergedCursor = (start: Row.Key, end: Row.Key, tableIds?: ReadonlyArray<number>) =>
    Effect.flatMap(memtable.scan(start, end), (mem) =>
      Effect.map(store.scan(start, end, tableIds === undefined ? undefined : { tableIds }), (tables) =>
        SSTableReader.merge<ReadError>([SSTableReader.fromIterable(mem), tables]),
      ),
    )

  // --- flushing --------------------------------------------------------------

  interface Frozen {
    readonly view: Memtable.MemtableView
    readonly flushedSeq: number
  }
  let applied = 0
  const frozenQueue: Array<Frozen> = [] // oldest first
  const flushSignal = makeSignal()
  const flushLock = yield* Effect.makeSemaphore(1)
  const stalledWaiters = new Waiters()
  let stallLogged = false

  /** Plain code: the write path calls it from the WAL's group-commit callback. */
  const freezeActiveUnsafe = (): void => {
    const watermark = applied
    const view = memtable.freezeActiveUnsafe()
    if (view === undefined) return
    frozenQueue.push({ view, flushedSeq: watermark })
    flushSignal.notify()
  }
  const freezeActive = Effect.sync(freezeActiveUnsafe)

  const flushOldest = Effect.gen(function* () {
    const next = frozenQueue[0]
    if (next === undefined) return
    const started = yield* Effect.clockWith((c) => c.currentTimeMillis)
    yield* store.flush(SSTableWriter.encodedRows(next.view.encodedEntries()), next.flushedSeq)
    yield* memtable.releaseFrozen(next.view.id)
    frozenQueue.shift()
    yield* Metric.increment(Metrics.flushes)
    const ended = yield* Effect.clockWith((c) => c.currentTimeMillis)
    yield* Metric.update(Metrics.flushSeconds, (ended - started) / 1000)
    yield* wal.deleteThrough(next.flushedSeq)
    stalledWaiters.releaseAll()
    if (frozenQueue.length <= config.maxFrozenMemtables) stallLogged = false
  }).pipe(flushLock.withPermits(1))

  const flushAllFrozen = Effect.suspend(function loop(): Effect.Effect<void, StorageFailure | Corruption> {
    return frozenQueue.length === 0 ? Effect.void : Effect.zipRight(flushOldest, Effect.suspend(loop))
  })

  // --- recovery --------------------------------------------------------------

  const flushedSeq = yield* store.flushedSeq
  yield* wal.advanceSeq(flushedSeq)
  let maxWall = 0
  for (const table of yield* store.tables) {
    maxWall = Math.max(maxWall, table.properties.maxTimestamp.wall)
  }
  let replayed = 0
  yield* wal.replay(flushedSeq, (seq, payload) =>
    Effect.gen(function* () {
      let rows: Array<Row.KeyedRow>
      try {
        rows = decodeWalPayload(payload, seq)
      } catch (e) {
        return yield* new Corruption({
          file: `${config.dataDir}/wal`,
          offset: 0,
          message: `WAL entry with seq ${seq} does not decode: ${e instanceof Error ? e.message : String(e)}`,
        })
      }
      for (const { row } of rows) {
        const range = Row.timestampRange(row)
        if (range !== undefined && range.max.wall > maxWall) maxWall = range.max.wall
      }
      yield* memtable.apply(rows)
      applied = seq
      replayed++
      // Keep memory bounded while replaying a long log.
      if ((yield* memtable.activeBytes) >= config.memtableBytes) {
        yield* freezeActive
        yield* flushAllFrozen
      }
    }),
  )
  // A clock that stepped back across the restart must not stamp new writes
  // older than what is already stored.
  yield* hlc.observe({ wall: maxWall, node: 0 })
  applied = yield* wal.lastSeq
  if (replayed > 0) yield* Effect.logInfo(`storage: replayed ${replayed} WAL entries after flushed seq ${flushedSeq}`)

  // --- publishing in seq order -----------------------------------------------

  const early = new Map<number, CommitEvent>()
  /** Marks a commit applied; publishes every commit now contiguous with the watermark. */
  const markApplied = (event: CommitEvent): void => {
    if (event.seq !== applied + 1) {
      early.set(event.seq, event)
      return
    }
    applied = event.seq
    commits.unsafeOffer(event)
    for (let e = early.get(applied + 1); e !== undefined; e = early.get(applied + 1)) {
      early.delete(e.seq)
      applied = e.seq
      commits.unsafeOffer(e)
    }
  }

  // --- background flusher ------------------------------------------------------

  const flusher = Effect.forever(
    Effect.zipRight(
      // The freeze happened in a group-commit callback: let the writers that
      // callback resumed run first, so they see the frozen memtable (and stall
      // if flushing is behind) instead of the flush racing ahead of them.
      Effect.zipRight(flushSignal.wait, Effect.yieldNow()),
      flushAllFrozen.pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logError(`storage: flush failed, retrying in 1 s: ${error.message}`),
            Effect.zipRight(
              Effect.sleep("1 second"),
              Effect.sync(() => flushSignal.notify()),
            ),
          ),
        ),
      ),
    ),
  )
  yield* Effect.forkScoped(flusher)

  // --- writes ------------------------------------------------------------------

  let closing = false
  let drained: (() => void) | undefined

  const stall = Effect.gen(function* () {
    yield* Metric.increment(Metrics.writeStalls)
    // One line per stall episode, not one per waiting write.
    if (!stallLogged) {
      stallLogged = true
      yield* Effect.logWarning(
        `storage: writes stalled: ${frozenQueue.length} frozen memtables wait for flush (max ${config.maxFrozenMemtables})`,
      )
    }
    while (frozenQueue.length > config.maxFrozenMemtables) {
      yield* stalledWaiters.wait
    }
  })

  // The write path is plain synchronous code around ONE async boundary per
  // write: guard, createdAt (memtable + blooms), rows, payload, then
  // Wal.submit. Everything after durability — seq stamping, memtable apply,
  // publishing — runs in the WAL's group-commit callback, in seq order, as
  // plain code. At ~100k writes/s every Effect step per write shows up in the
  // profile. Because the callback runs in the WAL's writer, a write that is
  // in the log always reaches the memtable, even if its caller is interrupted
  // while waiting for the acknowledgement.

  const NEEDS_READ: unique symbol = Symbol("needs read")
  const NO_CREATED_AT: ReadonlyArray<number | undefined> = []

  /**
   * The stored createdAt of each PutEntity that needs one, answered
   * synchronously from the memtables when no table's bloom filter may hold
   * the key (most PutEntity calls write new ids); NEEDS_READ when a table
   * must be read.
   */
  const createdAtsSync = (
    mutations: ReadonlyArray<Mutation>,
    keys: ReadonlyArray<Row.Key>,
  ): ReadonlyArray<number | undefined> | typeof NEEDS_READ => {
    let out: Array<number | undefined> | undefined
    for (let i = 0; i < mutations.length; i++) {
      if (!needsCreatedAt(mutations[i]!)) continue
      const key = keys[i]!
      if (store.mayContainUnsafe(key)) return NEEDS_READ
      const meta = memtable.getUnsafe(key)?.cells.get(Row.META)?.value
      if (meta?._tag === "Meta" && meta.createdAt !== undefined) {
        out ??= new Array(mutations.length)
        out[i] = meta.createdAt
      }
    }
    return out ?? NO_CREATED_AT
  }

  /** createdAt of the stored entity, kept by a PutEntity that does not give one (the path that reads tables). */
  const existingCreatedAt = (key: Row.Key): Effect.Effect<number | undefined, StorageFailure | TenantViolation> =>
    readRow(key).pipe(
      Effect.map((row) => {
        const meta = row?.cells.get(Row.META)?.value
        return meta?._tag === "Meta" ? meta.createdAt : undefined
      }),
      // A damaged table under the row fails the write (the damage itself is
      // reported by the read path); the write is not applied.
      Effect.catchTag("Corruption", (e) =>
        Effect.fail(new StorageFailure({ operation: "write (reading createdAt)", message: e.message })),
      ),
    )

  function needsCreatedAt(m: Mutation): m is Extract<Mutation, { _tag: "PutEntity" }> {
    return m._tag === "PutEntity" && m.entity.createdAt === undefined
  }

  const createdAtsFor = (
    mutations: ReadonlyArray<Mutation>,
    keys: ReadonlyArray<Row.Key>,
  ): Effect.Effect<ReadonlyArray<number | undefined>, StorageFailure | TenantViolation> =>
    Effect.forEach(mutations, (m, i) => (needsCreatedAt(m) ? existingCreatedAt(keys[i]!) : Effect.succeed(undefined)))

  /** One timestamp per mutation, increasing, so later mutations of a batch win over earlier ones on a row. */
  const timestampsFor = (count: number): Effect.Effect<ReadonlyArray<Hlc.Timestamp>> =>
    count === 1 ? Effect.map(hlc.now, (ts) => [ts]) : Effect.all(Array.from({ length: count }, () => hlc.now))

  // Writes handed to the WAL and not yet applied, and writes still preparing
  // (slow path): closing waits for both.
  let submitted = 0
  let preparing = 0
  const checkDrained = (): void => {
    if (submitted === 0 && preparing === 0 && drained !== undefined) drained()
  }

  /**
   * Encodes the rows once into the WAL payload and submits it; the callback
   * (in the WAL writer, after the group commit is durable) stamps the seq,
   * applies the rows, publishes the commit and resumes the caller.
   */
  const commit = (
    caller: TenantId,
    mutations: ReadonlyArray<Mutation>,
    encoded: EncodedWrite,
    sync: boolean,
  ): Effect.Effect<{ readonly seq: number }, StorageFailure> =>
    Effect.async<{ readonly seq: number }, StorageFailure>((resume) => {
      let seq = 0
      const { payload, keys, spans, stats } = encoded
      const result = wal.submit(payload, sync, (error) => {
        submitted--
        try {
          if (error !== undefined) return resume(Effect.fail(error))
          let whole: Array<boolean> | undefined
          for (let i = 0; i < keys.length; i++) {
            const fresh = memtable.applyEncodedUnsafe(keys[i]!, payload, spans[2 * i]!, spans[2 * i + 1]!, seq, stats[i]!)
            if (fresh && mutations[i]!._tag === "PutEntity" && !store.mayContainUnsafe(keys[i]!)) {
              whole ??= new Array<boolean>(keys.length).fill(false)
              whole[i] = true
            }
          }
          const ids = mutations.length === 1 ? [mutationId(mutations[0]!)] : [...new Set(mutations.map(mutationId))]
          // ids[j] is mutation j's id unless the batch repeats an id (then every row is read).
          markApplied(
            whole === undefined || ids.length !== mutations.length
              ? { seq, tenant: caller, ids }
              : { seq, tenant: caller, ids, stored: storedOf(mutations, encoded.stamps, whole) },
          )
          if (memtable.activeBytesUnsafe() >= config.memtableBytes) freezeActiveUnsafe()
          resume(Effect.succeed({ seq }))
        } catch (e) {
          // A bug: do not let it kill the WAL's writer (every later write would hang).
          resume(Effect.die(e))
        } finally {
          checkDrained()
        }
      })
      if (typeof result !== "number") return resume(Effect.fail(result))
      seq = result
      submitted++
    })

  /** The path with a table read (createdAt of a key some bloom filter may hold) or a stall. */
  const slowWrite = (
    caller: TenantId,
    mutations: ReadonlyArray<Mutation>,
    keys: ReadonlyArray<Row.Key>,
    sync: boolean,
  ) => {
    preparing++
    const run = Effect.flatMap(createdAtsFor(mutations, keys), (createdAts) =>
      Effect.flatMap(timestampsFor(mutations.length), (stamps) =>
        commit(caller, mutations, encodeWrite(mutations, keys, createdAts, stamps), sync),
      ),
    )
    return Effect.ensuring(
      frozenQueue.length > config.maxFrozenMemtables ? Effect.zipRight(stall, run) : run,
      Effect.sync(() => {
        preparing--
        checkDrained()
      }),
    )
  }

  const write = (
    caller: TenantId,
    mutations: ReadonlyArray<Mutation>,
    options?: WriteOptions,
  ): Effect.Effect<{ readonly seq: number }, WriteError> =>
    Effect.suspend((): Effect.Effect<{ readonly seq: number }, WriteError> => {
      if (closing) return Effect.fail(new Unavailable({ message: "storage is shutting down" }))
      for (const m of mutations) {
        if (m.tenant !== caller) return guard.violation(caller, m.tenant, "write")
      }
      if (mutations.length === 0) return Effect.succeed({ seq: applied })
      const sync = options?.sync === true
      const keys = mutationKeys(mutations)
      if (frozenQueue.length > config.maxFrozenMemtables) return slowWrite(caller, mutations, keys, sync)
      const createdAts = createdAtsSync(mutations, keys)
      if (createdAts === NEEDS_READ) return slowWrite(caller, mutations, keys, sync)
      if (localNow !== undefined) {
        const stamps = mutations.length === 1 ? [localNow()] : Array.from({ length: mutations.length }, localNow)
        return commit(caller, mutations, encodeWrite(mutations, keys, createdAts, stamps), sync)
      }
      return Effect.flatMap(timestampsFor(mutations.length), (stamps) =>
        commit(caller, mutations, encodeWrite(mutations, keys, createdAts, stamps), sync),
      )
    })

  // Closing: refuse new writes, let the in-flight ones finish (the WAL's own
  // finalizer, which runs after this one, makes the log durable).
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      closing = true
      yield* Effect.logDebug(`storage: closing, ${submitted + preparing} writes in flight`)
      if (submitted > 0 || preparing > 0) {
        yield* Effect.async<void>((resume) => {
          drained = () => resume(Effect.void)
        }).pipe(Effect.timeout("10 seconds"), Effect.ignore)
      }
    }),
  )

  // --- the contract's reads -----------------------------------------------------

  /** Every row a read returns must be of the caller's tenant; a mismatch here is a bug the guard reports. */
  const checkKey = (caller: TenantId, key: Row.Key, operation: string) =>
    key.startsWith(Row.tenantStart(caller)) ? Effect.void : guard.violation(caller, Row.parseKey(key).tenant, operation)

  const get = (caller: TenantId, tenant: TenantId, id: EntityId) =>
    tenant !== caller
      ? guard.violation(caller, tenant, "get")
      : Effect.map(readRow(Row.makeKey(tenant, id)), (row) => (row === undefined ? undefined : Row.toEntity(id, row)))

  /**
   * Rows no table may hold (their bloom filters say so) are answered from the
   * memtables in one synchronous pass — the index re-reads the entities its
   * commits do not offer; the others are read like `get`. Both
   * checks run in the same synchronous step, so no flush can move a row from
   * the memtables into a table between them.
   */
  const getMany = (tenant: TenantId, ids: ReadonlyArray<EntityId>) =>
    Effect.suspend((): Effect.Effect<ReadonlyArray<Entity | undefined>, ReadError> => {
      const out: Array<Entity | undefined> = new Array(ids.length)
      const inTables: Array<number> = []
      for (let i = 0; i < ids.length; i++) {
        const key = Row.makeKey(tenant, ids[i]!)
        if (store.mayContainUnsafe(key)) {
          inTables.push(i)
          continue
        }
        const row = memtable.getUnsafe(key)
        out[i] = row === undefined ? undefined : Row.toEntity(ids[i]!, row)
      }
      if (inTables.length === 0) return Effect.succeed(out)
      return Effect.as(
        Effect.forEach(
          inTables,
          (i) =>
            Effect.map(get(tenant, tenant, ids[i]!), (entity) => {
              out[i] = entity
            }),
          { discard: true },
        ),
        out,
      )
    })

  const scan = (caller: TenantId, tenant: TenantId, options: ScanOptions) =>
    Effect.scoped(Effect.gen(function* () {
      if (tenant !== caller) return yield* guard.violation(caller, tenant, "scan")
      const limit = Math.max(0, Math.floor(options.limit))
      let start = options.start === undefined ? Row.tenantStart(tenant) : Row.makeKey(tenant, options.start)
      if (options.pageToken !== undefined) {
        const after = decodePageToken(options.pageToken)
        if (after === undefined) {
          return yield* new Corruption({ file: "page token", offset: 0, message: "malformed scan page token" })
        }
        start = keyAfter(Row.makeKey(tenant, after))
      }
      const end = options.end === undefined ? Row.tenantEnd(tenant) : Row.makeKey(tenant, options.end)
      const entities: Array<Entity> = []
      if (limit === 0 || start >= end) return { entities }
      const cursor = yield* mergedCursor(start, end)
      let lastId: EntityId | undefined
      while (true) {
        const next = yield* cursor.next
        if (next === undefined) return { entities }
        yield* checkKey(caller, next.key, "scan")
        const id = Row.parseKey(next.key).id
        const entity = Row.toEntity(id, next.row)
        if (entity === undefined) continue
        if (entities.length === limit) {
          // A live row beyond the page exists: hand out a token for it.
          return { entities, nextPageToken: encodePageToken(lastId!) }
        }
        entities.push(entity)
        lastId = id
      }
    }))

  const tenants = Effect.gen(function* () {
    const found = new Set<string>(yield* store.tenants)
    // Walk the memtables tenant by tenant: one seek per tenant, not one step per row.
    let from: Row.Key | undefined
    while (true) {
      const it = yield* memtable.scan(from, undefined)
      const first = it.next()
      if (first.done) break
      const tenant = Row.parseKey(first.value.key).tenant
      found.add(tenant)
      from = Row.tenantEnd(tenant)
    }
    return [...found].sort() as Array<TenantId>
  })

  const changedSince = (tenant: TenantId, afterSeq: number): Stream.Stream<ChangedRow, ReadError> =>
    Stream.unwrapScoped(
      Effect.gen(function* () {
        const start = Row.tenantStart(tenant)
        const end = Row.tenantEnd(tenant)
        const tables = (yield* store.tables).filter((t) => t.properties.tenants.includes(tenant))
        const recent = tables.filter((t) => t.properties.maxSeq > afterSeq)
        const complete = recent.length === tables.length
        // Only sources that may hold a change after `afterSeq` are scanned; when
        // some tables were skipped, a changed row is re-read in full.
        const cursor = yield* mergedCursor(
          start,
          end,
          complete ? undefined : recent.map((t) => t.id),
        )
        const toChanged = (key: Row.Key, row: Row.Row | undefined): ChangedRow => {
          const id = Row.parseKey(key).id
          return { id, seq: row?.seq ?? 0, entity: row === undefined ? undefined : Row.toEntity(id, row) }
        }
        const changed = SSTableReader.toStream(cursor).pipe(Stream.filter(({ row }) => row.seq > afterSeq))
        return complete
          ? Stream.map(changed, ({ key, row }) => toChanged(key, row))
          : Stream.mapEffect(changed, ({ key, row }) => Effect.map(readRow(key), (full) => toChanged(key, full ?? row)))
      }),
    )

  const engine: Engine = {
    write,
    get,
    getMany: (caller, tenant, ids) => (tenant !== caller ? guard.violation(caller, tenant, "getMany") : getMany(tenant, ids)),
    scan,
    tenants,
    changedSince,
    lastSeq: Effect.sync(() => applied),
    subscribe: PubSub.subscribe(commits),
    tableChanges: PubSub.subscribe(tableChangeHub),
    flush: Effect.zipRight(freezeActive, flushAllFrozen),
    notifyTablesChanged: (changed) => Effect.asVoid(PubSub.publish(tableChangeHub, { tenants: changed })),
  }
  return engine
})

/** The engine with its extra operations (flush, notifyTablesChanged); the same instance as `StorageEngine`. */
export class StorageEngineAdmin extends Context.Tag("@allidb/storage/StorageEngineAdmin")<StorageEngineAdmin, Engine>() {}

export const layer: Layer.Layer<
  StorageEngine | StorageEngineAdmin,
  StorageFailure | Corruption,
  | StorageConfig.StorageConfig
  | Wal.Wal
  | Memtable.Memtable
  | SSTableStore.SSTableStore
  | TenantGuard.TenantGuard
> = Layer.scopedContext(
  Effect.map(make, (engine) => Context.add(Context.make(StorageEngine, engine), StorageEngineAdmin, engine)),
)

/** How long closing waits for an interrupted compaction to stop before it moves on. */
const COMPACTION_STOP_TIMEOUT = "5 seconds"

/**
 * Background compaction for `layerFrom`: compacts while a bucket qualifies,
 * then looks again every second. Failures are logged and retried; an
 * interruption (the scope closing) ends the loop.
 *
 * Why not Effect.forkScoped: in about 1 of 20 closes with a compaction in
 * progress, the interrupted compaction fiber never finished (seen with the
 * crash harness; the fiber waits in an async step inside
 * Compactor.compactNow that is not a Disk call). A scoped fork would make
 * the node's shutdown wait for ever. Here the close interrupts the loop and
 * waits at most COMPACTION_STOP_TIMEOUT. A compaction cut off this way
 * never changes the live set: only the manifest swap does that, and it is
 * atomic.
 */
export const layerCompactionLoop: Layer.Layer<never, never, Compactor.Compactor> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const compactor = yield* Compactor.Compactor
    const round = compactor.compactNow.pipe(
      Effect.repeat({ until: (result) => result === undefined }),
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.logError("storage: compaction failed; retrying later", cause),
      ),
    )
    const loop = Effect.forever(Effect.zipRight(round, Effect.sleep("1 second")))
    // acquire runs uninterruptibly and a fork inherits that: make the loop interruptible again.
    yield* Effect.acquireRelease(Effect.forkDaemon(Effect.interruptible(loop)), (fiber) =>
      Effect.interruptible(Fiber.interrupt(fiber)).pipe(
        Effect.timeout(COMPACTION_STOP_TIMEOUT),
        Effect.catchAll(() =>
          Effect.logWarning(
            `storage: compaction did not stop within ${COMPACTION_STOP_TIMEOUT} of the shutdown; closing without it`,
          ),
        ),
      ),
    )
  }),
)

/**
 * The whole engine stack on node:fs (or another Disk): config, Wal, Memtable,
 * SSTableStore, Compactor (with its background loop), TenantGuard and the
 * engine. The app races its main with `TenantGuard.fatal`, so the guard is
 * part of the output.
 */
export const layerFrom = (
  config: Partial<StorageConfig.StorageConfigShape> & { readonly dataDir: string },
  options: { readonly disk?: Layer.Layer<Disk.Disk> } = {},
): Layer.Layer<
  | StorageEngine
  | StorageEngineAdmin
  | TenantGuard.TenantGuard
  | SSTableStore.SSTableStore
  | Compactor.Compactor
  | Wal.Wal
  | StorageConfig.StorageConfig,
  StorageFailure | Corruption
> => {
  const base = Layer.merge(options.disk ?? Disk.layerNode, StorageConfig.layer(config))
  const parts = Layer.mergeAll(Wal.layer, Memtable.layer, SSTableStore.layer, TenantGuard.layer).pipe(
    Layer.provideMerge(base),
  )
  // The manual Compactor plus our loop (see layerCompactionLoop): interrupting
  // Compactor.layer's own loop mid-compaction could leave shutdown waiting.
  const compaction = Layer.merge(Compactor.layerManual, layerCompactionLoop.pipe(Layer.provide(Compactor.layerManual)))
  const withCompactor = compaction.pipe(Layer.provideMerge(parts))
  return layer.pipe(Layer.provideMerge(withCompactor))
}
