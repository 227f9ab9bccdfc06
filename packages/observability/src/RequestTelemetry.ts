/**
 * Everything a surface records about one request, in one wrapper: a server span (continuing
 * the caller's trace), the request counter and latency histogram, and the access-log line
 * written inside the span so it carries the trace id. The status is computed by the caller
 * from the exit, because the error → status table lives in packages/api.
 */
import * as Clock from "effect/Clock"
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

/**
 * Wraps a request handler. `statusOf` maps the handler's exit to the status label (HTTP
 * code, gRPC status name, RPC outcome); `bytesOutOf` optionally measures the response.
 */
export const observe =
  <A, E>(
    info: RequestInfo,
    statusOf: (exit: Exit.Exit<A, E>) => number | string,
    bytesOutOf?: (value: A) => number | undefined,
  ) =>
  <R>(handler: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(Clock.currentTimeNanos, (start) => {
      const learned: Learned = { tenant: info.tenant }
      return Effect.onExit(Effect.locally(handler, currentRequest, learned), (exit) =>
        Effect.gen(function* () {
          const end = yield* Clock.currentTimeNanos
          const seconds = Number(end - start) / 1e9
          const status = statusOf(exit)
          const bytesOut = exit._tag === "Success" && bytesOutOf !== undefined ? bytesOutOf(exit.value) : undefined
          yield* Effect.annotateCurrentSpan("allidb.status", String(status))
          if (learned.tenant !== undefined && info.tenant === undefined) {
            yield* Effect.annotateCurrentSpan("allidb.tenant", learned.tenant)
          }
          if (bytesOut !== undefined) yield* Tracing.annotateResponseBytes(bytesOut)
          yield* Metrics.recordRequest({ surface: info.surface, route: info.route, status, durationSeconds: seconds })
          yield* AccessLog.log({
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
