import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Metrics from "../src/Metrics.js"
import * as PrometheusText from "../src/PrometheusText.js"

const scrape = Effect.flatMap(Metrics.Prometheus, (p) => p.render).pipe(Effect.map(PrometheusText.parse))

describe("Metrics", () => {
  it.scoped("exposes Effect metrics as Prometheus text and counters move", () =>
    Effect.gen(function* () {
      const route = "/v1/entities/:id"
      const labels = { surface: "http", route, status: "200" }
      const before = yield* scrape
      const base = PrometheusText.value(before, "allidb_requests_total", labels) ?? 0
      yield* Metrics.recordRequest({ surface: "http", route, status: 200, durationSeconds: 0.003 })
      yield* Metrics.recordRequest({ surface: "http", route, status: 200, durationSeconds: 0.2 })
      yield* Metrics.recordRequest({ surface: "grpc", route: "allidb.AlliDB/Query", status: "OK", durationSeconds: 1 })
      yield* Metrics.recordRateLimited("compat")
      yield* Metrics.recordRejected("http", "unauthenticated")
      // Arbitrary Effect metrics of other packages are exported too, including non-incremental `_total` counters.
      yield* Metric.increment(Metric.counter("allidb_test_other_total", { description: "a plain Effect counter" }))
      yield* Metric.set(Metric.gauge("allidb_test_gauge_bytes").pipe(Metric.tagged("tier", "0")), 42)

      const families = yield* scrape
      assert.strictEqual(PrometheusText.value(families, "allidb_requests_total", labels), base + 2)
      assert.strictEqual(
        PrometheusText.value(families, "allidb_requests_total", { surface: "grpc", status: "OK" }),
        1,
      )
      const byName = new Map(families.map((f) => [f.name, f]))
      assert.strictEqual(byName.get("allidb_requests_total")?.type, "counter")
      assert.strictEqual(byName.get("allidb_test_other_total")?.type, "counter")
      assert.strictEqual(byName.get("allidb_test_gauge_bytes")?.type, "gauge")
      assert.strictEqual(PrometheusText.value(families, "allidb_test_gauge_bytes", { tier: "0" }), 42)
      assert.strictEqual(byName.get("allidb_request_duration_seconds")?.type, "histogram")
      assert.strictEqual(
        PrometheusText.value(families, "allidb_request_duration_seconds_count", { surface: "http", route }),
        base + 2,
      )
      // 0.003 s lands at or below the 0.004 bucket, 0.2 s does not.
      const le004 = PrometheusText.value(families, "allidb_request_duration_seconds_bucket", {
        surface: "http",
        route,
        le: "0.004",
      })
      assert.isTrue(le004 !== undefined && le004 >= 1)
      assert.strictEqual(PrometheusText.value(families, "allidb_rate_limited_total", { surface: "compat" }), 1)
      assert.strictEqual(
        PrometheusText.value(families, "allidb_rejected_requests_total", { surface: "compat", reason: "rate_limited" }),
        1,
      )
      assert.strictEqual(
        PrometheusText.value(families, "allidb_rejected_requests_total", { reason: "unauthenticated" }),
        1,
      )
      // The resource names the service and the node.
      assert.deepInclude(byName.get("target_info")?.samples[0]?.labels ?? {}, {
        service_name: "allidbd",
        service_instance_id: "node-test",
      })
    }).pipe(Effect.provide(Metrics.layer({ nodeId: "node-test" }))),
  )

  it.scoped("GET /metrics serves text/plain version 0.0.4 through the router", () =>
    Effect.gen(function* () {
      const app = yield* HttpLayerRouter.toHttpEffect(
        Layer.mergeAll(Metrics.route).pipe(Layer.provide(Metrics.layer({ nodeId: "n1" }))),
      )
      yield* Metrics.recordRequest({ surface: "rpc", route: "Query", status: "Success", durationSeconds: 0.01 })
      const request = HttpServerRequest.fromWeb(new Request("http://localhost/metrics"))
      const response = yield* app.pipe(Effect.provideService(HttpServerRequest.HttpServerRequest, request))
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers["content-type"], Metrics.contentType)
      const web = HttpServerResponse.toWeb(response)
      const families = PrometheusText.parse(yield* Effect.promise(() => web.text()))
      assert.isTrue((PrometheusText.value(families, "allidb_requests_total", { surface: "rpc" }) ?? 0) >= 1)
    }),
  )

  it("route labels are capped so raw paths cannot explode the series count", () => {
    for (let i = 0; i < Metrics.maxRouteLabels + 10; i++) Metrics.routeLabel(`/raw/${i}`)
    assert.strictEqual(Metrics.routeLabel("/raw/never-seen"), "other")
  })
})

describe("PrometheusText.parse", () => {
  it("accepts a well-formed exposition", () => {
    const families = PrometheusText.parse(
      [
        "# HELP a_total things",
        "# TYPE a_total counter",
        'a_total{x="1",y="q\\"uote\\\\n"} 3',
        "# TYPE h histogram",
        'h_bucket{le="0.1"} 1',
        'h_bucket{le="+Inf"} 2',
        "h_sum 0.5",
        "h_count 2",
        "",
      ].join("\n"),
    )
    assert.deepStrictEqual(
      families.map((f) => [f.name, f.type, f.samples.length]),
      [
        ["a_total", "counter", 1],
        ["h", "histogram", 4],
      ],
    )
    assert.strictEqual(families[0].samples[0].labels.y, 'q"uote\\n')
  })

  it("rejects malformed lines", () => {
    const bad = [
      "a{x=1} 1", // unquoted label value
      'a{x="1"} one', // bad value
      "1a 2", // bad metric name
      "# TYPE a wobble", // bad type
      'a{x="1" 1', // unterminated labels
      "a 1\nb 1\na 2", // interleaved family
      "# TYPE h histogram\nh_bucket 1", // bucket without le
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1', // not cumulative
      "a 1\n# TYPE a counter", // TYPE after samples
    ]
    for (const text of bad) assert.throws(() => PrometheusText.parse(text), PrometheusText.ParseError, undefined, text)
  })
})
