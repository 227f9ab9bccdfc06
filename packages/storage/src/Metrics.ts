/**
 * Every metric of the storage engine, in one place so names stay consistent
 * (Prometheus conventions: `_total` counters, `_seconds` and `_bytes` units).
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

const latencyBoundaries = MetricBoundaries.exponential({ start: 0.000_05, factor: 2, count: 18 })

export const walBytes = Metric.counter("allidb_wal_bytes_total", { description: "Bytes appended to the WAL" })
export const walRecords = Metric.counter("allidb_wal_records_total", { description: "Records appended to the WAL" })
export const walFsyncSeconds = Metric.histogram(
  "allidb_wal_fsync_seconds",
  latencyBoundaries,
  "Latency of one WAL fdatasync",
)
export const walGroupCommitSize = Metric.histogram(
  "allidb_wal_group_commit_records",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 14 }),
  "Records made durable by one group commit",
)
export const walTornTails = Metric.counter("allidb_wal_torn_tails_total", {
  description: "Torn or corrupt WAL tails truncated at start-up",
})
export const walSkippedRecords = Metric.counter("allidb_wal_salvaged_records_total", {
  description: "Corrupt WAL records skipped by the salvage setting",
})
export const walSegments = Metric.gauge("allidb_wal_segments", { description: "Live WAL segment files" })

export const memtableBytes = Metric.gauge("allidb_memtable_bytes", { description: "Bytes held by the active memtable" })
export const frozenMemtables = Metric.gauge("allidb_memtable_frozen", {
  description: "Frozen memtables waiting to be flushed",
})
export const flushes = Metric.counter("allidb_memtable_flushes_total", { description: "Memtables flushed to SSTables" })
export const flushSeconds = Metric.histogram("allidb_memtable_flush_seconds", latencyBoundaries, "Duration of one flush")
export const writeStalls = Metric.counter("allidb_write_stalls_total", {
  description: "Writes that waited because flushing fell behind",
})

/** Tables per size tier; tagged with `tier`. */
export const tablesPerTier = Metric.gauge("allidb_sstables", { description: "Live SSTables per size tier" })
export const tableBytes = Metric.gauge("allidb_sstable_bytes", { description: "Bytes in live SSTables" })
export const blockCacheHits = Metric.counter("allidb_block_cache_hits_total", { description: "Block cache hits" })
export const blockCacheMisses = Metric.counter("allidb_block_cache_misses_total", { description: "Block cache misses" })
export const bloomNegatives = Metric.counter("allidb_bloom_negatives_total", {
  description: "Point reads a bloom filter answered without reading a block",
})

export const compactions = Metric.counter("allidb_compactions_total", { description: "Compactions completed" })
export const compactionsStarted = Metric.counter("allidb_compactions_started_total", {
  description: "Compactions started (started minus completed = failed or interrupted ones)",
})
export const compactionBytesIn = Metric.counter("allidb_compaction_bytes_in_total", {
  description: "Bytes read by compaction",
})
export const compactionBytesOut = Metric.counter("allidb_compaction_bytes_out_total", {
  description: "Bytes written by compaction",
})
export const tombstonesPurged = Metric.counter("allidb_tombstones_purged_total", {
  description: "Tombstones dropped by compaction after the grace period",
})

export const tenantViolations = Metric.counter("allidb_tenant_violations_total", {
  description: "Storage calls whose key named another tenant than the caller's",
})
export const corruptionsDetected = Metric.counter("allidb_corruptions_detected_total", {
  description: "Checksum failures detected in WAL or SSTable data",
})
