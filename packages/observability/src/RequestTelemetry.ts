/**
 * Everything a surface records about one request, in one wrapper: a server span (continuing
 * the caller's trace), the request counter and latency histogram, and the access-log line
 * written inside the span so it carries the trace id. The status is computed by the caller
 * from the exit, because the error → status table lives in packages/api.
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as AccessLog from "./AccessLog.js"
import * as Metrics from "./Metrics.js"
import * as Tracing from "./Tracing.js"

export interface RequestInfo extends Tracing.RequestSpanInfo {
  readonly surface: Metrics.Surface
  readonly requestId: string
}

/**
 * What a handler learns about its request after `observe` has started it. The tenant is only
 * known once the handler has authenticated the caller, yet belongs on the access line and the
 * request span, which `observe` writes when the handler ends.
 */
interface Learned {
  tenant: string | undefined
}

const currentRequest: FiberRef.FiberRef<Learned | undefined> = FiberRef.unsafeMake<Learned | undefined>(undefined)

/**
 * Records the authenticated tenant of the request the current fiber serves (a no-op outside
 * `observe`), for its access-log line and request span.
 */
export const setTenant = (tenant: string): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(currentRequest), (learned) =>
    Effect.sync(() => {
      if (learned !== undefined) learned.tenant = tenant
    }),
  )

/** The id of the request the current fiber serves (AccessLog.currentRequestId). */
export const currentRequestId: FiberRef.FiberRef<string | undefined> = AccessLog.currentRequestId

/** Runs `effect` as the handling of request `requestId` (see `currentRequestId`). */
export const withRequestId = <A, E, R>(effect: Effect.Effect<A, E, R>, requestId: string): Effect.Effect<A, E, R> =>
  Effect.locally(effect, currentRequestId, requestId)

/**
 * Wraps a request handler. `statusOf` maps the handler's exit to the status label (HTTP
 * code, gRPC status name, RPC outcome); `bytesOutOf` optionally measures the response.
 *
 * Every request of every surface pays for this wrapper, so its bookkeeping after the handler
 * is one synchronous step (span attributes, metrics) and the access line, rather than an
 * effect per attribute and metric.
 */
export const observe =
  <A, E>(
    info: RequestInfo,
    statusOf: (exit: Exit.Exit<A, E>) => number | string,
    bytesOutOf?: (value: A) => number | undefined,
  ) =>
  <R>(handler: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.clockWith((clock) => {
      const start = clock.unsafeCurrentTimeNanos()
      const learned: Learned = { tenant: info.tenant }
      return Effect.onExit(Effect.locally(handler, currentRequest, learned), (exit) =>
        Effect.withFiberRuntime<void>((fiber) => {
          const seconds = Number(clock.unsafeCurrentTimeNanos() - start) / 1e9
          const status = statusOf(exit)
          const bytesOut = exit._tag === "Success" && bytesOutOf !== undefined ? bytesOutOf(exit.value) : undefined
          const span = fiber.currentSpan
          if (span !== undefined && span._tag === "Span") {
            span.attribute("allidb.status", String(status))
            if (learned.tenant !== undefined && info.tenant === undefined) span.attribute("allidb.tenant", learned.tenant)
            if (bytesOut !== undefined) span.attribute("allidb.response.bytes", bytesOut)
          }
          Metrics.unsafeRecordRequest({ surface: info.surface, route: info.route, status, durationSeconds: seconds })
          return AccessLog.log({
            surface: info.surface,
            route: info.route,
            method: info.method,
            status,
            durationMs: seconds * 1000,
            tenant: learned.tenant,
            requestId: info.requestId,
            bytesIn: info.requestBytes,
            bytesOut,
          })
        }),
      ).pipe(Tracing.withRequestSpan(info))
    })
