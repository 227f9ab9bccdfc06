import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Logging from "../src/Logging.js"
import * as Tracing from "../src/Tracing.js"

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
}
interface OtlpExport {
  readonly resourceSpans: ReadonlyArray<{
    resource: { attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }> }
    scopeSpans: ReadonlyArray<{ spans: ReadonlyArray<OtlpSpan> }>
  }>
}

/** A minimal OTLP/HTTP receiver: collects the JSON bodies POSTed to /v1/traces. */
const receiver = Effect.acquireRelease(
  Effect.async<{ url: string; bodies: Array<OtlpExport>; contentTypes: Array<string>; server: Http.Server }>(
    (resume) => {
      const bodies: Array<OtlpExport> = []
      const contentTypes: Array<string> = []
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          if (req.method === "POST" && req.url === "/v1/traces") {
            contentTypes.push(String(req.headers["content-type"]))
            bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport)
          }
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, bodies, contentTypes, server }))
      })
    },
  ),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    }),
)

const attr = (attributes: OtlpSpan["attributes"], key: string): unknown => {
  const found = attributes.find((a) => a.key === key)?.value
  return found === undefined ? undefined : Object.values(found)[0]
}

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const callerSpanId = "00f067aa0ba902b7"

/** A request as the API surfaces will run it: a request span with stage children and a log line. */
const request = (parent: Option.Option<import("effect/Tracer").ExternalSpan>) =>
  Effect.gen(function* () {
    yield* Effect.logInfo("inside the request")
    yield* Effect.sleep("1 millis").pipe(Effect.withSpan("QueryExecutor.ann"))
    yield* Effect.void.pipe(Effect.withSpan("QueryExecutor.expand"))
    yield* Tracing.annotateResponseBytes(321)
    return yield* Effect.currentSpan
  }).pipe(
    Tracing.withRequestSpan({ surface: "http", route: "/v1/query", tenant: "acme", requestBytes: 42, parent }),
  )

describe("Tracing", () => {
  it.scopedLive("exports the request span tree over OTLP/HTTP under the caller's trace id", () =>
    Effect.gen(function* () {
      const otlp = yield* receiver
      const lines: Array<string> = []
      const config = ConfigProvider.fromMap(
        new Map([
          ["OTEL_EXPORTER_OTLP_ENDPOINT", `${otlp.url}/`],
          ["OTEL_SERVICE_NAME", "allidb-test"],
        ]),
      )
      const parent = Tracing.parentFromHeaders({ TraceParent: `00-${traceId}-${callerSpanId}-01` })
      assert.isTrue(Option.isSome(parent))
      const span = yield* request(parent).pipe(
        Effect.provide(
          Layer.mergeAll(
            Tracing.layer({ nodeId: "node-7" }),
            Logger.replace(
              Logger.defaultLogger,
              Logging.jsonLogger("node-7", (line) => lines.push(line)),
            ),
          ).pipe(Layer.provide(Layer.setConfigProvider(config))),
        ),
      )
      // Closing the layer flushed the batch processor.
      const spans = otlp.bodies.flatMap((b) => b.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
      const root = spans.find((s) => s.name === "http /v1/query")
      assert.isDefined(root)
      assert.strictEqual(root?.traceId, traceId)
      assert.strictEqual(root?.parentSpanId, callerSpanId)
      assert.strictEqual(root?.spanId, span.spanId)
      assert.strictEqual(attr(root?.attributes ?? [], "allidb.tenant"), "acme")
      assert.strictEqual(attr(root?.attributes ?? [], "allidb.route"), "/v1/query")
      assert.strictEqual(Number(attr(root?.attributes ?? [], "allidb.request.bytes")), 42)
      assert.strictEqual(Number(attr(root?.attributes ?? [], "allidb.response.bytes")), 321)
      const children = spans.filter((s) => s.parentSpanId === root?.spanId).map((s) => s.name)
      assert.sameMembers(children, ["QueryExecutor.ann", "QueryExecutor.expand"])
      for (const s of spans) assert.strictEqual(s.traceId, traceId)
      assert.isTrue(otlp.contentTypes.every((t) => t.startsWith("application/json")))
      const resource = otlp.bodies[0].resourceSpans[0].resource.attributes
      assert.strictEqual(attr(resource, "service.name"), "allidb-test")
      assert.strictEqual(attr(resource, "service.instance.id"), "node-7")
      // The log line written inside the request carries the trace and the request span.
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      const inside = logged.find((l) => l.message === "inside the request")
      assert.strictEqual(inside?.trace_id, traceId)
      assert.strictEqual(inside?.span_id, root?.spanId)
    }),
  )

  it.scopedLive("without an endpoint nothing is exported and Effect's own tracer stays in place", () =>
    Effect.gen(function* () {
      const otlp = yield* receiver
      const nativeTracer = Effect.runSync(Effect.tracer)
      const config = ConfigProvider.fromMap(new Map([["OTEL_SERVICE_NAME", "x"]]))
      const [tracer, span] = yield* Effect.zip(Effect.tracer, request(Tracing.parentFromTraceId(traceId))).pipe(
        Effect.provide(
          Layer.merge(
            Tracing.layer({ nodeId: "n" }).pipe(Layer.provide(Layer.setConfigProvider(config))),
            Logger.remove(Logger.defaultLogger),
          ),
        ),
      )
      assert.strictEqual(tracer, nativeTracer)
      assert.strictEqual(span.traceId, traceId)
      assert.strictEqual(otlp.bodies.length, 0)
    }),
  )

  it.effect("export settings follow the OTEL_* variables", () =>
    Effect.gen(function* () {
      const read = (entries: ReadonlyArray<[string, string]>) =>
        Tracing.exportSettings.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(entries))))
      assert.isTrue(Option.isNone(yield* read([])))
      assert.deepStrictEqual(
        yield* read([["OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"]]),
        Option.some({ tracesUrl: "http://c:4318/v1/traces", serviceName: "allidbd" }),
      )
      assert.deepStrictEqual(
        yield* read([
          ["OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"],
          ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"],
          ["OTEL_SERVICE_NAME", "svc"],
        ]),
        Option.some({ tracesUrl: "http://t:1/custom", serviceName: "svc" }),
      )
      assert.isTrue(
        Option.isNone(
          yield* read([
            ["OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"],
            ["OTEL_SDK_DISABLED", "true"],
          ]),
        ),
      )
      assert.isTrue(
        Option.isNone(
          yield* read([
            ["OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"],
            ["OTEL_TRACES_EXPORTER", "none"],
          ]),
        ),
      )
    }),
  )

  it("parses traceparent and trace ids strictly", () => {
    const ok = Tracing.parseTraceparent(`00-${traceId.toUpperCase()}-${callerSpanId}-01`)
    assert.deepStrictEqual(
      Option.map(ok, (s) => [s.traceId, s.spanId, s.sampled]),
      Option.some([traceId, callerSpanId, true]),
    )
    for (const bad of [
      `00-${"0".repeat(32)}-${callerSpanId}-01`,
      `00-${traceId}-${"0".repeat(16)}-01`,
      `00-${traceId.slice(1)}-${callerSpanId}-01`,
      `ff-${traceId}-${callerSpanId}-01`,
      "garbage",
    ]) {
      assert.isTrue(Option.isNone(Tracing.parseTraceparent(bad)), bad)
    }
    assert.isTrue(Option.isNone(Tracing.parentFromHeaders({})))
    assert.isTrue(Option.isNone(Tracing.parentFromTraceId("xyz")))
    const fromId = Tracing.parentFromTraceId(traceId)
    assert.deepStrictEqual(
      Option.map(fromId, (s) => s.traceId),
      Option.some(traceId),
    )
  })
})
