/**
 * Liveness and readiness. `/health` answers as soon as the listener is up and
 * never needs a key (AlliDB-compatible shape); `/ready` is 503 until start-up
 * recovery (WAL replay, index load) is done and again while draining.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { VERSION } from "./Version.js"

export type Phase = "starting" | "ready" | "draining"

export interface ReadinessShape {
  readonly phase: Effect.Effect<Phase>
  readonly set: (phase: Phase) => Effect.Effect<void>
}

export class Readiness extends Context.Tag("@allidb/allidbd/Readiness")<Readiness, ReadinessShape>() {}

export const layerReadiness: Layer.Layer<Readiness> = Layer.effect(
  Readiness,
  Effect.map(Ref.make<Phase>("starting"), (ref) => ({ phase: Ref.get(ref), set: (p) => Ref.set(ref, p) })),
)

// A JSON number, as AlliDB clients expect; millisecond resolution.
const nowNanos = (): number => Date.now() * 1_000_000

export const healthBody = (phase: Phase) => ({
  healthy: true,
  status: phase === "ready" ? "SERVING" : phase === "starting" ? "STARTING" : "DRAINING",
  timestamp_nanos: nowNanos(),
  version: VERSION,
})

/** GET /health and GET /ready. */
export const routes: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Readiness> = HttpLayerRouter.use((router) =>
  Effect.gen(function* () {
    const readiness = yield* Readiness
    yield* router.add(
      "GET",
      "/health",
      Effect.map(readiness.phase, (phase) => HttpServerResponse.unsafeJson(healthBody(phase))),
    )
    yield* router.add(
      "GET",
      "/ready",
      Effect.map(readiness.phase, (phase) =>
        HttpServerResponse.unsafeJson({ ready: phase === "ready", phase }, { status: phase === "ready" ? 200 : 503 }),
      ),
    )
  }),
)

/** GET /debug/sleep?ms=N — a deliberately slow request for the graceful-shutdown tests. */
export const debugRoutes: Layer.Layer<never, never, HttpLayerRouter.HttpRouter> = HttpLayerRouter.use((router) =>
  router.add(
    "GET",
    "/debug/sleep",
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const ms = Math.min(60_000, Math.max(0, Number(new URL(request.url, "http://x").searchParams.get("ms") ?? 1000)))
      yield* Effect.sleep(Duration.millis(Number.isFinite(ms) ? ms : 1000))
      return HttpServerResponse.unsafeJson({ slept_ms: ms })
    }),
  ),
)
