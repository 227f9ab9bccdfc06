/**
 * The SSTable byte layout (FORMAT.md "SSTable"): pure encoders and decoders
 * for data blocks, the block index, the bloom block, table properties and the
 * footer, plus `TableBuilder`, which turns rows in key order into file bytes.
 * Every region ends in a crc32 and decoders never return unchecked bytes; a
 * mismatch is reported as a DecodeError (the reader adds file and offset).
 */
import { crc32 } from "node:zlib"
import { Hlc } from "@allidb/core"
import * as Bloom from "./Bloom.js"
import * as Row from "./Row.js"
import * as RowCodec from "./RowCodec.js"

/** Format version in the footer. Bump on any layout change; readers refuse newer versions. */
export const FORMAT_VERSION = 1
/** "ALLISST\n": the newline catches text-mode mangling. */
export const MAGIC = Uint8Array.from([0x41, 0x4c, 0x4c, 0x49, 0x53, 0x53, 0x54, 0x0a])
export const FOOTER_BYTES = 49

export interface BlockHandle {
  readonly offset: number
  /** Bytes of the region including its trailing crc32. */
  readonly length: number
}

export interface IndexEntry extends BlockHandle {
  readonly firstKey: Row.Key
  readonly lastKey: Row.Key
}

export interface TableProperties {
  readonly rowCount: number
  readonly blockCount: number
  /** Bytes of all data blocks. */
  readonly dataBytes: number
  /** Row tombstones + tombstone cells. */
  readonly tombstones: number
  readonly minSeq: number
  readonly maxSeq: number
  readonly minTimestamp: Hlc.Timestamp
  readonly maxTimestamp: Hlc.Timestamp
  readonly minKey: Row.Key
  readonly maxKey: Row.Key
  /** Distinct tenants with rows in the table, sorted. */
  readonly tenants: ReadonlyArray<string>
}

export interface Footer {
  readonly index: BlockHandle
  readonly bloom: BlockHandle
  readonly properties: BlockHandle
  readonly version: number
}

// ---------------------------------------------------------------------------
// Checksummed regions

const sealed = (w: RowCodec.Writer): Uint8Array => {
  w.u32(crc32(w.view()))
  return w.finish()
}

/** Verifies the trailing crc32 of a region and returns its payload. */
export const unseal = (region: Uint8Array, what: string): Uint8Array => {
  if (region.length < 4) throw new RowCodec.DecodeError(`${what}: region of ${region.length} bytes is too short`, 0)
  const payload = region.subarray(0, region.length - 4)
  const stored = Buffer.from(region.buffer, region.byteOffset, region.byteLength).readUInt32LE(region.length - 4)
  const actual = crc32(payload)
  if (stored !== actual) {
    throw new RowCodec.DecodeError(
      `${what}: checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`,
      0,
    )
  }
  return payload
}

// ---------------------------------------------------------------------------
// Data blocks: (key:latin1 row:bytes)* crc32

/** A decoded data block: keys eagerly, rows decoded on demand from the verified bytes. */
export class DataBlock {
  constructor(
    readonly keys: ReadonlyArray<Row.Key>,
    private readonly rowStarts: ReadonlyArray<number>,
    private readonly rowEnds: ReadonlyArray<number>,
    private readonly payload: Uint8Array,
  ) {}

  get byteSize(): number {
    return this.payload.byteLength + this.keys.length * 48
  }

  rowAt(i: number): Row.Row {
    return RowCodec.decodeRow(this.payload.subarray(this.rowStarts[i], this.rowEnds[i]))
  }

  /** Index of `key`, or -1. */
  find(key: Row.Key): number {
    let lo = 0
    let hi = this.keys.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const k = this.keys[mid] as Row.Key
      if (k === key) return mid
      if (k < key) lo = mid + 1
      else hi = mid - 1
    }
    return -1
  }

  /** Index of the first key ≥ `key`. */
  lowerBound(key: Row.Key): number {
    let lo = 0
    let hi = this.keys.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.keys[mid] as Row.Key) < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

export const decodeDataBlock = (region: Uint8Array): DataBlock => {
  // Copy once so the cached block does not pin a larger read buffer.
  const payload = Uint8Array.prototype.slice.call(unseal(region, "data block"))
  const r = new RowCodec.Reader(payload)
  const keys: Array<Row.Key> = []
  const starts: Array<number> = []
  const ends: Array<number> = []
  let prev: Row.Key | undefined
  while (r.remaining > 0) {
    const key = r.latin1() as Row.Key
    if (prev !== undefined && key <= prev) throw new RowCodec.DecodeError("data block keys out of order", r.pos)
    const len = r.varint()
    starts.push(r.pos)
    r.raw(len)
    ends.push(r.pos)
    keys.push(key)
    prev = key
  }
  if (keys.length === 0) throw new RowCodec.DecodeError("empty data block", 0)
  return new DataBlock(keys, starts, ends, payload)
}

// ---------------------------------------------------------------------------
// Index block: count:varint (firstKey:latin1 lastKey:latin1 offset:varint length:varint)* crc32

export const encodeIndex = (entries: ReadonlyArray<IndexEntry>): Uint8Array => {
  const w = new RowCodec.Writer(64 + entries.length * 64)
  w.varint(entries.length)
  for (const e of entries) w.latin1(e.firstKey).latin1(e.lastKey).varint(e.offset).varint(e.length)
  return sealed(w)
}

export const decodeIndex = (region: Uint8Array): ReadonlyArray<IndexEntry> => {
  const r = new RowCodec.Reader(unseal(region, "block index"))
  const n = r.varint()
  const out: Array<IndexEntry> = []
  for (let i = 0; i < n; i++) {
    const firstKey = r.latin1() as Row.Key
    const lastKey = r.latin1() as Row.Key
    out.push({ firstKey, lastKey, offset: r.varint(), length: r.varint() })
  }
  if (r.remaining !== 0) throw new RowCodec.DecodeError("trailing bytes in block index", r.pos)
  return out
}

// ---------------------------------------------------------------------------
// Bloom block: filter crc32

export const encodeBloom = (filter: Uint8Array): Uint8Array => sealed(new RowCodec.Writer(filter.length + 4).raw(filter))

export const decodeBloom = (region: Uint8Array): Uint8Array =>
  Uint8Array.prototype.slice.call(unseal(region, "bloom filter"))

// ---------------------------------------------------------------------------
// Properties block

export const encodeProperties = (p: TableProperties): Uint8Array => {
  const w = new RowCodec.Writer(256)
  w.varint(p.rowCount).varint(p.blockCount).varint(p.dataBytes).varint(p.tombstones)
  w.varint(p.minSeq).varint(p.maxSeq)
  w.u64(p.minTimestamp.wall).u32(p.minTimestamp.node).u64(p.maxTimestamp.wall).u32(p.maxTimestamp.node)
  w.latin1(p.minKey).latin1(p.maxKey)
  w.varint(p.tenants.length)
  for (const t of p.tenants) w.str(t)
  return sealed(w)
}

export const decodeProperties = (region: Uint8Array): TableProperties => {
  const r = new RowCodec.Reader(unseal(region, "table properties"))
  const rowCount = r.varint()
  const blockCount = r.varint()
  const dataBytes = r.varint()
  const tombstones = r.varint()
  const minSeq = r.varint()
  const maxSeq = r.varint()
  const minTimestamp = { wall: r.u64(), node: r.u32() }
  const maxTimestamp = { wall: r.u64(), node: r.u32() }
  const minKey = r.latin1() as Row.Key
  const maxKey = r.latin1() as Row.Key
  const n = r.varint()
  const tenants: Array<string> = []
  for (let i = 0; i < n; i++) tenants.push(r.str())
  if (r.remaining !== 0) throw new RowCodec.DecodeError("trailing bytes in table properties", r.pos)
  return {
    rowCount,
    blockCount,
    dataBytes,
    tombstones,
    minSeq,
    maxSeq,
    minTimestamp,
    maxTimestamp,
    minKey,
    maxKey,
    tenants,
  }
}

// ---------------------------------------------------------------------------
// Footer (fixed 49 bytes):
// indexOffset:u64 indexLength:u32 bloomOffset:u64 bloomLength:u32
// propsOffset:u64 propsLength:u32 version:u8 magic:8 crc32:u32 (of the 45 bytes before it)

export const encodeFooter = (f: Footer): Uint8Array => {
  const w = new RowCodec.Writer(FOOTER_BYTES)
  w.u64(f.index.offset).u32(f.index.length)
  w.u64(f.bloom.offset).u32(f.bloom.length)
  w.u64(f.properties.offset).u32(f.properties.length)
  w.u8(f.version).raw(MAGIC)
  return sealed(w)
}

/** Decodes a footer: magic first (is this an SSTable at all?), then checksum, then version. */
export const decodeFooter = (bytes: Uint8Array): Footer => {
  if (bytes.length !== FOOTER_BYTES) throw new RowCodec.DecodeError(`footer must be ${FOOTER_BYTES} bytes`, 0)
  const magic = bytes.subarray(FOOTER_BYTES - 4 - MAGIC.length, FOOTER_BYTES - 4)
  if (Buffer.compare(magic, MAGIC) !== 0) throw new RowCodec.DecodeError("bad magic: not an AlliDB SSTable", 37)
  const r = new RowCodec.Reader(unseal(bytes, "footer"))
  const index = { offset: r.u64(), length: r.u32() }
  const bloom = { offset: r.u64(), length: r.u32() }
  const properties = { offset: r.u64(), length: r.u32() }
  const version = r.u8()
  if (version !== FORMAT_VERSION) {
    throw new RowCodec.DecodeError(`unknown SSTable format version ${version} (this build reads ${FORMAT_VERSION})`, 36)
  }
  return { index, bloom, properties, version }
}

// ---------------------------------------------------------------------------
// Builder

/**
 * Turns rows in strictly increasing key order into SSTable bytes. `add`
 * buffers rows into blocks; `drain` hands out finished bytes so the caller can
 * stream them to disk; `finish` seals the last block and appends bloom,
 * index, properties and footer. A key out of order is a bug in the caller.
 */
export class TableBuilder {
  private readonly chunks: Array<Uint8Array> = []
  private chunkBytes = 0
  private offset = 0
  private block = new RowCodec.Writer(1024)
  private readonly rowScratch = new RowCodec.Writer(1024)
  private blockFirst: Row.Key | undefined
  private lastKey: Row.Key | undefined
  private readonly index: Array<IndexEntry> = []
  private hashes = new Uint32Array(1024)
  private rowCount = 0
  private tombstones = 0
  private minSeq = Number.MAX_SAFE_INTEGER
  private maxSeq = 0
  private minTs: Hlc.Timestamp | undefined
  private maxTs: Hlc.Timestamp | undefined
  private minKey: Row.Key | undefined
  private readonly tenants: Array<string> = []
  private lastTenantPrefix = ""

  constructor(
    private readonly blockBytes: number,
    private readonly bloomBitsPerKey: number,
  ) {}

  get rows(): number {
    return this.rowCount
  }

  /** Bytes produced so far (finished blocks), for progress and rate limiting. */
  get bytesWritten(): number {
    return this.offset
  }

  add(key: Row.Key, row: Row.Row): void {
    this.checkOrder(key)
    this.rowScratch.reset()
    RowCodec.writeRow(this.rowScratch, row)
    this.block.latin1(key).bytes(this.rowScratch.view())
    this.account(key, row.seq, Row.rowStats(row))
  }

  /** `add` for a row already encoded (a memtable flush): its bytes are copied with the seq put in. */
  addEncoded(row: RowCodec.EncodedRow): void {
    this.checkOrder(row.key)
    RowCodec.writeRowWithSeq(this.block.latin1(row.key), row.bytes, row.seq)
    this.account(row.key, row.seq, row)
  }

  private checkOrder(key: Row.Key): void {
    if (this.lastKey !== undefined && key <= this.lastKey) {
      throw new Error(`TableBuilder: key ${JSON.stringify(key)} not after ${JSON.stringify(this.lastKey)}`)
    }
  }

  private account(key: Row.Key, seq: number, stats: Row.RowStats): void {
    if (this.blockFirst === undefined) this.blockFirst = key
    this.lastKey = key
    this.minKey ??= key
    if (this.rowCount === this.hashes.length) {
      const grown = new Uint32Array(this.hashes.length * 2)
      grown.set(this.hashes)
      this.hashes = grown
    }
    this.hashes[this.rowCount++] = Bloom.hashKey(key)
    this.tombstones += stats.tombstones
    if (seq < this.minSeq) this.minSeq = seq
    if (seq > this.maxSeq) this.maxSeq = seq
    if (stats.minWall >= 0) {
      const min = { wall: stats.minWall, node: stats.minNode }
      const max = { wall: stats.maxWall, node: stats.maxNode }
      if (this.minTs === undefined || Hlc.compare(min, this.minTs) < 0) this.minTs = min
      if (this.maxTs === undefined || Hlc.compare(max, this.maxTs) > 0) this.maxTs = max
    }
    const sep = key.indexOf("\u0000")
    const prefix = key.slice(0, sep)
    if (prefix !== this.lastTenantPrefix || this.tenants.length === 0) {
      this.tenants.push(Buffer.from(prefix, "latin1").toString("utf8"))
      this.lastTenantPrefix = prefix
    }
    if (this.block.length >= this.blockBytes) this.sealBlock()
  }

  private emit(bytes: Uint8Array): BlockHandle {
    const handle = { offset: this.offset, length: bytes.length }
    this.chunks.push(bytes)
    this.chunkBytes += bytes.length
    this.offset += bytes.length
    return handle
  }

  private sealBlock(): void {
    if (this.blockFirst === undefined || this.lastKey === undefined) return
    const handle = this.emit(sealed(this.block))
    this.index.push({ firstKey: this.blockFirst, lastKey: this.lastKey, ...handle })
    this.block = new RowCodec.Writer(Math.min(this.blockBytes + 1024, 1 << 20))
    this.blockFirst = undefined
  }

  /** Bytes ready to be written (finished blocks). */
  get pendingBytes(): number {
    return this.chunkBytes
  }

  /** Takes the finished bytes, in file order. */
  drain(): Uint8Array {
    const out = Buffer.concat(this.chunks, this.chunkBytes)
    this.chunks.length = 0
    this.chunkBytes = 0
    return out
  }

  /** Seals the table; returns its properties. Call `drain` after for the tail bytes. No rows is a bug. */
  finish(): TableProperties {
    if (this.rowCount === 0 || this.minKey === undefined || this.lastKey === undefined) {
      throw new Error("TableBuilder: a table needs at least one row")
    }
    this.sealBlock()
    const dataBytes = this.offset
    const properties: TableProperties = {
      rowCount: this.rowCount,
      blockCount: this.index.length,
      dataBytes,
      tombstones: this.tombstones,
      minSeq: this.minSeq,
      maxSeq: this.maxSeq,
      minTimestamp: this.minTs ?? { wall: 0, node: 0 },
      maxTimestamp: this.maxTs ?? { wall: 0, node: 0 },
      minKey: this.minKey,
      maxKey: this.lastKey,
      tenants: this.tenants,
    }
    const bloom = this.emit(encodeBloom(Bloom.build(this.hashes.subarray(0, this.rowCount), this.bloomBitsPerKey)))
    const index = this.emit(encodeIndex(this.index))
    const props = this.emit(encodeProperties(properties))
    this.emit(encodeFooter({ index, bloom, properties: props, version: FORMAT_VERSION }))
    return properties
  }
}

/** Builds a whole table in memory (tests, small tables). */
export const buildTable = (
  rows: Iterable<Row.KeyedRow>,
  blockBytes: number,
  bloomBitsPerKey: number,
): { readonly bytes: Uint8Array; readonly properties: TableProperties } => {
  const b = new TableBuilder(blockBytes, bloomBitsPerKey)
  for (const { key, row } of rows) b.add(key, row)
  const properties = b.finish()
  return { bytes: b.drain(), properties }
}
