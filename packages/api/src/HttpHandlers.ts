/**
 * Handlers of the native HTTP /v1 API: decode the body (naming the field
 * path and rule of any problem), check the request limits and the tenant the
 * body names, then call the Coordinator. No database logic lives here.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Coordinator } from "@allidb/cluster"
import {
  type ConsistencyLevel,
  DimensionMismatch,
  Entity,
  EntityId,
  InvalidInput,
  type PayloadTooLarge,
  QueryRequest,
  ScanRequest,
  type TenantId,
  TraverseRequest,
} from "@allidb/core"
import { Metrics, RequestTelemetry } from "@allidb/observability"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as ApiConfig from "./ApiConfig.js"
import * as Auth from "./Auth.js"
import * as ErrorMapping from "./ErrorMapping.js"
import * as Api from "./HttpApi.js"
import * as Limits from "./Limits.js"

// ---------------------------------------------------------------------------
// Shared request plumbing (also used by RpcHandlers where it applies)
// ---------------------------------------------------------------------------

/** Reads the JSON body; too large → 413, not JSON → 400. */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limitBytes: number,
): Effect.Effect<unknown, PayloadTooLarge | InvalidInput> =>
  Effect.flatMap(Limits.readBodyText(request, limitBytes), (text) =>
    Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: () =>
        new InvalidInput({
          field: "body",
          message: text.trim() === "" ? "body: a JSON body is required" : "body: is not valid JSON",
        }),
    }),
  )

/** Decodes with `schema`; a failure is InvalidInput naming the field path (under `prefix`). */
export const decode =
  <A, I>(schema: Schema.Schema<A, I>, prefix?: string) =>
  (raw: unknown): Effect.Effect<A, InvalidInput> =>
    Schema.decodeUnknown(schema)(raw).pipe(
      Effect.mapError((error) => ErrorMapping.fromParseError(error, prefix === undefined ? undefined : { prefix })),
    )

/** A batch over the limit is refused before its items are decoded. */
export const checkBatch = (raw: unknown, key: string, maxBatch: number): Effect.Effect<void, InvalidInput> => {
  const items = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>)[key] : undefined
  return Array.isArray(items) && items.length > maxBatch
    ? Effect.fail(
        new InvalidInput({
          field: key,
          message: `${key}: at most ${maxBatch} items per request (got ${items.length})`,
        }),
      )
    : Effect.void
}

export const checkAtMost = (field: string, value: number | undefined, max: number): Effect.Effect<void, InvalidInput> =>
  value !== undefined && value > max
    ? Effect.fail(new InvalidInput({ field, message: `${field}: must be at most ${max} (got ${value})` }))
    : Effect.void

export const writeOptions = (body: {
  readonly consistency?: ConsistencyLevel | undefined
  readonly wait?: boolean | undefined
}): Coordinator.WriteOptions => ({
  ...(body.consistency === undefined ? {} : { consistency: body.consistency }),
  ...(body.wait === undefined ? {} : { wait: body.wait }),
})

export const readOptions = (body: { readonly consistency?: ConsistencyLevel | undefined }): Coordinator.ReadOptions =>
  body.consistency === undefined ? {} : { consistency: body.consistency }

/** Rewrites the coordinator's `entities[j]` (index among accepted) to the request's index. */
const remapEntityField = (field: string, originalIndex: ReadonlyArray<number>): string =>
  field.replace(/^entities\[(\d+)\]/, (_, j: string) => `entities[${originalIndex[Number(j)] ?? j}]`)

const decodeEntity = Schema.decodeUnknownEither(Entity)
const decodeEntityId = decode(EntityId, "id")
const UpsertEnvelope = Schema.Struct({ ...Api.UpsertBody.fields, entities: Schema.Array(Schema.Unknown) })

type UpsertFailureItem = typeof Api.UpsertFailureItem.Type

/**
 * Decodes each entity on its own so one bad entity does not sink the batch;
 * returns the decoded ones with their request indices and the refusals.
 */
export const decodeEntities = (
  raw: ReadonlyArray<unknown>,
): {
  readonly accepted: Array<Entity>
  readonly indices: Array<number>
  readonly failed: Array<{ readonly id: string; readonly error: InvalidInput | DimensionMismatch }>
} => {
  const accepted: Array<Entity> = []
  const indices: Array<number> = []
  const failed: Array<{ readonly id: string; readonly error: InvalidInput }> = []
  raw.forEach((item, i) => {
    const decoded = decodeEntity(item)
    if (Either.isRight(decoded)) {
      accepted.push(decoded.right)
      indices.push(i)
    } else {
      const id = typeof item === "object" && item !== null ? (item as { id?: unknown }).id : undefined
      failed.push({
        id: typeof id === "string" ? id : "",
        error: ErrorMapping.fromParseError(decoded.left, { prefix: `entities[${i}]` }),
      })
    }
  })
  return { accepted, indices, failed }
}

/** Runs a decoded batch through the coordinator and merges both kinds of refusal, in request order. */
export const upsertDecoded = (
  coordinator: Coordinator.CoordinatorShape,
  tenant: TenantId,
  rawEntities: ReadonlyArray<unknown>,
  options: Coordinator.WriteOptions,
) =>
  Effect.gen(function* () {
    const { accepted, indices, failed } = decodeEntities(rawEntities)
    const result = yield* coordinator.upsert(tenant, accepted, options)
    const refused = [
      ...failed.map((f) => ({ ...f, index: Number(/^entities\[(\d+)\]/.exec(f.error.field)?.[1] ?? 0) })),
      ...result.failed.map((f) => {
        const field = remapEntityField(f.error.field, indices)
        const error =
          f.error._tag === "InvalidInput"
            ? new InvalidInput({ field, message: f.error.message.replace(f.error.field, field) })
            : new DimensionMismatch({ field, expected: f.error.expected, actual: f.error.actual })
        return { id: f.id, error, index: Number(/^entities\[(\d+)\]/.exec(field)?.[1] ?? 0) }
      }),
    ].sort((a, b) => a.index - b.index)
    return { ids: result.ids, failed: refused.map(({ id, error }) => ({ id, error })) }
  })

const failureItem = (failure: { readonly id: string; readonly error: InvalidInput | DimensionMismatch }): UpsertFailureItem => {
  const body = ErrorMapping.toErrorBody(failure.error)
  return { id: failure.id, error: body.error, code: body.code, ...(body.field === undefined ? {} : { field: body.field }) }
}

// ---------------------------------------------------------------------------
// Authentication middleware
// ---------------------------------------------------------------------------

export const layerAuthentication: Layer.Layer<Api.Authentication, never, Auth.Auth> = Layer.effect(
  Api.Authentication,
  Effect.map(Auth.Auth, (auth) =>
    Api.Authentication.of({
      apiKey: (key) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          auth
            .authenticate(Redacted.value(key), Option.getOrUndefined(request.remoteAddress))
            .pipe(
              Effect.tap(RequestTelemetry.setTenant),
              Effect.tapError(() => Metrics.recordRejected("http", "unauthenticated")),
            ),
        ),
    }),
  ),
)

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

const context = Effect.all({
  coordinator: Coordinator.Coordinator,
  auth: Auth.Auth,
  config: ApiConfig.ApiConfig,
})

export const layerEntities = HttpApiBuilder.group(Api.Api, "entities", (handlers) =>
  Effect.map(context, ({ auth, config, coordinator }) => {
    const limitBytes = ApiConfig.maxBodyBytes(config)
    return handlers
      .handleRaw("upsert", ({ request }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const raw = yield* readJson(request, limitBytes)
          yield* checkBatch(raw, "entities", config.maxBatch)
          const body = yield* decode(UpsertEnvelope)(raw)
          yield* auth.authorizeTenant(tenant, body.tenant)
          const { ids, failed } = yield* upsertDecoded(coordinator, tenant, body.entities, writeOptions(body))
          // Nothing written: the request as a whole was bad input.
          if (ids.length === 0 && failed.length > 0) return yield* failed[0]!.error
          return failed.length === 0 ? { ids } : { ids, failed: failed.map(failureItem) }
        }),
      )
      .handleRaw("get", ({ path }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const id = yield* decodeEntityId(path.id)
          return yield* coordinator.get(tenant, id)
        }),
      )
      .handleRaw("remove", ({ path }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const id = yield* decodeEntityId(path.id)
          yield* coordinator.remove(tenant, id)
          return { id, deleted: true as const }
        }),
      )
      .handleRaw("scan", ({ urlParams }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          let limit: number | undefined
          if (urlParams.limit !== undefined) {
            limit = /^\d{1,9}$/.test(urlParams.limit) ? Number(urlParams.limit) : Number.NaN
            if (!(limit >= 1 && limit <= config.maxK)) {
              return yield* new InvalidInput({
                field: "limit",
                message: `limit: must be an integer between 1 and ${config.maxK}`,
              })
            }
          }
          const request = yield* decode(ScanRequest)({
            ...(urlParams.start === undefined ? {} : { start: urlParams.start }),
            ...(urlParams.end === undefined ? {} : { end: urlParams.end }),
            ...(limit === undefined ? {} : { limit }),
            ...(urlParams.page_token === undefined ? {} : { page_token: urlParams.page_token }),
          })
          const page = yield* coordinator.scan(tenant, request)
          return {
            entities: page.entities,
            ...(page.nextPageToken === undefined ? {} : { next_page_token: page.nextPageToken }),
          }
        }),
      )
  }),
)

export const layerEdges = HttpApiBuilder.group(Api.Api, "edges", (handlers) =>
  Effect.map(context, ({ auth, config, coordinator }) => {
    const limitBytes = ApiConfig.maxBodyBytes(config)
    return handlers
      .handleRaw("put", ({ request }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const raw = yield* readJson(request, limitBytes)
          yield* checkBatch(raw, "edges", config.maxBatch)
          const body = yield* decode(Api.PutEdgesBody)(raw)
          yield* auth.authorizeTenant(tenant, body.tenant)
          yield* coordinator.putEdges(tenant, body.edges, writeOptions(body))
          return { count: body.edges.length }
        }),
      )
      .handleRaw("remove", ({ request }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const raw = yield* readJson(request, limitBytes)
          yield* checkBatch(raw, "edges", config.maxBatch)
          const body = yield* decode(Api.DeleteEdgesBody)(raw)
          yield* auth.authorizeTenant(tenant, body.tenant)
          yield* coordinator.removeEdges(tenant, body.edges, writeOptions(body))
          return { count: body.edges.length }
        }),
      )
  }),
)

export const layerQuery = HttpApiBuilder.group(Api.Api, "query", (handlers) =>
  Effect.map(context, ({ auth, config, coordinator }) => {
    const limitBytes = ApiConfig.maxBodyBytes(config)
    return handlers
      .handleRaw("query", ({ request }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const raw = yield* readJson(request, limitBytes)
          const { consistency, tenant: named, ...fields } = yield* decode(Api.QueryBody)(raw)
          yield* auth.authorizeTenant(tenant, named)
          yield* checkAtMost("k", fields.k, config.maxK)
          const results = yield* coordinator.query(
            tenant,
            QueryRequest.make(fields, { disableValidation: true }),
            readOptions({ consistency }),
          )
          return { results }
        }),
      )
      .handleRaw("traverse", ({ request }) =>
        Effect.gen(function* () {
          const tenant = yield* Api.CurrentTenant
          const raw = yield* readJson(request, limitBytes)
          const { consistency, tenant: named, ...fields } = yield* decode(Api.TraverseBody)(raw)
          yield* auth.authorizeTenant(tenant, named)
          yield* checkAtMost("limit", fields.limit, config.maxK)
          const results = yield* coordinator.traverse(
            tenant,
            TraverseRequest.make(fields, { disableValidation: true }),
            readOptions({ consistency }),
          )
          return { results }
        }),
      )
  }),
)

/** Every /v1 handler and the authentication middleware. */
export const layer = Layer.mergeAll(layerEntities, layerEdges, layerQuery, layerAuthentication)
