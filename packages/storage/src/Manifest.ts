/**
 * The manifest: the one file that says which SSTables are live and up to
 * which commit sequence number the tables hold everything (`flushedSeq`).
 * Each change rewrites the whole (small) file with Disk.writeFileAtomic —
 * temp file, fsync, rename, directory fsync — so a crash leaves either the old
 * or the new version, never a mix; no log to replay or compact. A table file
 * the manifest does not name is garbage (an unfinished flush or compaction).
 * Byte layout: FORMAT.md "Manifest".
 */
import { crc32 } from "node:zlib"
import * as RowCodec from "./RowCodec.js"

export const FILE_NAME = "MANIFEST"
export const FORMAT_VERSION = 1
/** "ALLIMAN\n" */
export const MAGIC = Uint8Array.from([0x41, 0x4c, 0x4c, 0x49, 0x4d, 0x41, 0x4e, 0x0a])

export interface TableEntry {
  readonly id: number
  readonly fileBytes: number
}

export interface Manifest {
  /** Incremented by every change; tells versions apart in logs and tests. */
  readonly generation: number
  /** Every commit with seq ≤ flushedSeq is durable in the live tables. */
  readonly flushedSeq: number
  /** Next table id to hand out; ids are never reused. */
  readonly nextTableId: number
  readonly tables: ReadonlyArray<TableEntry>
}

export const initial: Manifest = { generation: 0, flushedSeq: 0, nextTableId: 1, tables: [] }

/** Table file name for an id: zero-padded so a directory listing sorts by age. */
export const tableFileName = (id: number): string => `${String(id).padStart(8, "0")}.sst`

/** The id in a table file name, or undefined for any other name. */
export const parseTableFileName = (name: string): number | undefined => {
  const m = /^(\d{8,})\.sst$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

// manifest = magic:8 version:u8 length:u32 payload crc32:u32   (crc over version..payload)
// payload  = generation:varint flushedSeq:varint nextTableId:varint count:varint (id:varint fileBytes:varint)*

export const encode = (m: Manifest): Uint8Array => {
  const payload = new RowCodec.Writer(64 + m.tables.length * 12)
  payload.varint(m.generation).varint(m.flushedSeq).varint(m.nextTableId).varint(m.tables.length)
  for (const t of m.tables) payload.varint(t.id).varint(t.fileBytes)
  const body = new RowCodec.Writer(payload.length + 32)
  body.raw(MAGIC).u8(FORMAT_VERSION).u32(payload.length).raw(payload.view())
  body.u32(crc32(body.view().subarray(MAGIC.length)))
  return body.finish()
}

/** Throws RowCodec.DecodeError on bad magic, checksum, an unknown version or a malformed payload. */
export const decode = (bytes: Uint8Array): Manifest => {
  const r = new RowCodec.Reader(bytes)
  if (bytes.length < MAGIC.length + 9 || Buffer.compare(r.raw(MAGIC.length), MAGIC) !== 0) {
    throw new RowCodec.DecodeError("bad magic: not an AlliDB manifest", 0)
  }
  const stored = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readUInt32LE(bytes.length - 4)
  const actual = crc32(bytes.subarray(MAGIC.length, bytes.length - 4))
  if (stored !== actual) throw new RowCodec.DecodeError("manifest checksum mismatch", bytes.length - 4)
  const version = r.u8()
  if (version !== FORMAT_VERSION) {
    throw new RowCodec.DecodeError(`unknown manifest format version ${version} (this build reads ${FORMAT_VERSION})`, 8)
  }
  const length = r.u32()
  if (length !== bytes.length - MAGIC.length - 9) throw new RowCodec.DecodeError("manifest length mismatch", 9)
  const p = new RowCodec.Reader(r.raw(length))
  const generation = p.varint()
  const flushedSeq = p.varint()
  const nextTableId = p.varint()
  const count = p.varint()
  const tables: Array<TableEntry> = []
  for (let i = 0; i < count; i++) tables.push({ id: p.varint(), fileBytes: p.varint() })
  if (p.remaining !== 0) throw new RowCodec.DecodeError("trailing bytes in manifest payload", 13 + p.pos)
  return { generation, flushedSeq, nextTableId, tables }
}
