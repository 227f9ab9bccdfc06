/**
 * The storage data model: a row per (tenant, entity id), made of cells, each
 * stamped with a hybrid-logical-clock timestamp and possibly a tombstone.
 * `merge` is THE conflict rule — reads, flushes, compaction, read repair and
 * anti-entropy all use it — so it must be associative, commutative and
 * idempotent (a join semilattice); Row.test.ts checks that with fast-check.
 *
 * Rows are immutable values: merging returns a new row and never mutates its
 * inputs, which is what lets a frozen memtable be read while a new one takes
 * writes.
 */
import {
  type ChunkId,
  type ChunkMetadata,
  Entity,
  type EntityId,
  GraphEdge,
  Hlc,
  type Metadata,
  type Relation,
  type TenantId,
  TextChunk,
  unsafeInstance,
} from "@allidb/core"
import * as RowCodec from "./RowCodec.js"
import type { Mutation } from "./StorageEngine.js"

// ---------------------------------------------------------------------------
// Keys

/**
 * A row key: the bytes `utf8(tenant) 0x00 utf8(entityId)`, held as a "binary
 * string" (one char per byte, i.e. latin1). JS string comparison then equals
 * byte comparison, and the key can index a Map directly — the hot paths
 * (memtable, block search) need both. Ids contain no control characters, so
 * the 0x00 separator makes keys sort by tenant, then id.
 */
export type Key = string & { readonly RowKey: unique symbol }

/** ASCII is its own UTF-8 (and latin1) encoding: skip the Buffer round trip for it (2.3 µs → 0.16 µs per key). */
const isAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

const binary = (s: string): string => (isAscii(s) ? s : Buffer.from(s, "utf8").toString("latin1"))

export const makeKey = (tenant: TenantId | string, id: EntityId | string): Key =>
  `${binary(tenant)}\u0000${binary(id)}` as Key

export const keyToBytes = (key: Key): Uint8Array => Buffer.from(key, "latin1")

export const keyFromBytes = (bytes: Uint8Array): Key =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1") as Key

export const parseKey = (key: Key): { readonly tenant: TenantId; readonly id: EntityId } => {
  const sep = key.indexOf("\u0000")
  if (sep < 0) throw new Error(`malformed row key ${JSON.stringify(key)}`)
  return {
    tenant: Buffer.from(key.slice(0, sep), "latin1").toString("utf8") as TenantId,
    id: Buffer.from(key.slice(sep + 1), "latin1").toString("utf8") as EntityId,
  }
}

/** First key of a tenant (inclusive lower bound of its range). */
export const tenantStart = (tenant: TenantId | string): Key =>
  (`${Buffer.from(tenant, "utf8").toString("latin1")}\u0000`) as Key

/** Exclusive upper bound of a tenant's range. */
export const tenantEnd = (tenant: TenantId | string): Key =>
  (`${Buffer.from(tenant, "utf8").toString("latin1")}\u0001`) as Key

export const compareKeys = (a: Key, b: Key): -1 | 0 | 1 => (a < b ? -1 : a > b ? 1 : 0)

// ---------------------------------------------------------------------------
// Cells and rows

export interface MetaValue {
  readonly _tag: "Meta"
  readonly type?: string
  readonly metadata?: Metadata
  readonly importance?: number
  readonly createdAt?: number
  readonly updatedAt?: number
}

export interface VectorValue {
  readonly _tag: "Vector"
  readonly version: number
  readonly values: Float32Array
}

export interface ChunkValue {
  readonly _tag: "Chunk"
  /** Position in the entity's chunk list, so a read returns chunks in write order. */
  readonly index: number
  readonly text: string
  readonly metadata?: ChunkMetadata
}

export interface EdgeValue {
  readonly _tag: "Edge"
  readonly weight: number
  readonly metadata?: ChunkMetadata
}

export type CellValue = MetaValue | VectorValue | ChunkValue | EdgeValue

/**
 * Cell names: "m" (meta), "v" (vector), "c" + chunkId, "e" + relation + 0x00 + to.
 * Names are ordinary JS strings (not binary strings); the codec sorts cells
 * by name so a row has exactly one encoding.
 */
export type CellName = string

export const META: CellName = "m"
export const VECTOR: CellName = "v"
export const chunkName = (id: ChunkId | string): CellName => `c${id}`
export const edgeName = (relation: Relation | string, to: EntityId | string): CellName => `e${relation}\u0000${to}`

export interface Cell {
  readonly ts: Hlc.Timestamp
  /** undefined = tombstone */
  readonly value: CellValue | undefined
}

export interface Row {
  /** Row tombstone: every cell with an older timestamp is deleted. */
  readonly deletedAt: Hlc.Timestamp | undefined
  readonly cells: ReadonlyMap<CellName, Cell>
  /** Local commit sequence number of the newest change folded into this row (merge takes the max). */
  readonly seq: number
}

export const isTombstone = (cell: Cell): boolean => cell.value === undefined

export const empty: Row = { deletedAt: undefined, cells: new Map(), seq: 0 }

// ---------------------------------------------------------------------------
// Merge

/** Which of two versions of one cell wins: newer timestamp, then tombstone, then greater value bytes. */
export const compareCells = (a: Cell, b: Cell): -1 | 0 | 1 => {
  const byTs = Hlc.compare(a.ts, b.ts)
  if (byTs !== 0) return byTs
  if (a.value === undefined) return b.value === undefined ? 0 : 1
  if (b.value === undefined) return -1
  if (a.value === b.value) return 0
  // Exact ties only happen for a replayed or duplicated write; comparing the
  // canonical encoding keeps the choice deterministic and agrees with the codec.
  const c = Buffer.compare(RowCodec.encodeValue(a.value), RowCodec.encodeValue(b.value))
  return c < 0 ? -1 : c > 0 ? 1 : 0
}

const maxTs = (a: Hlc.Timestamp | undefined, b: Hlc.Timestamp | undefined): Hlc.Timestamp | undefined =>
  a === undefined ? b : b === undefined ? a : Hlc.compare(a, b) >= 0 ? a : b

const shadowed = (cell: Cell, deletedAt: Hlc.Timestamp | undefined): boolean =>
  deletedAt !== undefined && Hlc.compare(cell.ts, deletedAt) < 0

/**
 * Merges two versions of a row: per-cell last-write-wins (`compareCells`),
 * the newer row tombstone, the larger seq; cells older than the row
 * tombstone are dropped (cells at or after it survive, so a PutEntity's row
 * tombstone and cells can share one timestamp).
 */
export const merge = (a: Row, b: Row): Row => {
  if (a === b) return a
  const deletedAt = maxTs(a.deletedAt, b.deletedAt)
  const cells = new Map<CellName, Cell>()
  for (const [name, cell] of a.cells) {
    if (!shadowed(cell, deletedAt)) cells.set(name, cell)
  }
  for (const [name, cell] of b.cells) {
    if (shadowed(cell, deletedAt)) continue
    const mine = cells.get(name)
    if (mine === undefined || compareCells(cell, mine) > 0) cells.set(name, cell)
  }
  return { deletedAt, cells, seq: Math.max(a.seq, b.seq) }
}

/** Merges many versions (any order — merge is commutative and associative). */
export const mergeAll = (rows: Iterable<Row>): Row => {
  let acc: Row | undefined
  for (const row of rows) acc = acc === undefined ? row : merge(acc, row)
  return acc ?? empty
}

/** Oldest and newest timestamp in a row, tombstones included (for table properties). */
export const timestampRange = (
  row: Row,
): { readonly min: Hlc.Timestamp; readonly max: Hlc.Timestamp } | undefined => {
  let min: Hlc.Timestamp | undefined = row.deletedAt
  let max: Hlc.Timestamp | undefined = row.deletedAt
  for (const cell of row.cells.values()) {
    if (min === undefined || Hlc.compare(cell.ts, min) < 0) min = cell.ts
    if (max === undefined || Hlc.compare(cell.ts, max) > 0) max = cell.ts
  }
  return min === undefined || max === undefined ? undefined : { min, max }
}

/** Number of tombstones in a row (row tombstone + tombstone cells). */
export const tombstoneCount = (row: Row): number => {
  let n = row.deletedAt === undefined ? 0 : 1
  for (const cell of row.cells.values()) if (cell.value === undefined) n++
  return n
}

/**
 * What a table's properties need from a row (FORMAT.md "Properties"): kept
 * beside a memtable row's bytes when it enters the memtable, so a flush can
 * copy the bytes without decoding them again. `minWall` is -1 for a row
 * without any timestamp (no tombstone and no cells).
 */
export interface RowStats {
  readonly tombstones: number
  readonly minWall: number
  readonly minNode: number
  readonly maxWall: number
  readonly maxNode: number
}

export const rowStats = (row: Row): RowStats => {
  const range = timestampRange(row)
  const tombstones = tombstoneCount(row)
  return range === undefined
    ? { tombstones, minWall: -1, minNode: 0, maxWall: -1, maxNode: 0 }
    : { tombstones, minWall: range.min.wall, minNode: range.min.node, maxWall: range.max.wall, maxNode: range.max.node }
}

/** True when the row holds no tombstone and no cell at all: it can be dropped. */
export const isEmpty = (row: Row): boolean => row.deletedAt === undefined && row.cells.size === 0

/**
 * Drops tombstones (row and cell) whose timestamp is older than `cutoffWall`
 * (an HLC wall value: physical ms × 4096). Cells they shadowed are already
 * gone (merge drops them), so after the grace period nothing of a deleted row
 * is left. Returns undefined when nothing remains. Only safe when no other
 * source still holds an older version of the key (the Compactor checks).
 */
export const purgeTombstones = (row: Row, cutoffWall: number): Row | undefined => {
  const purgeRowTombstone = row.deletedAt !== undefined && row.deletedAt.wall < cutoffWall
  const deletedAt = purgeRowTombstone ? undefined : row.deletedAt
  let cells: Map<CellName, Cell> | undefined
  for (const [name, cell] of row.cells) {
    // A cell the dropped row tombstone shadowed goes with it (a row that never
    // went through merge may still hold one), or it would come back to life.
    const shadowedByPurged = purgeRowTombstone && shadowed(cell, row.deletedAt)
    if (shadowedByPurged || (cell.value === undefined && cell.ts.wall < cutoffWall)) {
      cells ??= new Map(row.cells)
      cells.delete(name)
    }
  }
  if (deletedAt === row.deletedAt && cells === undefined) return row
  const out: Row = { deletedAt, cells: cells ?? row.cells, seq: row.seq }
  return isEmpty(out) ? undefined : out
}

// ---------------------------------------------------------------------------
// From mutations

export interface KeyedRow {
  readonly key: Key
  readonly row: Row
}

/** Floats per vector slab (1 MiB). */
const SLAB_FLOATS = 256 * 1024
let slab = new Float32Array(SLAB_FLOATS)
let slabUsed = 0

/**
 * A zeroed Float32Array of `n` floats carved from a shared 1 MiB slab. Every
 * ArrayBuffer costs the garbage collector (an external backing store it
 * tracks and sweeps one by one); with one per written vector, a 64 MiB
 * memtable holds ~60k of them and GC dominated the write path. A slab lives
 * as long as any vector in it — memtable rows are dropped together at flush,
 * so little is pinned. Large vectors get their own buffer.
 */
export const allocF32 = (n: number): Float32Array => {
  if (n > SLAB_FLOATS / 16) return new Float32Array(n)
  if (slabUsed + n > SLAB_FLOATS) {
    slab = new Float32Array(SLAB_FLOATS)
    slabUsed = 0
  }
  const out = slab.subarray(slabUsed, slabUsed + n)
  slabUsed += n
  return out
}

const toF32 = (values: ReadonlyArray<number>): Float32Array => {
  const out = allocF32(values.length)
  out.set(values)
  return out
}

/**
 * The row a PutEntity writes: a row tombstone at `ts` (a full replace) plus
 * every part of the entity as a cell at `ts`. `createdAt`/`updatedAt` default
 * to the write's physical time; the engine passes the stored createdAt in the
 * entity when it keeps one.
 */
export const fromEntity = (entity: Entity, ts: Hlc.Timestamp, seq: number): Row => {
  const millis = Hlc.physicalMillis(ts)
  const cells = new Map<CellName, Cell>()
  cells.set(META, { ts, value: metaValue(entity, entity.createdAt ?? millis, millis) })
  if (entity.vector !== undefined) {
    cells.set(VECTOR, {
      ts,
      value: { _tag: "Vector", version: entity.vectorVersion ?? 0, values: toF32(entity.vector) },
    })
  }
  entity.chunks?.forEach((chunk, index) => {
    cells.set(chunkName(chunk.id), { ts, value: chunkValue(chunk, index) })
  })
  for (const edge of entity.edges ?? []) {
    cells.set(edgeName(edge.relation, edge.to), { ts, value: edgeValue(edge) })
  }
  return { deletedAt: ts, cells, seq }
}

/**
 * The meta cell of an entity; `updatedAt` defaults to the write's time like
 * `createdAt`. `metadata` replaces the entity's (storedEntity passes it as it
 * reads back).
 */
const metaValue = (
  entity: Entity,
  createdAt: number,
  millis: number,
  metadata: Entity["metadata"] = entity.metadata,
): MetaValue => {
  // Built field by field: this runs once per write.
  const meta: { -readonly [K in keyof MetaValue]: MetaValue[K] } = {
    _tag: "Meta",
    createdAt,
    updatedAt: entity.updatedAt ?? millis,
  }
  if (entity.type !== undefined) meta.type = entity.type
  if (metadata !== undefined) meta.metadata = metadata
  if (entity.importance !== undefined) meta.importance = entity.importance
  return meta
}

// Built by hand (no undefined properties): these run per chunk and edge of every write.
const chunkValue = (chunk: TextChunk, index: number, metadata: TextChunk["metadata"] = chunk.metadata): ChunkValue =>
  metadata === undefined ? { _tag: "Chunk", index, text: chunk.text } : { _tag: "Chunk", index, text: chunk.text, metadata }

const NO_CELLS: ReadonlyArray<readonly [CellName, number]> = []

/**
 * Names of `count` cells in encoding order (sorted), each with the index of
 * the LAST part that has it — a later chunk or edge with the same name
 * replaces an earlier one, as in fromEntity's Map. An insertion sort for the
 * few cells an entity usually has; a Map and a sort beyond that.
 */
const cellOrder = (count: number, nameOf: (i: number) => CellName): ReadonlyArray<readonly [CellName, number]> => {
  if (count === 1) return [[nameOf(0), 0]]
  if (count > SMALL_CELL_COUNT) {
    const last = new Map<CellName, number>()
    for (let i = 0; i < count; i++) last.set(nameOf(i), i)
    return [...last].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  }
  const order: Array<[CellName, number]> = []
  for (let i = 0; i < count; i++) {
    const name = nameOf(i)
    let j = order.length
    while (j > 0 && order[j - 1]![0] > name) j--
    if (j > 0 && order[j - 1]![0] === name) order[j - 1]![1] = i
    else order.splice(j, 0, [name, i])
  }
  return order
}

const SMALL_CELL_COUNT = 32

/** An entity's chunk cells and edge cells in encoding order (see cellOrder). */
const chunkCellsOf = (chunks: ReadonlyArray<TextChunk> | undefined): ReadonlyArray<readonly [CellName, number]> =>
  chunks === undefined || chunks.length === 0 ? NO_CELLS : cellOrder(chunks.length, (i) => chunkName(chunks[i]!.id))

const edgeCellsOf = (edges: ReadonlyArray<GraphEdge> | undefined): ReadonlyArray<readonly [CellName, number]> =>
  edges === undefined || edges.length === 0
    ? NO_CELLS
    : cellOrder(edges.length, (i) => edgeName(edges[i]!.relation, edges[i]!.to))

/**
 * Appends to `w` the encoding of the row a PutEntity writes — byte for byte
 * what `RowCodec.writeRow(w, fromEntity(entity, ts, seq))` writes (a property
 * test checks it) — without building that row: the write path encodes each
 * entity once, straight into its WAL payload, and the cell map, the cell
 * objects and a Float32Array per vector were most of its garbage.
 * `createdAt` replaces the entity's (the engine keeps a stored one). Returns
 * the row's stats: one row tombstone, every timestamp `ts`.
 */
export const writeEntityRow = (
  w: RowCodec.Writer,
  entity: Entity,
  ts: Hlc.Timestamp,
  seq: number,
  createdAt: number | undefined = entity.createdAt,
): RowStats => {
  const millis = Hlc.physicalMillis(ts)
  const chunks = entity.chunks
  const edges = entity.edges
  // Cell names sort as chunks ("c…"), edges ("e…"), meta ("m"), vector ("v").
  const chunkCells = chunkCellsOf(chunks)
  const edgeCells = edgeCellsOf(edges)
  const vector = entity.vector
  RowCodec.writeRowStart(w, seq, ts, chunkCells.length + edgeCells.length + (vector === undefined ? 1 : 2))
  for (const [name, i] of chunkCells) RowCodec.writeCell(w, name, ts, chunkValue(chunks![i]!, i))
  for (const [name, i] of edgeCells) RowCodec.writeCell(w, name, ts, edgeValue(edges![i]!))
  RowCodec.writeCell(w, META, ts, metaValue(entity, createdAt ?? millis, millis))
  if (vector !== undefined) RowCodec.writeVectorCell(w, VECTOR, ts, entity.vectorVersion ?? 0, vector)
  return { tombstones: 1, minWall: ts.wall, minNode: ts.node, maxWall: ts.wall, maxNode: ts.node }
}

/** A generous guess of `writeEntityRow`'s byte count (the write path sizes its buffer from it). */
export const entityRowSizeEstimate = (entity: Entity): number => {
  let n = 96 + (entity.type?.length ?? 0) * 3
  if (entity.metadata !== undefined) n += RowCodec.metadataBytesBound(entity.metadata)
  if (entity.vector !== undefined) n += 48 + entity.vector.length * 4
  const chunks = entity.chunks
  if (chunks !== undefined) {
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!
      n += 64 + (chunk.id.length + chunk.text.length) * 3
      if (chunk.metadata !== undefined) n += RowCodec.metadataBytesBound(chunk.metadata)
    }
  }
  const edges = entity.edges
  if (edges !== undefined) {
    for (let i = 0; i < edges.length; i++) {
      const edge = edges[i]!
      n += 64 + (edge.relation.length + edge.to.length) * 3
      if (edge.metadata !== undefined) n += RowCodec.metadataBytesBound(edge.metadata)
    }
  }
  return n
}

const edgeValue = (edge: GraphEdge, metadata: GraphEdge["metadata"] = edge.metadata): EdgeValue =>
  metadata === undefined ? { _tag: "Edge", weight: edge.weight } : { _tag: "Edge", weight: edge.weight, metadata }

/** Turns one mutation into the row change it makes, with its key. */
export const fromMutation = (mutation: Mutation, ts: Hlc.Timestamp, seq: number): KeyedRow => {
  switch (mutation._tag) {
    case "PutEntity":
      return { key: makeKey(mutation.tenant, mutation.entity.id), row: fromEntity(mutation.entity, ts, seq) }
    case "DeleteEntity":
      return { key: makeKey(mutation.tenant, mutation.id), row: { deletedAt: ts, cells: new Map(), seq } }
    case "PutEdge":
      return {
        key: makeKey(mutation.tenant, mutation.from),
        row: {
          deletedAt: undefined,
          cells: new Map([[edgeName(mutation.edge.relation, mutation.edge.to), { ts, value: edgeValue(mutation.edge) }]]),
          seq,
        },
      }
    case "DeleteEdge":
      return {
        key: makeKey(mutation.tenant, mutation.from),
        row: {
          deletedAt: undefined,
          cells: new Map([[edgeName(mutation.relation, mutation.to), { ts, value: undefined }]]),
          seq,
        },
      }
  }
}

// ---------------------------------------------------------------------------
// To entities

/** A cell that is a value and not shadowed by the row tombstone (rows that never went through merge may hold shadowed ones). */
const isLiveCell = (cell: Cell, row: Row): boolean => cell.value !== undefined && !shadowed(cell, row.deletedAt)

/** True when the row has at least one live (non-tombstone, unshadowed) cell. */
export const isLive = (row: Row): boolean => {
  for (const cell of row.cells.values()) if (isLiveCell(cell, row)) return true
  return false
}

/**
 * The entity a merged row describes, or undefined when it is deleted or
 * holds nothing live. Chunks come back in write order, edges by (relation, to).
 */
export const toEntity = (id: EntityId, row: Row): Entity | undefined => {
  if (!isLive(row)) return undefined
  let meta: MetaValue | undefined
  let vector: VectorValue | undefined
  const chunks: Array<{ readonly id: string; readonly value: ChunkValue }> = []
  const edges: Array<{ readonly name: string; readonly value: EdgeValue }> = []
  for (const [name, cell] of row.cells) {
    const value = cell.value
    if (value === undefined || !isLiveCell(cell, row)) continue
    switch (value._tag) {
      case "Meta":
        meta = value
        break
      case "Vector":
        vector = value
        break
      case "Chunk":
        chunks.push({ id: name.slice(1), value })
        break
      case "Edge":
        edges.push({ name, value })
        break
    }
  }
  edges.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return entityOf(id, meta, vector?.version, vector?.values, chunks, edges)
}

/**
 * The entity a row's live parts describe (edges sorted by name; chunks are
 * put in write order here). Stored rows are valid entities: instances are
 * built without the Schema constructors' per-field work (the index reads
 * every written entity).
 */
const entityOf = (
  id: EntityId,
  meta: MetaValue | undefined,
  vectorVersion: number | undefined,
  vector: ArrayLike<number> | undefined,
  chunks: Array<{ readonly id: string; readonly value: ChunkValue }>,
  edges: ReadonlyArray<{ readonly name: string; readonly value: EdgeValue }>,
): Entity => {
  chunks.sort((a, b) => a.value.index - b.value.index || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const props: { -readonly [K in keyof Entity]?: Entity[K] } = { id }
  if (meta?.type !== undefined) props.type = meta.type
  if (vector !== undefined) {
    // A plain loop (Array.from over a typed array costs ~10× more), rounding
    // to float32 as storage does (a no-op for a Float32Array's values).
    const plain: Array<number> = []
    for (let i = 0; i < vector.length; i++) plain.push(Math.fround(vector[i]!))
    props.vector = plain
    props.vectorVersion = vectorVersion ?? 0
  }
  if (meta?.metadata !== undefined) props.metadata = meta.metadata
  if (meta?.importance !== undefined) props.importance = meta.importance
  if (chunks.length > 0) {
    props.chunks = chunks.map((c) => {
      const chunk: { -readonly [K in keyof TextChunk]?: TextChunk[K] } = { id: c.id as ChunkId, text: c.value.text }
      if (c.value.metadata !== undefined) chunk.metadata = c.value.metadata
      return unsafeInstance(TextChunk, chunk as TextChunk)
    })
  }
  if (edges.length > 0) {
    props.edges = edges.map((e) => {
      const sep = e.name.indexOf("\u0000")
      const edge: { -readonly [K in keyof GraphEdge]?: GraphEdge[K] } = {
        relation: e.name.slice(1, sep) as Relation,
        to: e.name.slice(sep + 1) as EntityId,
        weight: e.value.weight,
      }
      if (e.value.metadata !== undefined) edge.metadata = e.value.metadata
      return unsafeInstance(GraphEdge, edge as GraphEdge)
    })
  }
  if (meta?.createdAt !== undefined) props.createdAt = meta.createdAt
  if (meta?.updatedAt !== undefined) props.updatedAt = meta.updatedAt
  return unsafeInstance(Entity, props as Entity)
}

/**
 * The entity that reading back the row a PutEntity of `entity` at `ts`
 * writes gives — `toEntity(id, fromEntity(entity, ts, seq))`, which a
 * property test checks — built without the row: for a write whose row is
 * the key's whole stored state, the commit hands its followers (the index)
 * this instead of a read.
 */
export const storedEntity = (entity: Entity, ts: Hlc.Timestamp): Entity => {
  const millis = Hlc.physicalMillis(ts)
  const stored = <M extends Readonly<Record<string, unknown>>>(m: M | undefined): M | undefined =>
    m === undefined ? undefined : RowCodec.storedMap(m)
  const chunks: Array<{ readonly id: string; readonly value: ChunkValue }> = []
  for (const [, i] of chunkCellsOf(entity.chunks)) {
    const chunk = entity.chunks![i]!
    chunks.push({ id: chunk.id, value: chunkValue(chunk, i, stored(chunk.metadata)) })
  }
  const edges: Array<{ readonly name: string; readonly value: EdgeValue }> = []
  for (const [name, i] of edgeCellsOf(entity.edges)) {
    edges.push({ name, value: edgeValue(entity.edges![i]!, stored(entity.edges![i]!.metadata)) })
  }
  const meta = metaValue(entity, entity.createdAt ?? millis, millis, stored(entity.metadata))
  return entityOf(entity.id, meta, entity.vectorVersion, entity.vector, chunks, edges)
}
