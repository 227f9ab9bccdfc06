/**
 * Binary encoding of rows (FORMAT.md "Keys, rows and cells") and the small
 * byte writer/reader the other storage formats share. Vectors are raw float32
 * little-endian bytes; only metadata maps go through msgpack, with keys sorted
 * so one row has exactly one encoding (the merge tiebreak compares encodings).
 */
import { endianness } from "node:os"
import { Packr } from "msgpackr"
import type { Hlc } from "@allidb/core"
import type { Cell, CellName, CellValue, Key, Row, RowStats } from "./Row.js"

type Timestamp = Hlc.Timestamp

/** Version byte at the start of every encoded row. */
export const ROW_FORMAT_VERSION = 1

/** A malformed or truncated encoding; the caller maps it to core `Corruption` with file and offset. */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message)
  }
}

const LITTLE_ENDIAN_HOST = endianness() === "LE"
const TWO_32 = 2 ** 32

/** Strings up to this length are written by a JS loop (a native call costs more for them). */
const SHORT_STRING = 64

/** Rounds numbers to float32 for `Writer.f32array` (the engine's one JS thread uses it synchronously). */
const SCRATCH_FLOATS = 4096
const scratchF32 = new Float32Array(SCRATCH_FLOATS)
/** The scratch's first bytes, kept for the last length used (one vector size per tenant, typically). */
let scratchView = new Uint8Array(scratchF32.buffer, 0, 0)

// ---------------------------------------------------------------------------
// Byte writer / reader

export class Writer {
  private buf: Buffer
  private pos = 0

  constructor(initial: number | Buffer = 256) {
    this.buf = typeof initial === "number" ? Buffer.allocUnsafe(initial) : initial
  }

  get length(): number {
    return this.pos
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  u8(v: number): this {
    this.ensure(1)
    this.buf[this.pos++] = v
    return this
  }

  u32(v: number): this {
    this.ensure(4)
    this.buf.writeUInt32LE(v >>> 0, this.pos)
    this.pos += 4
    return this
  }

  /** An unsigned integer up to 2^53 as 8 bytes little-endian. */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 out of range: ${v}`)
    this.ensure(8)
    this.buf.writeUInt32LE(v % TWO_32, this.pos)
    this.buf.writeUInt32LE(Math.floor(v / TWO_32), this.pos + 4)
    this.pos += 8
    return this
  }

  f64(v: number): this {
    this.ensure(8)
    this.buf.writeDoubleLE(v, this.pos)
    this.pos += 8
    return this
  }

  /** Unsigned LEB128 of a safe integer. */
  varint(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`)
    this.ensure(8)
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    this.buf[this.pos++] = v
    return this
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
    return this
  }

  /** varint length + bytes */
  bytes(bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes)
  }

  /** varint byte length + UTF-8 */
  str(s: string): this {
    // Cell names and short texts are mostly ASCII: a JS loop beats the two
    // native calls (byteLength + write) for them.
    if (s.length <= SHORT_STRING && this.ascii(s)) return this
    const n = Buffer.byteLength(s, "utf8")
    this.varint(n)
    this.ensure(n)
    this.buf.write(s, this.pos, "utf8")
    this.pos += n
    return this
  }

  /** A binary string (one char per byte), e.g. a row key: varint length + bytes. */
  latin1(s: string): this {
    this.varint(s.length)
    this.ensure(s.length)
    if (s.length <= SHORT_STRING) {
      const buf = this.buf
      let p = this.pos
      for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i)
    } else {
      this.buf.write(s, this.pos, "latin1")
    }
    this.pos += s.length
    return this
  }

  /** Writes `s` as varint length + bytes if it is all ASCII (then true); otherwise writes nothing. */
  private ascii(s: string): boolean {
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
    this.varint(s.length)
    this.ensure(s.length)
    const buf = this.buf
    let p = this.pos
    for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i)
    this.pos = p
    return true
  }

  /**
   * Float32 little-endian values. A Float32Array is copied as bytes; plain
   * numbers (an entity's vector as decoded) are rounded to float32 through a
   * scratch array, so no Float32Array is allocated per call.
   */
  f32array(values: Float32Array | ReadonlyArray<number>): this {
    const n = values.length * 4
    this.ensure(n)
    if (LITTLE_ENDIAN_HOST) {
      if (values instanceof Float32Array) {
        this.buf.set(new Uint8Array(values.buffer, values.byteOffset, n), this.pos)
      } else {
        for (let from = 0; from < values.length; from += SCRATCH_FLOATS) {
          const count = Math.min(SCRATCH_FLOATS, values.length - from)
          for (let i = 0; i < count; i++) scratchF32[i] = values[from + i] as number
          if (scratchView.length !== count * 4) scratchView = new Uint8Array(scratchF32.buffer, 0, count * 4)
          this.buf.set(scratchView, this.pos + from * 4)
        }
      }
    } else {
      for (let i = 0; i < values.length; i++) this.buf.writeFloatLE(values[i] as number, this.pos + i * 4)
    }
    this.pos += n
    return this
  }

  /** A copy of the bytes written so far. */
  finish(): Uint8Array {
    return Uint8Array.prototype.slice.call(this.buf, 0, this.pos)
  }

  /** The bytes written so far without copying (valid until the next write). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }

  reset(): void {
    this.pos = 0
  }
}

export class Reader {
  readonly buf: Buffer
  pos: number

  constructor(
    bytes: Uint8Array,
    pos = 0,
    readonly end = bytes.length,
  ) {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.pos = pos
  }

  get remaining(): number {
    return this.end - this.pos
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new DecodeError(`truncated: need ${n} bytes, have ${this.end - this.pos}`, this.pos)
  }

  u8(): number {
    this.need(1)
    return this.buf[this.pos++] as number
  }

  u32(): number {
    this.need(4)
    const v = this.buf.readUInt32LE(this.pos)
    this.pos += 4
    return v
  }

  u64(): number {
    this.need(8)
    const lo = this.buf.readUInt32LE(this.pos)
    const hi = this.buf.readUInt32LE(this.pos + 4)
    if (hi >= 2 ** 21) throw new DecodeError("u64 beyond 2^53", this.pos)
    this.pos += 8
    return hi * TWO_32 + lo
  }

  f64(): number {
    this.need(8)
    const v = this.buf.readDoubleLE(this.pos)
    this.pos += 8
    return v
  }

  varint(): number {
    let result = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      result += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new DecodeError("varint beyond 2^53", this.pos)
        return result
      }
      scale *= 0x80
    }
    throw new DecodeError("varint too long", this.pos)
  }

  raw(n: number): Uint8Array {
    this.need(n)
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  bytes(): Uint8Array {
    return this.raw(this.varint())
  }

  str(): string {
    const n = this.varint()
    this.need(n)
    const s = this.buf.toString("utf8", this.pos, this.pos + n)
    this.pos += n
    return s
  }

  latin1(): string {
    const n = this.varint()
    this.need(n)
    const s = this.buf.toString("latin1", this.pos, this.pos + n)
    this.pos += n
    return s
  }

  f32array(count: number): Float32Array {
    const bytes = this.raw(count * 4)
    if (LITTLE_ENDIAN_HOST) {
      // slice() copies into a fresh, aligned ArrayBuffer.
      return new Float32Array(Uint8Array.prototype.slice.call(bytes).buffer)
    }
    const out = new Float32Array(count)
    for (let i = 0; i < count; i++) out[i] = Buffer.from(bytes).readFloatLE(i * 4)
    return out
  }
}

// ---------------------------------------------------------------------------
// Cell values

const packr = new Packr({ useRecords: false, variableMapSize: true })

const sortedObject = (o: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(o).sort()) out[k] = o[k]
  return out
}

const packMap = (o: Readonly<Record<string, unknown>>): Uint8Array => packr.pack(sortedObject(o))

/** A metadata map as it reads back from storage (the msgpack round trip: keys sorted, values as decoded). */
export const storedMap = <T extends Readonly<Record<string, unknown>>>(o: T): T => unpackMap<T>(packMap(o), 0)

const unpackMap = <T>(bytes: Uint8Array, at: number): T => {
  try {
    const v: unknown = packr.unpack(bytes)
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a map")
    return v as T
  } catch (e) {
    throw new DecodeError(`bad metadata map: ${String(e)}`, at)
  }
}

const META_TYPE = 1
const META_METADATA = 2
const META_IMPORTANCE = 4
const META_CREATED = 8
const META_UPDATED = 16
const HAS_METADATA = 1

const writeVector = (w: Writer, version: number, values: Float32Array | ReadonlyArray<number>): void => {
  w.varint(version).varint(values.length).f32array(values)
}

const writeValue = (w: Writer, value: CellValue): void => {
  switch (value._tag) {
    case "Meta": {
      const bits =
        (value.type !== undefined ? META_TYPE : 0) |
        (value.metadata !== undefined ? META_METADATA : 0) |
        (value.importance !== undefined ? META_IMPORTANCE : 0) |
        (value.createdAt !== undefined ? META_CREATED : 0) |
        (value.updatedAt !== undefined ? META_UPDATED : 0)
      w.u8(bits)
      if (value.type !== undefined) w.str(value.type)
      if (value.metadata !== undefined) w.bytes(packMap(value.metadata))
      if (value.importance !== undefined) w.f64(value.importance)
      if (value.createdAt !== undefined) w.f64(value.createdAt)
      if (value.updatedAt !== undefined) w.f64(value.updatedAt)
      return
    }
    case "Vector":
      writeVector(w, value.version, value.values)
      return
    case "Chunk":
      w.varint(value.index).str(value.text).u8(value.metadata !== undefined ? HAS_METADATA : 0)
      if (value.metadata !== undefined) w.bytes(packMap(value.metadata))
      return
    case "Edge":
      w.f64(value.weight).u8(value.metadata !== undefined ? HAS_METADATA : 0)
      if (value.metadata !== undefined) w.bytes(packMap(value.metadata))
      return
  }
}

const readValue = (r: Reader, name: CellName): CellValue => {
  const at = r.pos
  switch (name.charCodeAt(0)) {
    case 0x6d /* m */: {
      const bits = r.u8()
      const type = bits & META_TYPE ? r.str() : undefined
      const metadata = bits & META_METADATA ? unpackMap<Record<string, string | number | boolean>>(r.bytes(), at) : undefined
      const importance = bits & META_IMPORTANCE ? r.f64() : undefined
      const createdAt = bits & META_CREATED ? r.f64() : undefined
      const updatedAt = bits & META_UPDATED ? r.f64() : undefined
      return {
        _tag: "Meta",
        ...(type !== undefined ? { type } : {}),
        ...(metadata !== undefined ? { metadata } : {}),
        ...(importance !== undefined ? { importance } : {}),
        ...(createdAt !== undefined ? { createdAt } : {}),
        ...(updatedAt !== undefined ? { updatedAt } : {}),
      }
    }
    case 0x76 /* v */: {
      const version = r.varint()
      const dim = r.varint()
      return { _tag: "Vector", version, values: r.f32array(dim) }
    }
    case 0x63 /* c */: {
      const index = r.varint()
      const text = r.str()
      const flags = r.u8()
      if (flags & HAS_METADATA) {
        return { _tag: "Chunk", index, text, metadata: unpackMap<Record<string, string>>(r.bytes(), at) }
      }
      return { _tag: "Chunk", index, text }
    }
    case 0x65 /* e */: {
      const weight = r.f64()
      const flags = r.u8()
      if (flags & HAS_METADATA) return { _tag: "Edge", weight, metadata: unpackMap<Record<string, string>>(r.bytes(), at) }
      return { _tag: "Edge", weight }
    }
    default:
      throw new DecodeError(`unknown cell name ${JSON.stringify(name)}`, at)
  }
}

const scratch = new Writer(1024)

/** The canonical bytes of one cell value (used by the merge tiebreak). */
export const encodeValue = (value: CellValue): Uint8Array => {
  scratch.reset()
  writeValue(scratch, value)
  return scratch.finish()
}

// ---------------------------------------------------------------------------
// Rows

const ROW_HAS_TOMBSTONE = 1
const CELL_TOMBSTONE = 1

/** The cell names in byte order, without copying or sorting when the map already holds them so. */
const namesInOrder = (cells: ReadonlyMap<CellName, Cell>): Iterable<CellName> => {
  let previous: CellName | undefined
  for (const name of cells.keys()) {
    if (previous !== undefined && name <= previous) return [...cells.keys()].sort()
    previous = name
  }
  return cells.keys()
}

/** Appends the start of a row's encoding: version, seq, row tombstone, cell count (FORMAT.md). */
export const writeRowStart = (w: Writer, seq: number, deletedAt: Timestamp | undefined, cellCount: number): void => {
  w.u8(ROW_FORMAT_VERSION).varint(seq)
  w.u8(deletedAt !== undefined ? ROW_HAS_TOMBSTONE : 0)
  if (deletedAt !== undefined) w.u64(deletedAt.wall).u32(deletedAt.node)
  w.varint(cellCount)
}

/** A cell's flags, name and timestamp: what every cell starts with. */
const writeCellHead = (w: Writer, tombstone: boolean, name: CellName, ts: Timestamp): void => {
  w.u8(tombstone ? CELL_TOMBSTONE : 0)
  w.str(name)
  w.u64(ts.wall).u32(ts.node)
}

/** Appends one cell (cells follow `writeRowStart` in name order); `value` undefined is a tombstone. */
export const writeCell = (w: Writer, name: CellName, ts: Timestamp, value: CellValue | undefined): void => {
  writeCellHead(w, value === undefined, name, ts)
  if (value !== undefined) writeValue(w, value)
}

/** Appends a vector cell from its parts (a Vector value without its Float32Array). */
export const writeVectorCell = (
  w: Writer,
  name: CellName,
  ts: Timestamp,
  version: number,
  values: Float32Array | ReadonlyArray<number>,
): void => {
  writeCellHead(w, false, name, ts)
  writeVector(w, version, values)
}

/** Appends the encoding of a row to `w`. */
export const writeRow = (w: Writer, row: Row): void => {
  writeRowStart(w, row.seq, row.deletedAt, row.cells.size)
  // Cells sorted by name (one encoding per row); most rows are meta + vector, already in order.
  for (const name of namesInOrder(row.cells)) {
    const cell = row.cells.get(name) as Cell
    writeCell(w, name, cell.ts, cell.value)
  }
}

/**
 * Appends an encoded row, length-prefixed (as `Writer.bytes` would), with its
 * seq field replaced by `seq`: rows in a WAL payload are encoded before the
 * WAL assigns their seq, and a flush copies the memtable's bytes with the real
 * one instead of re-encoding the row.
 */
export const writeRowWithSeq = (w: Writer, bytes: Uint8Array, seq: number): void => {
  if (bytes[0] !== ROW_FORMAT_VERSION) throw new DecodeError(`unknown row format version ${bytes[0]}`, 0)
  let rest = 1
  while (rest < bytes.length && (bytes[rest] as number) & 0x80) rest++
  rest++
  w.varint(1 + varintLength(seq) + bytes.length - rest)
    .u8(ROW_FORMAT_VERSION)
    .varint(seq)
    .raw(bytes.subarray(rest))
}

const varintLength = (v: number): number => {
  let n = 1
  while (v >= 0x80) {
    v = Math.floor(v / 0x80)
    n++
  }
  return n
}

/** A row in its encoded form, with its seq and stats (a memtable flush feeds these to the table builder). */
export interface EncodedRow extends RowStats {
  readonly key: Key
  readonly bytes: Uint8Array
  readonly seq: number
}

// ---------------------------------------------------------------------------
// Slab allocation

/** Bytes per slab (1 MiB). */
const SLAB_BYTES = 1024 * 1024
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
let slabUsed = 0

/** `n` bytes carved from the shared slab (large requests get their own buffer). */
const allocSlab = (n: number): Buffer => {
  if (n > SLAB_BYTES / 16) return Buffer.allocUnsafe(n)
  if (slabUsed + n > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
    slabUsed = 0
  }
  const out = slab.subarray(slabUsed, slabUsed + n)
  slabUsed += n
  return out
}

/**
 * Runs `write` on a Writer over `estimate` bytes carved from a shared 1 MiB
 * slab and returns what it wrote (a view into the slab; into the writer's own
 * buffer if the estimate fell short); the unused tail goes back to the slab.
 * For bytes the memtable keeps until its flush (WAL payloads, merged rows):
 * every ArrayBuffer costs the garbage collector (an external backing store it
 * tracks and sweeps one by one), and one per row added up. A slab lives as
 * long as any row in it; memtable rows are dropped together at flush.
 */
export const writeInSlab = (estimate: number, write: (w: Writer) => void): Uint8Array => {
  const buf = allocSlab(estimate)
  const w = new Writer(buf)
  write(w)
  const view = w.view()
  if (view.buffer === buf.buffer && buf.buffer === slab.buffer && buf.byteOffset + buf.length === slabUsed) {
    slabUsed = buf.byteOffset + view.length
  }
  return view
}

/** A row's encoding carved from the shared slab (see writeInSlab): for rows the memtable keeps. */
export const encodeRowInSlab = (row: Row): Uint8Array => writeInSlab(estimateSize(row), (w) => writeRow(w, row))

export const encodeRow = (row: Row): Uint8Array => {
  // Sized from the estimate: growing a small buffer copies a 1 KiB vector row several times.
  const w = new Writer(estimateSize(row))
  writeRow(w, row)
  return w.finish()
}

/** Reads one row at the reader's position; throws DecodeError on malformed input or an unknown version. */
export const readRow = (r: Reader): Row => {
  const at = r.pos
  const version = r.u8()
  if (version !== ROW_FORMAT_VERSION) throw new DecodeError(`unknown row format version ${version}`, at)
  const seq = r.varint()
  const flags = r.u8()
  const deletedAt = flags & ROW_HAS_TOMBSTONE ? { wall: r.u64(), node: r.u32() } : undefined
  const count = r.varint()
  const cells = new Map<CellName, Cell>()
  for (let i = 0; i < count; i++) {
    const cellFlags = r.u8()
    const name = r.str()
    const ts = { wall: r.u64(), node: r.u32() }
    const value = cellFlags & CELL_TOMBSTONE ? undefined : readValue(r, name)
    cells.set(name, { ts, value })
  }
  return { deletedAt, cells, seq }
}

export const decodeRow = (bytes: Uint8Array): Row => {
  const r = new Reader(bytes)
  const row = readRow(r)
  if (r.remaining !== 0) throw new DecodeError(`${r.remaining} trailing bytes after row`, r.pos)
  return row
}

/** A generous guess of a row's encoded size: encode buffers are sized from it so they rarely grow (and copy). */
export const estimateSize = (row: Row): number => {
  let n = 32
  for (const [name, cell] of row.cells) {
    n += 24 + name.length * 3
    const v = cell.value
    if (v === undefined) continue
    switch (v._tag) {
      case "Meta":
        n += 48 + (v.type?.length ?? 0) * 3 + (v.metadata === undefined ? 0 : metadataBytesBound(v.metadata))
        break
      case "Vector":
        n += 24 + v.values.byteLength
        break
      case "Chunk":
        n += 24 + v.text.length * 3 + (v.metadata === undefined ? 0 : metadataBytesBound(v.metadata))
        break
      case "Edge":
        n += 16 + (v.metadata === undefined ? 0 : metadataBytesBound(v.metadata))
        break
    }
  }
  return n
}

/** An upper bound of a metadata map's msgpack size (map, key and string headers ≤ 5 bytes, numbers ≤ 9, UTF-8 ≤ 3 bytes per char). */
export const metadataBytesBound = (o: Readonly<Record<string, unknown>>): number => {
  let n = 5
  for (const k in o) {
    const v = o[k]
    n += 5 + k.length * 3 + (typeof v === "string" ? 5 + v.length * 3 : 9)
  }
  return n
}
