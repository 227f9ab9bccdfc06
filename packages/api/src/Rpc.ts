/**
 * The @effect/rpc protocol of a node, over the domain schemas: what the typed
 * client in packages/client calls, served at /rpc on the HTTP port. Every
 * call is authenticated by the `RpcAuthentication` middleware from the
 * X-ALLIDB-API-KEY header and fails only with core's ClientError members.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import {
  ClientError,
  ConsistencyLevel,
  DimensionMismatch,
  EdgeRef,
  EdgeWrite,
  Entity,
  EntityId,
  InvalidInput,
  QueryRequest,
  QueryResult,
  ScanPage,
  ScanRequest,
  TraverseRequest,
  TraverseResult,
} from "@allidb/core"
import * as Schema from "effect/Schema"
import { CurrentTenant } from "./HttpApi.js"

export { CurrentTenant }

/**
 * Authenticates each call (and applies the rate limit and the per-call
 * deadline): it wraps the handler, providing the caller's tenant.
 */
export class RpcAuthentication extends RpcMiddleware.Tag<RpcAuthentication>()("@allidb/api/Rpc/Authentication", {
  provides: CurrentTenant,
  failure: ClientError,
  wrap: true,
}) {}

const writeFields = {
  consistency: Schema.optional(ConsistencyLevel),
  wait: Schema.optional(Schema.Boolean),
}

export const UpsertFailure = Schema.Struct({
  id: Schema.String,
  error: Schema.Union(InvalidInput, DimensionMismatch),
})

export const UpsertResult = Schema.Struct({
  ids: Schema.Array(EntityId),
  failed: Schema.Array(UpsertFailure),
})
export type UpsertResult = typeof UpsertResult.Type

export class Rpcs extends RpcGroup.make(
  Rpc.make("Upsert", {
    payload: { entities: Schema.Array(Entity), ...writeFields },
    success: UpsertResult,
    error: ClientError,
  }),
  Rpc.make("Get", {
    payload: { id: EntityId, consistency: Schema.optional(ConsistencyLevel) },
    success: Entity,
    error: ClientError,
  }),
  Rpc.make("Delete", {
    payload: { id: EntityId, ...writeFields },
    error: ClientError,
  }),
  Rpc.make("PutEdges", {
    payload: { edges: Schema.Array(EdgeWrite), ...writeFields },
    error: ClientError,
  }),
  Rpc.make("DeleteEdges", {
    payload: { edges: Schema.Array(EdgeRef), ...writeFields },
    error: ClientError,
  }),
  Rpc.make("Query", {
    payload: { request: QueryRequest, consistency: Schema.optional(ConsistencyLevel) },
    success: Schema.Array(QueryResult),
    error: ClientError,
  }),
  Rpc.make("Traverse", {
    payload: { request: TraverseRequest, consistency: Schema.optional(ConsistencyLevel) },
    success: Schema.Array(TraverseResult),
    error: ClientError,
  }),
  Rpc.make("Scan", {
    payload: { request: ScanRequest, consistency: Schema.optional(ConsistencyLevel) },
    success: ScanPage,
    error: ClientError,
  }),
).middleware(RpcAuthentication) {}
