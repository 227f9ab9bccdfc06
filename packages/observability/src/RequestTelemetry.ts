/**
 * Everything a surface records about one request, in one wrapper: a server span (continuing
 * the caller's trace), the request counter and latency histogram, and the access-log line
 * written inside the span so it carries the trace id. The status is computed by the caller
 * from the exit, because the error → status table lives in packages/api.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as AccessLog from "./AccessLog.js"
import * as Metrics from "./Metrics.js"
import * as Tracing from "./Tracing.js"

export interface RequestInfo extends Tracing.RequestSpanInfo {
  readonly surface: Metrics.Surface
  readonly requestId: string
  readonly method?: string | undefined
}

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
    Effect.flatMap(Clock.currentTimeNanos, (start) =>
      Effect.onExit(handler, (exit) =>
        Effect.gen(function* () {
          const end = yield* Clock.currentTimeNanos
          const seconds = Number(end - start) / 1e9
          const status = statusOf(exit)
          const bytesOut = exit._tag === "Success" && bytesOutOf !== undefined ? bytesOutOf(exit.value) : undefined
          yield* Effect.annotateCurrentSpan("allidb.status", String(status))
          if (bytesOut !== undefined) yield* Tracing.annotateResponseBytes(bytesOut)
          yield* Metrics.recordRequest({ surface: info.surface, route: info.route, status, durationSeconds: seconds })
          yield* AccessLog.log({
            surface: info.surface,
            route: info.route,
            method: info.method,
            status,
            durationMs: seconds * 1000,
            tenant: info.tenant,
            requestId: info.requestId,
            bytesIn: info.requestBytes,
            bytesOut,
          })
        }),
      ).pipe(Tracing.withRequestSpan(info)),
    )
