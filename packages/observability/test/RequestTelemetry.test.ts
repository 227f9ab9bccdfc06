import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as AccessLog from "../src/AccessLog.js"
import * as Logging from "../src/Logging.js"
import * as Metrics from "../src/Metrics.js"
import * as PrometheusText from "../src/PrometheusText.js"
import * as RequestTelemetry from "../src/RequestTelemetry.js"
import * as Tracing from "../src/Tracing.js"

const capture = () => {
  const lines: Array<Record<string, unknown>> = []
  const layer = Logger.replace(
    Logger.defaultLogger,
    Logging.jsonLogger("n1", (line) => lines.push(JSON.parse(line) as Record<string, unknown>)),
  )
  return { lines, layer }
}

const httpStatus = (exit: Exit.Exit<unknown, string>): number =>
  Exit.isSuccess(exit) ? 200 : Exit.isInterrupted(exit) ? 499 : 400

describe("AccessLog", () => {
  it.effect("writes one JSON line with exactly the access fields", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      yield* AccessLog.log({
        surface: "compat",
        route: "/entity",
        method: "POST",
        status: 201,
        durationMs: 12.34567,
        tenant: "acme",
        requestId: "req-1",
        bytesIn: 100,
      })
      assert.strictEqual(lines.length, 1)
      const { time, ...rest } = lines[0]
      assert.isString(time)
      assert.deepStrictEqual(rest, {
        level: "INFO",
        node: "n1",
        message: "access",
        log: "access",
        surface: "compat",
        route: "/entity",
        method: "POST",
        status: 201,
        duration_ms: 12.346,
        request_id: "req-1",
        tenant: "acme",
        bytes_in: 100,
      })
    }).pipe(Effect.provide(layer))
  })

  it.effect("keeps a well-formed caller request id and generates one otherwise", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* AccessLog.requestId("abc-123"), "abc-123")
      const generated = yield* AccessLog.requestId("bad id with spaces")
      assert.match(generated, /^[0-9a-f]{16}$/)
      assert.match(yield* AccessLog.requestId("x".repeat(65)), /^[0-9a-f]{16}$/)
      // Seeded Random gives a replayable id.
      const a = yield* AccessLog.requestId(undefined).pipe(Effect.withRandom(Random.make(7)))
      const b = yield* AccessLog.requestId(undefined).pipe(Effect.withRandom(Random.make(7)))
      assert.strictEqual(a, b)
    }),
  )
})

describe("RequestTelemetry.observe", () => {
  it.effect("spans, counts, times and logs a request inside its trace", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      const prometheus = yield* Metrics.Prometheus
      const route = "/v1/tenants/:tenant/query"
      const before = PrometheusText.parse(yield* prometheus.render)
      const base = PrometheusText.value(before, "allidb_requests_total", { surface: "http", route, status: "200" }) ?? 0
      const parent = Tracing.parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
      const handler = Effect.gen(function* () {
        yield* Effect.sleep("250 millis")
        yield* Effect.logDebug("stage done")
        return "result-body"
      })
      const fiber = yield* handler.pipe(
        RequestTelemetry.observe(
          { surface: "http", route, tenant: "acme", requestId: "r-9", requestBytes: 12, parent, method: "POST" },
          httpStatus,
          (body: string) => body.length,
        ),
        Effect.fork,
      )
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(yield* fiber.await.pipe(Effect.flatten), "result-body")

      const access = lines.find((l) => l.message === "access")
      assert.isDefined(access)
      assert.strictEqual(access?.trace_id, "0af7651916cd43dd8448eb211c80319c")
      assert.strictEqual(access?.duration_ms, 250)
      assert.strictEqual(access?.status, 200)
      assert.strictEqual(access?.tenant, "acme")
      assert.strictEqual(access?.bytes_in, 12)
      assert.strictEqual(access?.bytes_out, "result-body".length)
      const after = PrometheusText.parse(yield* prometheus.render)
      assert.strictEqual(
        PrometheusText.value(after, "allidb_requests_total", { surface: "http", route, status: "200" }),
        base + 1,
      )
      // 0.25 s falls in the 0.256 bucket, not the 0.128 one.
      const bucket = (le: string) =>
        PrometheusText.value(after, "allidb_request_duration_seconds_bucket", { surface: "http", route, le })
      assert.strictEqual((bucket("0.256") ?? 0) - (bucket("0.128") ?? 0), 1)
    }).pipe(Effect.provide(Layer.merge(layer, Metrics.layer({ nodeId: "n1" }))))
  })

  it.effect("records failures with the status the caller maps them to", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      const exit = yield* Effect.fail("bad input").pipe(
        RequestTelemetry.observe({ surface: "rpc", route: "Upsert", requestId: "r-1" }, httpStatus),
        Effect.exit,
      )
      assert.isTrue(Exit.isFailure(exit))
      const access = lines.find((l) => l.message === "access")
      assert.strictEqual(access?.status, 400)
      assert.strictEqual(access?.route, "Upsert")
      assert.isFalse("tenant" in (access ?? {}))
      assert.isString(access?.trace_id)
      assert.isTrue(Option.isNone(Option.fromNullable(access?.bytes_out)))
    }).pipe(Effect.provide(layer))
  })

  it.effect("puts the tenant a handler authenticates on the access line and the request span", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      const span = yield* Effect.gen(function* () {
        yield* Effect.void.pipe(Effect.withSpan("auth"))
        // Set from a child span: it still belongs to the request, not to the child.
        yield* RequestTelemetry.setTenant("acme").pipe(Effect.withSpan("authenticate"))
        return yield* Effect.currentSpan
      }).pipe(RequestTelemetry.observe({ surface: "grpc", route: "Query", requestId: "r-2" }, () => "OK"))
      const access = lines.find((l) => l.message === "access")
      assert.strictEqual(access?.tenant, "acme")
      assert.strictEqual(access?.status, "OK")
      assert.strictEqual(span.attributes.get("allidb.tenant"), "acme")
      // Outside a request it does nothing (and does not fail).
      yield* RequestTelemetry.setTenant("other")
    }).pipe(Effect.provide(layer))
  })
})
