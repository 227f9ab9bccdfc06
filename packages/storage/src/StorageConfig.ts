/**
 * Settings of the storage engine. The server maps its flags and ALLIDB_*
 * variables onto this; embedders provide it directly.
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

export type SyncMode = "always" | "none"

export interface StorageConfigShape {
  /** Root of the node's data; the engine uses `<dataDir>/wal` and `<dataDir>/sst`. */
  readonly dataDir: string
  /** always: a write is acknowledged after fdatasync (default). none: for development only. */
  readonly syncMode: SyncMode
  /** A WAL segment is rotated once it passes this size. */
  readonly walSegmentBytes: number
  /** Skip (log and count) corrupt WAL records that have valid records after them instead of refusing to start. */
  readonly walSalvage: boolean
  /** A memtable is frozen and flushed once it holds this many bytes. */
  readonly memtableBytes: number
  /** Writes stall while more than this many frozen memtables wait to be flushed. */
  readonly maxFrozenMemtables: number
  readonly blockCacheBytes: number
  /** Target size of an SSTable data block before compression-free encoding. */
  readonly blockBytes: number
  readonly bloomBitsPerKey: number
  /** Size-tiered compaction: a bucket is compacted once it holds at least `min` tables, at most `max` at a time. */
  readonly compactionMinThreshold: number
  readonly compactionMaxThreshold: number
  /** Byte-rate limit of compaction I/O, MiB per second (0 = unlimited). */
  readonly compactionMbPerSec: number
  /** Tombstones younger than this are kept by compaction (milliseconds). */
  readonly tombstoneGraceMs: number
  /** Stop the node on a tenant mismatch that reaches storage (true), or fail the call with a typed error. */
  readonly failHard: boolean
}

export const defaults: StorageConfigShape = {
  dataDir: "./data",
  syncMode: "always",
  walSegmentBytes: 64 * 1024 * 1024,
  walSalvage: false,
  memtableBytes: 64 * 1024 * 1024,
  maxFrozenMemtables: 2,
  blockCacheBytes: 64 * 1024 * 1024,
  blockBytes: 16 * 1024,
  bloomBitsPerKey: 10,
  compactionMinThreshold: 4,
  compactionMaxThreshold: 32,
  compactionMbPerSec: 64,
  tombstoneGraceMs: 10 * 24 * 60 * 60 * 1000,
  failHard: true,
}

export class StorageConfig extends Context.Tag("@allidb/storage/StorageConfig")<StorageConfig, StorageConfigShape>() {}

export const layer = (config: Partial<StorageConfigShape> & { readonly dataDir: string }): Layer.Layer<StorageConfig> =>
  Layer.succeed(StorageConfig, { ...defaults, ...config })
