/**
 * One HNSW index per tenant (hnswlib-node) plus in-memory out/in adjacency,
 * fed from StorageEngine commits after they are durable. `appliedSeq` is the
 * newest commit the index reflects; `awaitSeq` is how a write waits for
 * read-your-writes.
 *
 * CONTRACT (used by packages/cluster's Coordinator): keep these signatures;
 * add to them only.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { DimensionMismatch, TenantId } from "@allidb/core"

export type Metric = "cosine" | "l2" | "ip"

export interface TenantIndexStats {
  readonly tenant: TenantId
  readonly dimension: number | undefined
  readonly metric: Metric
  readonly vectors: number
  readonly entities: number
  readonly edges: number
  readonly capacity: number
}

export interface UnifiedIndexShape {
  /**
   * Fixes the tenant's dimension on its first vector (or checks it against
   * the fixed one). Called before a vector is written to storage.
   */
  readonly ensureDimension: (tenant: TenantId, dimension: number, field: string) => Effect.Effect<void, DimensionMismatch>
  readonly dimension: (tenant: TenantId) => Effect.Effect<number | undefined>
  /** The newest commit seq reflected in the index. */
  readonly appliedSeq: Effect.Effect<number>
  /** Completes once every commit up to `seq` is reflected. */
  readonly awaitSeq: (seq: number) => Effect.Effect<void>
  readonly stats: Effect.Effect<ReadonlyArray<TenantIndexStats>>
  /** Writes a snapshot now (also done periodically in the background). */
  readonly snapshot: Effect.Effect<void>
}

export class UnifiedIndex extends Context.Tag("@allidb/index/UnifiedIndex")<UnifiedIndex, UnifiedIndexShape>() {}
