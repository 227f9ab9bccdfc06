/**
 * ANN → graph expansion → filters → unified score → top k, and plain graph
 * traversal. Entities for results are fetched through the StorageEngine.
 *
 * CONTRACT (used by packages/cluster's Coordinator): keep these signatures;
 * add to them only.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type {
  Corruption,
  DeadlineExceeded,
  DimensionMismatch,
  InvalidInput,
  QueryRequest,
  QueryResult,
  StorageFailure,
  TenantId,
  TenantViolation,
  TraverseRequest,
  TraverseResult,
} from "@allidb/core"

export type QueryError =
  | InvalidInput
  | DimensionMismatch
  | DeadlineExceeded
  | StorageFailure
  | Corruption
  | TenantViolation

export interface QueryExecutorShape {
  readonly query: (tenant: TenantId, request: QueryRequest) => Effect.Effect<ReadonlyArray<QueryResult>, QueryError>
  readonly traverse: (
    tenant: TenantId,
    request: TraverseRequest,
  ) => Effect.Effect<ReadonlyArray<TraverseResult>, QueryError>
}

export class QueryExecutor extends Context.Tag("@allidb/index/QueryExecutor")<QueryExecutor, QueryExecutorShape>() {}
