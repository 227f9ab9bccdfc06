/**
 * Every metric of the index and the query executor (Prometheus conventions:
 * `_total` counters, `_seconds` units). Tenant tags are bounded by
 * configuration, so they are safe as labels.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

const latencyBoundaries = MetricBoundaries.exponential({ start: 0.000_01, factor: 2, count: 22 })

export type Stage = "ann" | "expand" | "filter" | "score" | "fetch" | "traverse"

const queryStageSeconds = Metric.histogram(
  "allidb_query_stage_seconds",
  latencyBoundaries,
  "Time spent in one stage of a query",
)

export const stageSeconds = (stage: Stage) => Metric.tagged(queryStageSeconds, "stage", stage)

const indexVectors = Metric.gauge("allidb_index_vectors", { description: "Live vectors in a tenant's HNSW index" })
export const vectorsOf = (tenant: string) => Metric.tagged(indexVectors, "tenant", tenant)

export const inserts = Metric.counter("allidb_index_inserts_total", {
  description: "Vectors added to or replaced in an HNSW index",
})
export const snapshotSeconds = Metric.histogram(
  "allidb_index_snapshot_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 18 }),
  "Duration of one tenant's index snapshot",
)
export const rebuilds = Metric.counter("allidb_index_rebuilds_total", {
  description: "Tenant indexes rebuilt from storage (no usable snapshot, or a hot reload)",
})
export const snapshotLoadFailures = Metric.counter("allidb_index_snapshot_load_failures_total", {
  description: "Snapshots found damaged or inconsistent at start-up",
})
export const skippedVectors = Metric.counter("allidb_index_skipped_vectors_total", {
  description: "Stored vectors not indexed because their dimension differs from the tenant's",
})
