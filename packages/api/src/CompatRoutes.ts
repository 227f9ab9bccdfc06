/**
 * The AlliDB-compatible REST routes (`POST /entity`, `POST /entities/batch`,
 * `POST /query`) as one HttpLayerRouter layer the app mounts beside the native
 * API. Bodies are snake_case and decoded with the Compat schemas; the work is
 * the same Compat operation gRPC runs. Errors answer `{error, code}` (plus
 * `field` / `request_id`) with the status from ErrorMapping. `GET /health` is
 * the app's.
 *
 * Telemetry is the shared middleware's, under surface "compat". A body's
 * `trace_id` names the caller's trace, but the request span starts before
 * a handler runs, so when no `traceparent` header names a parent the body
 * is read (and parsed) first and the request runs under that trace; the
 * handler then uses the body already read. Errors of that early read are
 * only answered where the handler would have read the body (after auth),
 * so every answer stays the same.
 */
import type { Coordinator } from "@allidb/cluster"
import type { TenantId } from "@allidb/core"
import { ClientError, DeadlineExceeded, InvalidInput, PayloadTooLarge } from "@allidb/core"
import { RequestTelemetry, Tracing } from "@allidb/observability"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Tracer from "effect/Tracer"
import * as ApiConfig from "./ApiConfig.js"
import * as Auth from "./Auth.js"
import * as Compat from "./Compat.js"
import * as ErrorMapping from "./ErrorMapping.js"
import * as Limits from "./Limits.js"

type Services = Coordinator.Coordinator | Auth.Auth | ApiConfig.ApiConfig | Limits.RateLimiter

type BodyError = InvalidInput | PayloadTooLarge | DeadlineExceeded

/** The request body as JSON, or why it could not be had. */
type Body = Effect.Effect<unknown, BodyError>

const parseJson = (text: string): Either.Either<unknown, InvalidInput> => {
  if (text.trim() === "") return Either.left(new InvalidInput({ field: "body", message: "body: must be a JSON object" }))
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch {
    return Either.left(new InvalidInput({ field: "body", message: "body: malformed JSON" }))
  }
}

/**
 * Reads the JSON body under the configured size limit (the shared reader: a
 * declared Content-Length over the limit is refused before reading, a longer
 * stream is cut off and drained so the client still gets its 413).
 */
const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limitBytes: number,
): Effect.Effect<unknown, InvalidInput | PayloadTooLarge> =>
  Effect.gen(function* () {
    const declared = Number(request.headers["content-length"])
    if (Number.isFinite(declared) && declared > limitBytes) return yield* new PayloadTooLarge({ limitBytes })
    const text = yield* Limits.readBodyText(request, limitBytes)
    return yield* parseJson(text)
  })

const traceIdOf = (body: unknown): string | undefined =>
  typeof body === "object" && body !== null && "trace_id" in body && typeof body.trace_id === "string"
    ? body.trace_id
    : undefined

/**
 * The body, and the caller's span it names. Without a trace header the body
 * is read now, under the request deadline like any body read, and its
 * `trace_id` (when it is a valid trace id) becomes the parent; with one, or
 * when the declared length is over the limit (the middleware answers 413
 * without reading), the handler reads it as usual.
 */
const bodyAndCaller = (
  request: HttpServerRequest.HttpServerRequest,
  config: ApiConfig.ApiConfigShape,
): Effect.Effect<{ readonly body: Body; readonly caller: Option.Option<Tracer.ExternalSpan> }> => {
  const limitBytes = ApiConfig.maxBodyBytes(config)
  const declared = Number(request.headers["content-length"])
  if (Option.isSome(Tracing.parentFromHeaders(request.headers)) || (Number.isFinite(declared) && declared > limitBytes)) {
    return Effect.succeed({ body: readJson(request, limitBytes), caller: Option.none() })
  }
  return readJson(request, limitBytes).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(config.requestTimeoutMs),
      onTimeout: () => new DeadlineExceeded({ timeoutMs: config.requestTimeoutMs, operation: "request" }),
    }),
    Effect.either,
    Effect.map((read) => ({
      body: read,
      caller: Either.match(read, {
        onLeft: () => Option.none<Tracer.ExternalSpan>(),
        onRight: (json) => {
          const traceId = traceIdOf(json)
          return traceId === undefined ? Option.none<Tracer.ExternalSpan>() : Tracing.parentFromTraceId(traceId)
        },
      }),
    })),
  )
}

const decodeBody = <A, I>(schema: Schema.Schema<A, I>, body: unknown): Effect.Effect<A, InvalidInput> =>
  Schema.decodeUnknown(schema, { errors: "first" })(body).pipe(
    Effect.mapError((error: ParseResult.ParseError) => ErrorMapping.fromParseError(error)),
  )

/**
 * One compatible route: authenticate, read and decode the body, answer JSON;
 * typed errors map through the table. The shared HTTP limits middleware
 * (Limits) wraps it: request id, per-key rate limit, body size, deadline and
 * the answer for defects are the same as on the native API.
 */
const route =
  <A, I>(
    name: string,
    schema: Schema.Schema<A, I>,
    run: (tenant: TenantId, body: A) => Effect.Effect<unknown, ClientError, Coordinator.Coordinator>,
  ) =>
  (request: HttpServerRequest.HttpServerRequest, body: Body): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Services> =>
    Effect.gen(function* () {
      const auth = yield* Auth.Auth
      const requestId = yield* FiberRef.get(Limits.currentRequestId)
      return yield* Effect.gen(function* () {
        const tenant = yield* auth.authenticate(
          request.headers[Auth.API_KEY_HEADER],
          Option.getOrUndefined(request.remoteAddress),
        )
        yield* RequestTelemetry.setTenant(tenant)
        const decoded = yield* decodeBody(schema, yield* body)
        return yield* run(tenant, decoded)
      }).pipe(
        Effect.flatMap((answer) => HttpServerResponse.json(answer)),
        Effect.catchAllCause((cause) => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure) && isClientError(failure.value)) {
            return ErrorMapping.toHttpResponse(failure.value, requestId)
          }
          // Defects and interruptions: the limits middleware answers (500 with the request id) or drops them.
          return Effect.failCause(cause).pipe(Effect.orDie)
        }),
      )
    }).pipe(Effect.withSpan(`compat.${name}`))

const isClientError = Schema.is(ClientError)

const limitsOf = Effect.map(ApiConfig.ApiConfig, (config): Compat.CompatLimits => ({
  maxBatch: config.maxBatch,
  maxK: config.maxK,
}))

/** REST batch answer: `error_message` only when something failed. */
const batchAnswer = (result: Compat.BatchPutResult) => ({
  success: result.success,
  entity_ids: result.entity_ids,
  success_count: result.success_count,
  failure_count: result.failure_count,
  ...(result.error_message !== "" ? { error_message: result.error_message } : {}),
})

/**
 * The routes as one layer. Handlers are closed over the services captured
 * when the layer is built, so the router itself needs nothing per request.
 */
export const layer: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Services> = HttpLayerRouter.use((router) =>
  Effect.gen(function* () {
    const services = yield* Effect.context<Services>()
    const limits = yield* limitsOf
    const config = yield* ApiConfig.ApiConfig
    const withLimits = yield* Limits.makeHttpMiddleware({ deadline: true, rateLimit: true, surface: "compat" })
    const add = (
      path: `/${string}`,
      handler: (
        request: HttpServerRequest.HttpServerRequest,
        body: Body,
      ) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, Services>,
    ) =>
      router.add(
        "POST",
        path,
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          Effect.flatMap(bodyAndCaller(request, config), ({ body, caller }) => {
            const limited = withLimits(Effect.provide(handler(request, body), services))
            // Without a trace header the middleware's request span is a child of the current span: the caller's.
            return Option.isSome(caller) ? Effect.withParentSpan(limited, caller.value) : limited
          }),
        ),
      )

    yield* add(
      "/entity",
      route("PutEntity", Compat.PutEntityRequest, (tenant, body) =>
        Effect.map(Compat.putEntity(tenant, body), (result) => ({ success: true, entity_id: result.entity_id })),
      ),
    )
    yield* add(
      "/entities/batch",
      route("BatchPutEntities", Compat.BatchPutEntitiesRequest, (tenant, body) =>
        Effect.map(Compat.batchPutEntities(tenant, body, limits), batchAnswer),
      ),
    )
    yield* add(
      "/query",
      route("Query", Compat.CompatQueryRequest, (tenant, body) =>
        Effect.map(Compat.query(tenant, body, limits), (answer) => ({
          results: answer.results.map((r) => ({
            entity_id: r.entity_id,
            score: r.score,
            entity: r.entity === undefined ? null : Compat.entityToJson(r.entity),
          })),
          total_results: answer.total_results,
          trace_id: answer.trace_id,
        })),
      ),
    )
  }),
)
