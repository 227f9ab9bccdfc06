/**
 * The WAL byte format (FORMAT.md "WAL"): pure encode/decode, no I/O.
 *
 * A segment is a header then records. One record is one group commit: its
 * payload holds the commits made durable by one write + fdatasync, each tagged
 * with its commit sequence number. Because a record is the unit that is
 * written and synced, a damaged LAST record is a torn write (never
 * acknowledged), while a damaged record with valid records after it is media
 * corruption of acknowledged data.
 *
 *   segment := header record*
 *   header  := magic "AWAL" (4) | version u8 (=1) | reserved u8[3] (=0)
 *   record  := length u32 | crc32 u32 (of payload) | payload (length bytes)
 *   payload := count u32 | entry{count}
 *   entry   := seq u64 | size u32 | bytes (size)
 */
import { crc32 } from "node:zlib"

export const VERSION = 1
export const MAGIC = Uint8Array.of(0x41, 0x57, 0x41, 0x4c) // "AWAL"
export const HEADER_BYTES = 8
export const RECORD_HEADER_BYTES = 8
export const ENTRY_HEADER_BYTES = 12
/** A record larger than this is treated as damage (the writer never produces one). */
export const MAX_RECORD_BYTES = 1 << 30

const SEGMENT_SUFFIX = ".wal"
const SEQ_DIGITS = 20
const TWO_32 = 2 ** 32

/** `<first seq, zero-padded to 20 digits>.wal`: names sort in seq order. */
export const segmentName = (firstSeq: number): string => `${String(firstSeq).padStart(SEQ_DIGITS, "0")}${SEGMENT_SUFFIX}`

export const parseSegmentName = (name: string): number | undefined => {
  if (!name.endsWith(SEGMENT_SUFFIX)) return undefined
  const digits = name.slice(0, -SEGMENT_SUFFIX.length)
  if (digits.length !== SEQ_DIGITS || !/^[0-9]+$/.test(digits)) return undefined
  const seq = Number(digits)
  return Number.isSafeInteger(seq) ? seq : undefined
}

export const encodeHeader = (): Uint8Array => {
  const header = new Uint8Array(HEADER_BYTES)
  header.set(MAGIC, 0)
  header[4] = VERSION
  return header
}

export type HeaderCheck =
  | { readonly _tag: "Ok" }
  /** Shorter than a header, or all zero: a segment whose creation was torn. */
  | { readonly _tag: "Torn" }
  | { readonly _tag: "BadMagic" }
  | { readonly _tag: "UnknownVersion"; readonly version: number }

export const checkHeader = (bytes: Uint8Array): HeaderCheck => {
  if (bytes.length < HEADER_BYTES) return { _tag: "Torn" }
  let allZero = true
  for (let i = 0; i < HEADER_BYTES; i++) if (bytes[i] !== 0) allZero = false
  if (allZero) return { _tag: "Torn" }
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return { _tag: "BadMagic" }
  if (bytes[4] !== VERSION) return { _tag: "UnknownVersion", version: bytes[4]! }
  return { _tag: "Ok" }
}

export interface Entry {
  readonly seq: number
  readonly payload: Uint8Array
}

/** Size of the record holding these payloads. */
export const recordSize = (payloadBytes: number, count: number): number =>
  RECORD_HEADER_BYTES + 4 + count * ENTRY_HEADER_BYTES + payloadBytes

/**
 * Encodes one record into `out` at `offset` (the writer sizes `out` with
 * `recordSize`, so a batch costs one allocation and one copy per entry).
 * Returns the offset after the record.
 */
export const writeRecord = (
  out: Uint8Array,
  offset: number,
  entries: ReadonlyArray<{ readonly seq: number; readonly payload: Uint8Array }>,
): number => {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  const payloadStart = offset + RECORD_HEADER_BYTES
  let p = payloadStart
  view.setUint32(p, entries.length, true)
  p += 4
  for (const entry of entries) {
    view.setUint32(p, entry.seq % TWO_32, true)
    view.setUint32(p + 4, Math.floor(entry.seq / TWO_32), true)
    view.setUint32(p + 8, entry.payload.length, true)
    p += ENTRY_HEADER_BYTES
    out.set(entry.payload, p)
    p += entry.payload.length
  }
  const length = p - payloadStart
  view.setUint32(offset, length, true)
  view.setUint32(offset + 4, crc32(out.subarray(payloadStart, p)), true)
  return p
}

export const encodeRecord = (entries: ReadonlyArray<Entry>): Uint8Array => {
  let bytes = 0
  for (const e of entries) bytes += e.payload.length
  const out = new Uint8Array(recordSize(bytes, entries.length))
  writeRecord(out, 0, entries)
  return out
}

export type ReadResult =
  | { readonly _tag: "Record"; readonly entries: ReadonlyArray<Entry>; readonly next: number }
  /** `offset` is exactly the end of the data. */
  | { readonly _tag: "End" }
  /** A record that cannot be read at `offset`: cut short, bad checksum or malformed. */
  | { readonly _tag: "Damaged"; readonly reason: string }

/**
 * Parses the entries of a payload, or returns a reason it is malformed.
 * Checking the structure before the checksum makes scanning garbage cheap.
 */
const parseEntries = (bytes: Uint8Array, start: number, end: number): ReadonlyArray<Entry> | string => {
  if (end - start < 4) return "payload shorter than its entry count"
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const count = view.getUint32(start, true)
  if (count === 0) return "record with no entries"
  if (count > (end - start - 4) / ENTRY_HEADER_BYTES) return `entry count ${count} does not fit the record`
  const entries: Array<Entry> = new Array(count)
  let p = start + 4
  for (let i = 0; i < count; i++) {
    if (p + ENTRY_HEADER_BYTES > end) return "entry header past the end of the record"
    const seq = view.getUint32(p, true) + view.getUint32(p + 4, true) * TWO_32
    const size = view.getUint32(p + 8, true)
    p += ENTRY_HEADER_BYTES
    if (p + size > end) return "entry past the end of the record"
    if (!Number.isSafeInteger(seq) || seq === 0) return `invalid seq ${seq}`
    if (i > 0 && seq <= entries[i - 1]!.seq) return "entry seqs not increasing"
    entries[i] = { seq, payload: bytes.subarray(p, p + size) }
    p += size
  }
  if (p !== end) return "trailing bytes after the last entry"
  return entries
}

/** Reads the record at `offset` of a segment's bytes (`end` = how many bytes are valid). */
export const readRecord = (bytes: Uint8Array, offset: number, end: number = bytes.length): ReadResult => {
  if (offset === end) return { _tag: "End" }
  if (end - offset < RECORD_HEADER_BYTES) return { _tag: "Damaged", reason: "record header cut short" }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const length = view.getUint32(offset, true)
  const stored = view.getUint32(offset + 4, true)
  const start = offset + RECORD_HEADER_BYTES
  if (length > MAX_RECORD_BYTES) return { _tag: "Damaged", reason: `implausible record length ${length}` }
  if (start + length > end) return { _tag: "Damaged", reason: `record of ${length} bytes cut short` }
  const entries = parseEntries(bytes, start, start + length)
  if (typeof entries === "string") return { _tag: "Damaged", reason: entries }
  if (crc32(bytes.subarray(start, start + length)) !== stored) return { _tag: "Damaged", reason: "checksum mismatch" }
  return { _tag: "Record", entries, next: start + length }
}

/**
 * The offset of the first valid record strictly after `from`, whose entries
 * all have seq > `afterSeq` (a stale match inside a damaged record cannot
 * move replay backwards), or undefined.
 */
export const findNextRecord = (
  bytes: Uint8Array,
  from: number,
  afterSeq: number,
  end: number = bytes.length,
): number | undefined => {
  for (let offset = from + 1; offset + RECORD_HEADER_BYTES + 4 <= end; offset++) {
    const result = readRecord(bytes, offset, end)
    if (result._tag === "Record" && result.entries[0]!.seq > afterSeq) return offset
  }
  return undefined
}
