/**
 * The in-memory, sorted write buffer of the LSM. `RowMap` is the pure
 * structure: a Map for O(1) point lookups and merges, plus lazily sorted keys
 * (new keys are appended unsorted and folded in on the next range scan, into
 * a fresh array so scans already running keep their snapshot). That keeps the
 * write path at a hash insert; a skip list was not needed (see the bench note
 * in Memtable.test.ts). Rows are held encoded (see `RowMap`) and decoded on
 * read.
 *
 * The `Memtable` service holds the active RowMap and the frozen ones waiting
 * to be flushed (newest first). A frozen RowMap never changes again, so a
 * reader that holds it keeps a consistent view while a new one takes writes.
 * Write stalls are the engine's business; it reads `frozen.length`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Metrics from "./Metrics.js"
import * as Row from "./Row.js"
import * as RowCodec from "./RowCodec.js"

// ---------------------------------------------------------------------------
// Pure sorted row map

/** Per-key overhead counted on top of the encoded row (Map entry, row record, key string). */
const KEY_OVERHEAD = 160

/** Index of the first key ≥ `key` in a sorted array. */
export const lowerBound = (keys: ReadonlyArray<Row.Key>, key: Row.Key): number => {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((keys[mid] as Row.Key) < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Each row's record is a stride of numbers in one Float64Array (see
 * `RowMap`): where its encoding lies, its seq and the stats a flush needs.
 */
const STRIDE = 9
const BUFFER = 0 // index into `buffers`
const OFFSET = 1
const LENGTH = 2
const SEQ = 3
const TOMBSTONES = 4
const MIN_WALL = 5
const MIN_NODE = 6
const MAX_WALL = 7
const MAX_NODE = 8

export class RowMap {
  /**
   * Key → row number. A row is a record in `records` and bytes in one of
   * `buffers` (for a fresh key, the very WAL payload slab its write was
   * encoded into, whose seq field may still be 0): per row the heap holds
   * only its key string and this Map entry. A graph of maps and cells per row,
   * and later a slot object and a byte view per row, were what kept the
   * garbage collector busy on the write path: every scavenge copied the rows
   * a 64 MiB memtable accumulates.
   */
  private readonly index = new Map<Row.Key, number>()
  private records = new Float64Array(STRIDE * 1024)
  private readonly buffers: Array<ArrayBufferLike> = []
  private sorted: ReadonlyArray<Row.Key> = []
  private pending: Array<Row.Key> = []
  private isFrozen = false
  private byteCount = 0
  private seqMax = 0

  constructor(readonly id: number) {}

  /** Estimated bytes held (encoded rows + per-key overhead). */
  get bytes(): number {
    return this.byteCount
  }

  get rowCount(): number {
    return this.index.size
  }

  /** Newest commit sequence number applied. */
  get maxSeq(): number {
    return this.seqMax
  }

  get frozen(): boolean {
    return this.isFrozen
  }

  /** Merges a row change into the map. A frozen map refuses writes: that would be a bug. */
  apply(key: Row.Key, row: Row.Row): void {
    const bytes = RowCodec.encodeRowInSlab(row)
    this.applyEncoded(key, bytes, 0, bytes.length, row.seq, Row.rowStats(row))
  }

  /**
   * Merges a row change given as its encoding, `bytes[start, end)` (whose seq
   * field may differ: `seq` counts), and its stats. A fresh key keeps the
   * bytes where they are (the write path passes its WAL payload, which must
   * not change afterwards); an existing key is merged and re-encoded. True
   * when the key was new to this map.
   */
  applyEncoded(key: Row.Key, bytes: Uint8Array, start: number, end: number, seq: number, stats: Row.RowStats): boolean {
    if (this.isFrozen) throw new Error(`memtable ${this.id} is frozen`)
    const existing = this.index.get(key)
    if (existing === undefined) {
      const n = this.index.size
      if ((n + 1) * STRIDE > this.records.length) {
        const grown = new Float64Array(this.records.length * 2)
        grown.set(this.records)
        this.records = grown
      }
      this.write(n, bytes, start, end, seq, stats)
      this.index.set(key, n)
      this.pending.push(key)
      this.byteCount += end - start + KEY_OVERHEAD + key.length
    } else {
      const change = RowCodec.decodeRow(bytes.subarray(start, end))
      const merged = Row.merge(this.rowAt(existing), { deletedAt: change.deletedAt, cells: change.cells, seq })
      // Its own buffer, not the slab: a key overwritten many times would pin
      // slab space its accounting no longer counts.
      const encoded = RowCodec.encodeRow(merged)
      this.byteCount += encoded.length - this.records[existing * STRIDE + LENGTH]!
      this.write(existing, encoded, 0, encoded.length, merged.seq, Row.rowStats(merged))
    }
    if (seq > this.seqMax) this.seqMax = seq
    return existing === undefined
  }

  has(key: Row.Key): boolean {
    return this.index.has(key)
  }

  private write(n: number, bytes: Uint8Array, start: number, end: number, seq: number, stats: Row.RowStats): void {
    const r = this.records
    const at = n * STRIDE
    const last = this.buffers.length - 1
    if (last < 0 || this.buffers[last] !== bytes.buffer) this.buffers.push(bytes.buffer)
    r[at + BUFFER] = this.buffers.length - 1
    r[at + OFFSET] = bytes.byteOffset + start
    r[at + LENGTH] = end - start
    r[at + SEQ] = seq
    r[at + TOMBSTONES] = stats.tombstones
    r[at + MIN_WALL] = stats.minWall
    r[at + MIN_NODE] = stats.minNode
    r[at + MAX_WALL] = stats.maxWall
    r[at + MAX_NODE] = stats.maxNode
  }

  private bytesAt(n: number): Uint8Array {
    const at = n * STRIDE
    const r = this.records
    return new Uint8Array(this.buffers[r[at + BUFFER]!]!, r[at + OFFSET]!, r[at + LENGTH]!)
  }

  private rowAt(n: number): Row.Row {
    const row = RowCodec.decodeRow(this.bytesAt(n))
    const seq = this.records[n * STRIDE + SEQ]!
    return row.seq === seq ? row : { deletedAt: row.deletedAt, cells: row.cells, seq }
  }

  private encodedAt(key: Row.Key, n: number): RowCodec.EncodedRow {
    const r = this.records
    const at = n * STRIDE
    return {
      key,
      bytes: this.bytesAt(n),
      seq: r[at + SEQ]!,
      tombstones: r[at + TOMBSTONES]!,
      minWall: r[at + MIN_WALL]!,
      minNode: r[at + MIN_NODE]!,
      maxWall: r[at + MAX_WALL]!,
      maxNode: r[at + MAX_NODE]!,
    }
  }

  get(key: Row.Key): Row.Row | undefined {
    const n = this.index.get(key)
    return n === undefined ? undefined : this.rowAt(n)
  }

  /** No more writes; sorts the keys once so every later scan is a plain walk. */
  freeze(): void {
    this.sortedKeys()
    this.isFrozen = true
  }

  private sortedKeys(): ReadonlyArray<Row.Key> {
    if (this.pending.length === 0) return this.sorted
    const fresh = this.pending.sort()
    this.pending = []
    const old = this.sorted
    // Merge into a NEW array: iterators running over `old` keep their snapshot.
    const out: Array<Row.Key> = new Array(old.length + fresh.length)
    let i = 0
    let j = 0
    let k = 0
    while (i < old.length && j < fresh.length) {
      out[k++] = (old[i] as Row.Key) < (fresh[j] as Row.Key) ? (old[i++] as Row.Key) : (fresh[j++] as Row.Key)
    }
    while (i < old.length) out[k++] = old[i++] as Row.Key
    while (j < fresh.length) out[k++] = fresh[j++] as Row.Key
    this.sorted = out
    return out
  }

  /**
   * Rows with start ≤ key < end in key order (bounds optional). Keys are a
   * snapshot taken at the call; rows are read as the iteration reaches them,
   * so an active map may show writes newer than the call (never older ones).
   */
  entries(start?: Row.Key, end?: Row.Key): IterableIterator<Row.KeyedRow> {
    return this.walk(this.sortedKeys(), start, end)
  }

  /** Every row in key order in its encoded form (a flush copies the bytes instead of re-encoding). */
  *encodedEntries(): IterableIterator<RowCodec.EncodedRow> {
    for (const key of this.sortedKeys()) yield this.encodedAt(key, this.index.get(key) as number)
  }

  private *walk(keys: ReadonlyArray<Row.Key>, start?: Row.Key, end?: Row.Key): IterableIterator<Row.KeyedRow> {
    for (let i = start === undefined ? 0 : lowerBound(keys, start); i < keys.length; i++) {
      const key = keys[i] as Row.Key
      if (end !== undefined && key >= end) return
      yield { key, row: this.rowAt(this.index.get(key) as number) }
    }
  }
}

/**
 * Merges sorted row sources into one sorted source; rows of equal keys are
 * combined with Row.merge (order of sources does not matter: merge commutes).
 */
export function* mergeSorted(sources: ReadonlyArray<Iterable<Row.KeyedRow>>): IterableIterator<Row.KeyedRow> {
  if (sources.length === 1) {
    yield* sources[0] as Iterable<Row.KeyedRow>
    return
  }
  const iters = sources.map((s) => s[Symbol.iterator]())
  const heads: Array<Row.KeyedRow | undefined> = iters.map((it) => {
    const r = it.next()
    return r.done ? undefined : r.value
  })
  for (;;) {
    let min: Row.Key | undefined
    for (const h of heads) if (h !== undefined && (min === undefined || h.key < min)) min = h.key
    if (min === undefined) return
    let row: Row.Row | undefined
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]
      if (h === undefined || h.key !== min) continue
      row = row === undefined ? h.row : Row.merge(row, h.row)
      const r = (iters[i] as Iterator<Row.KeyedRow>).next()
      heads[i] = r.done ? undefined : r.value
    }
    yield { key: min, row: row as Row.Row }
  }
}

// ---------------------------------------------------------------------------
// Service

/** A read-only memtable: the frozen ones, and a view of the active one. */
export interface MemtableView {
  readonly id: number
  readonly bytes: number
  readonly rowCount: number
  readonly maxSeq: number
  readonly get: (key: Row.Key) => Row.Row | undefined
  readonly entries: (start?: Row.Key, end?: Row.Key) => IterableIterator<Row.KeyedRow>
  /** Every row in key order, encoded (for the flush). */
  readonly encodedEntries: () => IterableIterator<RowCodec.EncodedRow>
}

export interface MemtableShape {
  /** Merges row changes into the active memtable (callers apply batches in seq order). */
  readonly apply: (rows: ReadonlyArray<Row.KeyedRow>) => Effect.Effect<void>
  /** The key's row merged across the active and frozen memtables, or undefined. */
  readonly get: (key: Row.Key) => Effect.Effect<Row.Row | undefined>
  /** Merged rows with start ≤ key < end in key order, over active + frozen (iterate once). */
  readonly scan: (start?: Row.Key, end?: Row.Key) => Effect.Effect<IterableIterator<Row.KeyedRow>>
  /**
   * Freezes the active memtable and starts a new one; returns the frozen one,
   * or undefined when the active one was empty (nothing to flush). Flush frozen
   * memtables oldest first so flushedSeq only ever covers flushed commits.
   */
  readonly freezeActive: Effect.Effect<MemtableView | undefined>
  /** Frozen memtables waiting for flush, newest first. */
  readonly frozen: Effect.Effect<ReadonlyArray<MemtableView>>
  /** Drops a frozen memtable once its rows are durable in an SSTable. */
  readonly releaseFrozen: (id: number) => Effect.Effect<void>
  /** Bytes held by the active memtable (the flush trigger). */
  readonly activeBytes: Effect.Effect<number>
  /** The active memtable plus the frozen ones, newest first (for readers that merge with tables themselves). */
  readonly views: Effect.Effect<ReadonlyArray<MemtableView>>
  /**
   * Synchronous forms of apply / get / activeBytes for the engine's write
   * path, which runs as plain code inside the WAL's group-commit callback
   * (an Effect step per write costs more than the work itself).
   */
  readonly applyUnsafe: (rows: ReadonlyArray<Row.KeyedRow>) => void
  /**
   * One row given as its encoding `bytes[start, end)` (seq field aside), seq
   * and stats (see RowMap.applyEncoded); true when no memtable held the key.
   */
  readonly applyEncodedUnsafe: (
    key: Row.Key,
    bytes: Uint8Array,
    start: number,
    end: number,
    seq: number,
    stats: Row.RowStats,
  ) => boolean
  readonly getUnsafe: (key: Row.Key) => Row.Row | undefined
  readonly activeBytesUnsafe: () => number
  readonly freezeActiveUnsafe: () => MemtableView | undefined
}

export class Memtable extends Context.Tag("@allidb/storage/Memtable")<Memtable, MemtableShape>() {}

const view = (map: RowMap): MemtableView => ({
  id: map.id,
  get bytes() {
    return map.bytes
  },
  get rowCount() {
    return map.rowCount
  },
  get maxSeq() {
    return map.maxSeq
  },
  get: (key) => map.get(key),
  entries: (start, end) => map.entries(start, end),
  encodedEntries: () => map.encodedEntries(),
})

export const make: Effect.Effect<MemtableShape> = Effect.sync(() => {
  let nextId = 1
  let active = new RowMap(nextId++)
  let activeView = view(active)
  let frozen: ReadonlyArray<{ readonly map: RowMap; readonly view: MemtableView }> = []

  const getMerged = (key: Row.Key): Row.Row | undefined => {
    let row = active.get(key)
    for (const f of frozen) {
      const r = f.map.get(key)
      if (r !== undefined) row = row === undefined ? r : Row.merge(row, r)
    }
    return row
  }

  const applyUnsafe = (rows: ReadonlyArray<Row.KeyedRow>): void => {
    for (const { key, row } of rows) active.apply(key, row)
    Metrics.memtableBytes.unsafeUpdate(active.bytes, [])
  }

  const applyEncodedUnsafe: MemtableShape["applyEncodedUnsafe"] = (key, bytes, start, end, seq, stats) => {
    const fresh = active.applyEncoded(key, bytes, start, end, seq, stats)
    Metrics.memtableBytes.unsafeUpdate(active.bytes, [])
    if (!fresh) return false
    for (const f of frozen) if (f.map.has(key)) return false
    return true
  }

  const freezeActiveUnsafe = (): MemtableView | undefined => {
    if (active.rowCount === 0) return undefined
    const old = active
    const oldView = activeView
    old.freeze()
    frozen = [{ map: old, view: oldView }, ...frozen]
    active = new RowMap(nextId++)
    activeView = view(active)
    Metrics.memtableBytes.unsafeUpdate(active.bytes, [])
    Metrics.frozenMemtables.unsafeUpdate(frozen.length, [])
    return oldView
  }

  return {
    apply: (rows) => Effect.sync(() => applyUnsafe(rows)),
    applyUnsafe,
    applyEncodedUnsafe,
    getUnsafe: getMerged,
    activeBytesUnsafe: () => active.bytes,
    get: (key) => Effect.sync(() => getMerged(key)),
    scan: (start, end) =>
      Effect.sync(() => {
        const sources = [active, ...frozen.map((f) => f.map)].map((m) => m.entries(start, end))
        return mergeSorted(sources)
      }),
    freezeActive: Effect.sync(freezeActiveUnsafe),
    freezeActiveUnsafe,
    frozen: Effect.sync(() => frozen.map((f) => f.view)),
    releaseFrozen: (id) =>
      Effect.suspend(() => {
        frozen = frozen.filter((f) => f.map.id !== id)
        return Metric.set(Metrics.frozenMemtables, frozen.length)
      }),
    activeBytes: Effect.sync(() => active.bytes),
    views: Effect.sync(() => [activeView, ...frozen.map((f) => f.view)]),
  }
})

export const layer: Layer.Layer<Memtable> = Layer.effect(Memtable, make)
