/**
 * @allidb/index — the per-tenant HNSW + graph index kept exact with storage,
 * and the query executor (ANN → expansion → filters → unified score → top k).
 */
export * as Filter from "./Filter.js"
export * as Graph from "./Graph.js"
export * as IndexConfig from "./IndexConfig.js"
export * as IndexMetrics from "./Metrics.js"
export * as QueryExecutor from "./QueryExecutor.js"
export * as Scorer from "./Scorer.js"
export * as Snapshot from "./Snapshot.js"
export * as TenantIndex from "./TenantIndex.js"
export * as UnifiedIndex from "./UnifiedIndex.js"
