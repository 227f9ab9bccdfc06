/**
 * Settings of the index and the query executor. The server maps its flags and
 * ALLIDB_* variables onto this; embedders provide it directly. Snapshots live
 * under `<dataDir>/index`.
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import type { Metric } from "./UnifiedIndex.js"

export interface IndexConfigShape {
  /** Root of the node's data; snapshots go to `<dataDir>/index`. */
  readonly dataDir: string
  /** Metric of a tenant not named in `tenantMetrics`. */
  readonly defaultMetric: Metric
  /** Per-tenant metric overrides (tenant id → metric). */
  readonly tenantMetrics: Readonly<Record<string, Metric>>
  /** Per-tenant fixed dimensions; other tenants take the dimension of their first vector. */
  readonly tenantDimensions: Readonly<Record<string, number>>
  /** HNSW graph degree. */
  readonly m: number
  readonly efConstruction: number
  /** Default search ef; a query's own ef (and k × expand factor) can raise it. */
  readonly efSearch: number
  /** Seed of hnswlib's level generator, so builds are reproducible. */
  readonly randomSeed: number
  /** Slots allocated when a tenant's HNSW index is created. */
  readonly initialCapacity: number
  /** Capacity multiplier when the index is full (> 1). */
  readonly growthFactor: number
  /** Background snapshot period in milliseconds (0 disables the periodic snapshot). */
  readonly snapshotIntervalMs: number
  /** Write a snapshot when the layer's scope closes. */
  readonly snapshotOnClose: boolean
  /** Hops used when a caller asks for expansion without naming them. */
  readonly expandHops: number
  /** Neighbours followed from one node when the request names no fan-out. */
  readonly expandFanout: number
  /** Multiplier applied per hop to an expanded path's weight (< 1 so expansion never outranks an equal direct hit). */
  readonly expandHopDecay: number
  /** Half-life of the recency score, milliseconds. */
  readonly recencyHalfLifeMs: number
  /** Deadline of one query or traversal, milliseconds. */
  readonly queryTimeoutMs: number
  /** A filter matching at most this many vectors is answered by an exact scan instead of filtered ANN. */
  readonly exactScanThreshold: number
  /** Longest stretch of index work (inserts, encoding) run before the event loop gets a turn, milliseconds. */
  readonly sliceMs: number
}

export const defaults: IndexConfigShape = {
  dataDir: "./data",
  defaultMetric: "cosine",
  tenantMetrics: {},
  tenantDimensions: {},
  m: 16,
  efConstruction: 200,
  efSearch: 64,
  randomSeed: 100,
  initialCapacity: 1024,
  growthFactor: 2,
  snapshotIntervalMs: 5 * 60 * 1000,
  snapshotOnClose: true,
  expandHops: 1,
  expandFanout: 32,
  expandHopDecay: 0.8,
  recencyHalfLifeMs: 7 * 24 * 60 * 60 * 1000,
  queryTimeoutMs: 5_000,
  exactScanThreshold: 2_000,
  sliceMs: 8,
}

export class IndexConfig extends Context.Tag("@allidb/index/IndexConfig")<IndexConfig, IndexConfigShape>() {}

export const metricOf = (config: IndexConfigShape, tenant: string): Metric =>
  config.tenantMetrics[tenant] ?? config.defaultMetric

export const layer = (config: Partial<IndexConfigShape> & { readonly dataDir: string }): Layer.Layer<IndexConfig> =>
  Layer.succeed(IndexConfig, { ...defaults, ...config })
