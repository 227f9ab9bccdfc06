/**
 * Every read and write of every API surface goes through the Coordinator.
 * In milestone 1 it is the single-node implementation: every consistency
 * level is satisfied locally. The cluster milestone replaces the layer, not
 * the APIs.
 *
 * CONTRACT (used by packages/api): keep these signatures; add to them only.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type {
  ConsistencyLevel,
  Corruption,
  DeadlineExceeded,
  DimensionMismatch,
  EdgeRef,
  EdgeWrite,
  Entity,
  EntityId,
  InvalidInput,
  NotFound,
  QueryRequest,
  QueryResult,
  ScanPage,
  ScanRequest,
  StorageFailure,
  TenantId,
  TenantViolation,
  TraverseRequest,
  TraverseResult,
  Unavailable,
} from "@allidb/core"

export interface WriteOptions {
  readonly consistency?: ConsistencyLevel
  /** false: acknowledge once durable, without waiting for the index (bulk ingest). Default true. */
  readonly wait?: boolean
}

export interface ReadOptions {
  readonly consistency?: ConsistencyLevel
}

export interface UpsertFailure {
  readonly id: string
  readonly error: InvalidInput | DimensionMismatch
}

export interface UpsertResult {
  /** Ids written, in request order. */
  readonly ids: ReadonlyArray<EntityId>
  /** Entities refused (the rest of the batch is still written). */
  readonly failed: ReadonlyArray<UpsertFailure>
}

export type CoordinatorError =
  | InvalidInput
  | DimensionMismatch
  | DeadlineExceeded
  | StorageFailure
  | Corruption
  | TenantViolation
  | Unavailable

export interface CoordinatorShape {
  readonly upsert: (
    tenant: TenantId,
    entities: ReadonlyArray<Entity>,
    options?: WriteOptions,
  ) => Effect.Effect<UpsertResult, CoordinatorError>
  readonly get: (tenant: TenantId, id: EntityId, options?: ReadOptions) => Effect.Effect<Entity, NotFound | CoordinatorError>
  /** Fails with NotFound when there was no such entity. */
  readonly remove: (tenant: TenantId, id: EntityId, options?: WriteOptions) => Effect.Effect<void, NotFound | CoordinatorError>
  readonly putEdges: (
    tenant: TenantId,
    edges: ReadonlyArray<EdgeWrite>,
    options?: WriteOptions,
  ) => Effect.Effect<void, CoordinatorError>
  readonly removeEdges: (
    tenant: TenantId,
    edges: ReadonlyArray<EdgeRef>,
    options?: WriteOptions,
  ) => Effect.Effect<void, CoordinatorError>
  readonly query: (
    tenant: TenantId,
    request: QueryRequest,
    options?: ReadOptions,
  ) => Effect.Effect<ReadonlyArray<QueryResult>, CoordinatorError>
  readonly traverse: (
    tenant: TenantId,
    request: TraverseRequest,
    options?: ReadOptions,
  ) => Effect.Effect<ReadonlyArray<TraverseResult>, CoordinatorError>
  readonly scan: (tenant: TenantId, request: ScanRequest, options?: ReadOptions) => Effect.Effect<ScanPage, CoordinatorError>
}

export class Coordinator extends Context.Tag("@allidb/cluster/Coordinator")<Coordinator, CoordinatorShape>() {}
