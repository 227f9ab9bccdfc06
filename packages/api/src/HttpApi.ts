/**
 * The native HTTP /v1 API as data: endpoints, bodies, answers and errors.
 * The handlers (HttpHandlers), the OpenAPI document at /openapi.json and the
 * docs page at /docs are all derived from these definitions.
 *
 * Bodies are decoded by the handlers rather than by HttpApi (the endpoints
 * are served with `handleRaw`) so that every bad input answers the one error
 * shape `{error, code, field}` naming the field path and the rule, and a
 * batch can refuse single entities instead of the whole request. The payload
 * schemas here are still the ones the handlers decode with, so the document
 * is exact.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import {
  type ClientError,
  ConsistencyLevel,
  Corruption,
  DeadlineExceeded,
  DimensionMismatch,
  EdgeRef,
  EdgeWrite,
  Entity,
  InvalidInput,
  NotFound,
  PayloadTooLarge,
  PermissionDenied,
  QueryRequest,
  QueryResult,
  RateLimited,
  StorageFailure,
  type TenantId,
  TenantViolation,
  TraverseRequest,
  TraverseResult,
  Unauthenticated,
  Unavailable,
} from "@allidb/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as ErrorMapping from "./ErrorMapping.js"
import { currentRequestId } from "./Limits.js"

// ---------------------------------------------------------------------------
// Errors: each core error is answered as ErrorBody with its mapped status
// ---------------------------------------------------------------------------

export const ErrorBody = Schema.Struct({
  error: Schema.String,
  code: Schema.String,
  field: Schema.optional(Schema.String),
  request_id: Schema.optional(Schema.String),
  retry_after_seconds: Schema.optional(Schema.Number),
}).annotations({ identifier: "ErrorBody", description: "Every error answer: message, gRPC-style code, field path" })

type ErrorClass<A> = (abstract new (...args: ReadonlyArray<never>) => A) & { readonly _tag: string }

/**
 * The HTTP form of a core error: encoded as ErrorBody (request id read from
 * the serving fiber, internal details logged, not sent). Decoding is not
 * offered: the typed client speaks RPC, where errors travel intact.
 */
const httpError = <A extends ClientError>(cls: ErrorClass<A>) => {
  const status = ErrorMapping.table[cls._tag as ErrorMapping.ErrorTag].status
  const type = Schema.declare((u: unknown): u is A => u instanceof cls, { identifier: cls._tag })
  return Schema.transformOrFail(ErrorBody, type, {
    strict: true,
    decode: (body, _, ast) => ParseResult.fail(new ParseResult.Forbidden(ast, body, "error bodies are encode-only")),
    encode: (error) =>
      Effect.flatMap(FiberRef.get(currentRequestId), (requestId) =>
        Effect.as(ErrorMapping.logIfInternal(error, requestId), ErrorMapping.toErrorBody(error, requestId)),
      ),
  }).annotations(HttpApiSchema.annotations({ status, description: `${cls._tag} (${status})` }))
}

export const InvalidInputError = httpError(InvalidInput)
export const DimensionMismatchError = httpError(DimensionMismatch)
export const UnauthenticatedError = httpError(Unauthenticated)
export const PermissionDeniedError = httpError(PermissionDenied)
export const NotFoundError = httpError(NotFound)
export const PayloadTooLargeError = httpError(PayloadTooLarge)
export const RateLimitedError = httpError(RateLimited)
export const DeadlineExceededError = httpError(DeadlineExceeded)
export const UnavailableError = httpError(Unavailable)
export const StorageFailureError = httpError(StorageFailure)
export const CorruptionError = httpError(Corruption)
export const TenantViolationError = httpError(TenantViolation)

// ---------------------------------------------------------------------------
// Authentication: X-ALLIDB-API-KEY → the caller's tenant
// ---------------------------------------------------------------------------

/** The authenticated tenant of the request being served. */
export class CurrentTenant extends Context.Tag("@allidb/api/CurrentTenant")<CurrentTenant, TenantId>() {}

export const apiKeySecurity = HttpApiSecurity.apiKey({ key: "X-ALLIDB-API-KEY", in: "header" })

export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("@allidb/api/HttpApi/Authentication", {
  failure: UnauthenticatedError,
  provides: CurrentTenant,
  security: { apiKey: apiKeySecurity },
}) {}

// ---------------------------------------------------------------------------
// Bodies and answers (snake_case on the wire)
// ---------------------------------------------------------------------------

/** A body may name its tenant; anything but the key's own tenant is a 403. */
const tenantField = Schema.optional(Schema.String).annotations({
  description: "Optional; must be the API key's tenant (403 otherwise)",
})

const writeFields = {
  consistency: Schema.optional(ConsistencyLevel),
  wait: Schema.optional(Schema.Boolean).annotations({
    description: "Wait until the write is visible to queries (default true)",
  }),
  tenant: tenantField,
}

export const UpsertBody = Schema.Struct({ entities: Schema.Array(Entity), ...writeFields }).annotations({
  identifier: "UpsertBody",
})
export type UpsertBody = typeof UpsertBody.Type

export const UpsertFailureItem = Schema.Struct({
  id: Schema.String,
  error: Schema.String,
  code: Schema.String,
  field: Schema.optional(Schema.String),
})

export const UpsertResponse = Schema.Struct({
  ids: Schema.Array(Schema.String),
  failed: Schema.optional(Schema.Array(UpsertFailureItem)),
}).annotations({ identifier: "UpsertResponse" })

export const ScanParams = Schema.Struct({
  start: Schema.optional(Schema.String).annotations({ description: "Inclusive lower bound on id" }),
  end: Schema.optional(Schema.String).annotations({ description: "Exclusive upper bound on id" }),
  limit: Schema.optional(Schema.String).annotations({ description: "Page size, an integer 1..max_k (default 100)" }),
  page_token: Schema.optional(Schema.String).annotations({ description: "next_page_token of the previous page" }),
})

export const ScanResponse = Schema.Struct({
  entities: Schema.Array(Entity),
  next_page_token: Schema.optional(Schema.String),
}).annotations({ identifier: "ScanResponse" })

export const EntityIdPath = Schema.Struct({ id: Schema.String })

export const DeleteResponse = Schema.Struct({ id: Schema.String, deleted: Schema.Literal(true) })

export const PutEdgesBody = Schema.Struct({ edges: Schema.Array(EdgeWrite), ...writeFields }).annotations({
  identifier: "PutEdgesBody",
})
export const DeleteEdgesBody = Schema.Struct({ edges: Schema.Array(EdgeRef), ...writeFields }).annotations({
  identifier: "DeleteEdgesBody",
})
export const EdgesResponse = Schema.Struct({ count: Schema.Number })

export const QueryBody = Schema.Struct({
  ...QueryRequest.fields,
  consistency: Schema.optional(ConsistencyLevel),
  tenant: tenantField,
}).annotations({ identifier: "QueryBody" })
export const QueryResponse = Schema.Struct({ results: Schema.Array(QueryResult) }).annotations({
  identifier: "QueryResponse",
})

export const TraverseBody = Schema.Struct({
  ...TraverseRequest.fields,
  consistency: Schema.optional(ConsistencyLevel),
  tenant: tenantField,
}).annotations({ identifier: "TraverseBody" })
export const TraverseResponse = Schema.Struct({ results: Schema.Array(TraverseResult) }).annotations({
  identifier: "TraverseResponse",
})

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

export class EntitiesGroup extends HttpApiGroup.make("entities")
  .add(
    HttpApiEndpoint.post("upsert", "/v1/entities")
      .setPayload(UpsertBody)
      .addSuccess(UpsertResponse)
      .annotate(OpenApi.Summary, "Upsert a batch of entities")
      .annotate(
        OpenApi.Description,
        "All-or-nothing per entity: refused entities are listed in `failed`, the rest are written. " +
          "When no entity could be written the answer is a 400 naming the first problem.",
      ),
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/entities/:id")
      .setPath(EntityIdPath)
      .addSuccess(Entity)
      .addError(NotFoundError)
      .annotate(OpenApi.Summary, "Read one entity"),
  )
  .add(
    HttpApiEndpoint.del("remove", "/v1/entities/:id")
      .setPath(EntityIdPath)
      .addSuccess(DeleteResponse)
      .addError(NotFoundError)
      .annotate(OpenApi.Summary, "Delete one entity"),
  )
  .add(
    HttpApiEndpoint.get("scan", "/v1/entities")
      .setUrlParams(ScanParams)
      .addSuccess(ScanResponse)
      .annotate(OpenApi.Summary, "List entities in id order, paged"),
  ) {}

export class EdgesGroup extends HttpApiGroup.make("edges")
  .add(
    HttpApiEndpoint.post("put", "/v1/edges")
      .setPayload(PutEdgesBody)
      .addSuccess(EdgesResponse)
      .annotate(OpenApi.Summary, "Add or replace edges (endpoints need not exist)"),
  )
  .add(
    HttpApiEndpoint.del("remove", "/v1/edges")
      .setPayload(DeleteEdgesBody)
      .addSuccess(EdgesResponse)
      .annotate(OpenApi.Summary, "Remove edges"),
  ) {}

export class QueryGroup extends HttpApiGroup.make("query")
  .add(
    HttpApiEndpoint.post("query", "/v1/query")
      .setPayload(QueryBody)
      .addSuccess(QueryResponse)
      .annotate(OpenApi.Summary, "Vector search with graph expansion and unified scoring"),
  )
  .add(
    HttpApiEndpoint.post("traverse", "/v1/traverse")
      .setPayload(TraverseBody)
      .addSuccess(TraverseResponse)
      .annotate(OpenApi.Summary, "Breadth-first graph traversal"),
  ) {}

export class Api extends HttpApi.make("allidb")
  .add(EntitiesGroup)
  .add(EdgesGroup)
  .add(QueryGroup)
  .addError(InvalidInputError)
  .addError(DimensionMismatchError)
  .addError(PermissionDeniedError)
  .addError(PayloadTooLargeError)
  .addError(RateLimitedError)
  .addError(DeadlineExceededError)
  .addError(UnavailableError)
  .addError(StorageFailureError)
  .addError(CorruptionError)
  .addError(TenantViolationError)
  .middleware(Authentication)
  .annotate(OpenApi.Title, "AlliDB native API")
  .annotate(OpenApi.Version, "1") {}
