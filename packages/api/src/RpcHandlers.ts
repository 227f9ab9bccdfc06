/**
 * Handlers of the RPC group (each one a Coordinator call) and its
 * authentication middleware.
 *
 * The RPC server runs calls outside the HTTP request's fiber, so the peer
 * address (needed for the keyless loopback rule) is carried to the
 * middleware in a header the /rpc route sets (Routes). Its name holds a
 * per-process random suffix: message-level headers, which a client controls
 * and which override HTTP headers, cannot forge a header they cannot name.
 */
import { randomBytes } from "node:crypto"
import { Coordinator } from "@allidb/cluster"
import { type ClientError, DeadlineExceeded, DimensionMismatch, InvalidInput } from "@allidb/core"
import { Metrics, RequestTelemetry, Tracing } from "@allidb/observability"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ApiConfig from "./ApiConfig.js"
import * as Auth from "./Auth.js"
import * as ErrorMapping from "./ErrorMapping.js"
import { checkAtMost, readOptions, writeOptions } from "./HttpHandlers.js"
import * as Limits from "./Limits.js"
import { CurrentTenant, RpcAuthentication, Rpcs } from "./Rpc.js"

/** Set by the /rpc route to the HTTP peer's address; unguessable, see above. */
export const PEER_ADDRESS_HEADER = `x-allidb-peer-${randomBytes(12).toString("hex")}`

export const layerAuthentication: Layer.Layer<
  RpcAuthentication,
  never,
  Auth.Auth | Limits.RateLimiter | ApiConfig.ApiConfig
> = Layer.effect(
  RpcAuthentication,
  Effect.gen(function* () {
    const auth = yield* Auth.Auth
    const limiter = yield* Limits.RateLimiter
    const config = yield* ApiConfig.ApiConfig
    const timeout = Duration.millis(config.requestTimeoutMs)
    return RpcAuthentication.of(({ headers, next, rpc }) => {
      const call = Effect.gen(function* () {
        const apiKey = headers[Auth.API_KEY_HEADER]
        const peer = headers[PEER_ADDRESS_HEADER]
        const tenant = yield* auth
          .authenticate(apiKey, peer)
          .pipe(
            Effect.tap(RequestTelemetry.setTenant),
            Effect.tapError(() => Metrics.recordRejected("rpc", "unauthenticated")),
          )
        yield* limiter
          .take(Limits.rateLimitKey(apiKey, peer))
          .pipe(Effect.tapError(() => Metrics.recordRateLimited("rpc")))
        return yield* next.pipe(
          Effect.provideService(CurrentTenant, tenant),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new DeadlineExceeded({ timeoutMs: config.requestTimeoutMs, operation: rpc._tag }),
          }),
        )
      })
      // One span, request count and access-log line per call, labelled by RPC name.
      const requestId = Limits.pickRequestId(headers[Limits.REQUEST_ID_HEADER])
      return call.pipe(
        RequestTelemetry.observe(
          { surface: "rpc", route: rpc._tag, requestId, parent: Tracing.parentFromHeaders(headers) },
          (exit) =>
            exit._tag === "Success"
              ? "OK"
              : Cause.failureOption(exit.cause).pipe(
                  Option.map((error) => ErrorMapping.table[(error as ClientError)._tag]?.grpc ?? "UNKNOWN"),
                  Option.getOrElse(() => (Cause.isInterruptedOnly(exit.cause) ? "CANCELLED" : "INTERNAL")),
                ),
        ),
        Effect.locally(Limits.currentRequestId, requestId),
      )
    })
  }),
)

const checkBatch = (field: string, count: number, max: number) =>
  count > max
    ? Effect.fail(new InvalidInput({ field, message: `${field}: at most ${max} items per request (got ${count})` }))
    : Effect.void

export const layerHandlers = Rpcs.toLayer(
  Effect.gen(function* () {
    const coordinator = yield* Coordinator.Coordinator
    const config = yield* ApiConfig.ApiConfig
    return Rpcs.of({
      Upsert: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkBatch("entities", payload.entities.length, config.maxBatch)
          const result = yield* coordinator.upsert(tenant, payload.entities, writeOptions(payload))
          return { ids: result.ids, failed: result.failed }
        }),
      Get: (payload) =>
        Effect.flatMap(CurrentTenant, (tenant) => coordinator.get(tenant, payload.id, readOptions(payload))),
      Delete: (payload) =>
        Effect.flatMap(CurrentTenant, (tenant) => coordinator.remove(tenant, payload.id, writeOptions(payload))),
      PutEdges: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkBatch("edges", payload.edges.length, config.maxBatch)
          yield* coordinator.putEdges(tenant, payload.edges, writeOptions(payload))
        }),
      DeleteEdges: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkBatch("edges", payload.edges.length, config.maxBatch)
          yield* coordinator.removeEdges(tenant, payload.edges, writeOptions(payload))
        }),
      Query: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkAtMost("request.k", payload.request.k, config.maxK)
          return yield* coordinator.query(tenant, payload.request, readOptions(payload)).pipe(
            // The Coordinator names the request's own field; in this payload it sits under `request`.
            Effect.mapError((error) =>
              error._tag === "DimensionMismatch" && error.field === "vector"
                ? new DimensionMismatch({ field: "request.vector", expected: error.expected, actual: error.actual })
                : error,
            ),
          )
        }),
      Traverse: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkAtMost("request.limit", payload.request.limit, config.maxK)
          return yield* coordinator.traverse(tenant, payload.request, readOptions(payload))
        }),
      Scan: (payload) =>
        Effect.gen(function* () {
          const tenant = yield* CurrentTenant
          yield* checkAtMost("request.limit", payload.request.limit, config.maxK)
          return yield* coordinator.scan(tenant, payload.request, readOptions(payload))
        }),
    })
  }),
)

export const layer = Layer.mergeAll(layerHandlers, layerAuthentication)
