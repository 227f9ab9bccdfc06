/**
 * The wiring the app does, in miniature: an HttpLayerRouter served by NodeHttpServer on the
 * Tls service's server factory (HTTPS + mTLS), with the /metrics route and the Tracing layer.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Https from "node:https"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Metrics from "../src/Metrics.js"
import * as PrometheusText from "../src/PrometheusText.js"
import * as Tls from "../src/Tls.js"
import * as Tracing from "../src/Tracing.js"

const genCerts = fileURLToPath(new URL("../../../scripts/gen-certs", import.meta.url))
let dir = ""
const read = (name: string) => Fs.readFileSync(Path.join(dir, name))

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-wiring-"))
  execFileSync(genCerts, [dir], { stdio: "pipe" })
})
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

/** Answers with the attributes of the platform's HTTP server span (`null` when there is none). */
const answerSpanAttributes = Effect.map(Effect.option(Effect.currentSpan), (span) =>
  HttpServerResponse.unsafeJson(
    Option.match(span, {
      onNone: () => null,
      onSome: (s) => Object.fromEntries([...s.attributes].map(([k, v]) => [k, String(v)])),
    }),
  ),
)
const spanRoutes = Layer.mergeAll(
  HttpLayerRouter.add("GET", "/span", answerSpanAttributes),
  HttpLayerRouter.add("GET", "/default", answerSpanAttributes),
)

/** Turns the platform's HTTP span back on for /span only, to check header redaction on it. */
const platformSpanOnForSpanRoute = Layer.scopedDiscard(
  Effect.locallyScopedWith(
    HttpMiddleware.currentTracerDisabledWhen,
    (disabled) => (request) => (request.url === "/span" ? false : disabled(request)),
  ),
)

const get = (port: number, path: string, headers: Record<string, string> = {}, withCert = true) =>
  Effect.async<{ status: number; contentType: string; body: string }, Error>((resume) => {
    const req = Https.request(
      {
        host: "127.0.0.1",
        port,
        path,
        headers,
        ca: read("ca.pem"),
        ...(withCert ? { cert: read("client.pem"), key: read("client-key.pem") } : {}),
        agent: false,
        timeout: 5000,
      },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (c: string) => {
          body += c
        })
        res.on("end", () =>
          resume(
            Effect.succeed({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"]), body }),
          ),
        )
      },
    )
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", (e) => resume(Effect.fail(e)))
    req.end()
  })

describe("wiring", () => {
  it.scopedLive("serves /metrics over HTTPS with mTLS from the Tls server factory; API keys are redacted on spans", () =>
    Effect.gen(function* () {
      const settings: Tls.Settings = {
        enabled: true,
        certFile: Path.join(dir, "server.pem"),
        keyFile: Path.join(dir, "server-key.pem"),
        caFile: Path.join(dir, "ca.pem"),
        clientAuth: "require",
      }
      const ServerLive = Layer.unwrapEffect(
        Effect.map(Tls.Tls, (tls) => NodeHttpServer.layer(tls.createHttpServer, { port: 0, host: "127.0.0.1" })),
      )
      const AppLive = HttpLayerRouter.serve(Layer.mergeAll(Metrics.route, spanRoutes), {
        disableLogger: true,
        disableListenLog: true,
      }).pipe(
        Layer.provide(Metrics.layer({ nodeId: "wired" })),
        Layer.provideMerge(ServerLive),
        Layer.provide(Tls.layer(settings)),
        Layer.provide(platformSpanOnForSpanRoute),
        Layer.provide(Tracing.layer({ nodeId: "wired" })),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))),
        Layer.provide(Logger.remove(Logger.defaultLogger)),
      )
      const context = yield* Layer.build(AppLive)
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "TcpAddress" ? address.port : 0

      yield* Metrics.recordRequest({ surface: "http", route: "/v1/wired", status: 200, durationSeconds: 0.001 })
      const metrics = yield* get(port, "/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.contentType, Metrics.contentType)
      const families = PrometheusText.parse(metrics.body)
      assert.strictEqual(PrometheusText.value(families, "allidb_requests_total", { route: "/v1/wired" }), 1)
      assert.isDefined(PrometheusText.value(families, "allidb_tls_certificate_expiry_timestamp_seconds"))

      const refused = yield* Effect.either(get(port, "/metrics", {}, false))
      assert.isTrue(Either.isLeft(refused))

      // Tracing.layer turns the platform's per-request span off: the API surfaces make their own.
      assert.strictEqual((yield* get(port, "/default", { "x-other": "visible" })).body, "null")
      const span = yield* get(port, "/span", { "x-allidb-api-key": "secret-key-123", "x-other": "visible" })
      const attributes = JSON.parse(span.body) as Record<string, string>
      assert.notInclude(span.body, "secret-key-123")
      assert.strictEqual(attributes["http.request.header.x-other"], "visible")
      assert.isDefined(attributes["http.request.header.x-allidb-api-key"])
    }),
  )
})
