/**
 * Observability of the real allidbd, end to end: `/metrics` parses as Prometheus text and
 * its request counters move by exactly the requests made on each surface (native HTTP,
 * compatible REST, gRPC, typed RPC), query-stage, storage and index metrics move, and no
 * label carries an entity id; spans go over OTLP/HTTP to a receiver in this test, where a
 * request's span continues the caller's trace (a `traceparent` header, gRPC metadata, or a
 * compat body's `trace_id`) and holds the query stages; the access line and every other log
 * line of that request carry the same trace id.
 *
 * One server for the whole file (started once, in the layer), so the tests run in order and
 * measure counter deltas around their own requests.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as grpc from "@grpc/grpc-js"
import { Grpc } from "@allidb/api"
import { AlliDbClient } from "@allidb/client"
import { entityId, QueryRequest } from "@allidb/core"
import { PrometheusText } from "@allidb/observability"
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Allidbd from "./support/Allidbd.js"

// ---------------------------------------------------------------------------------------------
// An OTLP/HTTP (JSON) receiver.

interface OtlpAttribute {
  readonly key: string
  readonly value: Record<string, unknown>
}
interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes?: ReadonlyArray<OtlpAttribute>
}
interface OtlpExport {
  readonly resourceSpans?: ReadonlyArray<{
    readonly resource?: { readonly attributes?: ReadonlyArray<OtlpAttribute> }
    readonly scopeSpans?: ReadonlyArray<{ readonly spans?: ReadonlyArray<OtlpSpan> }>
  }>
}

interface Receiver {
  readonly url: string
  readonly spans: () => ReadonlyArray<OtlpSpan>
  readonly contentTypes: ReadonlyArray<string>
  readonly serviceNames: ReadonlySet<unknown>
}

const attr = (attributes: ReadonlyArray<OtlpAttribute> | undefined, key: string): unknown => {
  const found = attributes?.find((a) => a.key === key)?.value
  return found === undefined ? undefined : Object.values(found)[0]
}

const receiver: Effect.Effect<Receiver, never, import("effect/Scope").Scope> = Effect.acquireRelease(
  Effect.async<{ readonly receiver: Receiver; readonly server: Http.Server }>((resume) => {
    const exports: Array<OtlpExport> = []
    const contentTypes: Array<string> = []
    const serviceNames = new Set<unknown>()
    const server = Http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        if (req.method === "POST" && req.url === "/v1/traces") {
          contentTypes.push(String(req.headers["content-type"]))
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport
          for (const r of body.resourceSpans ?? []) serviceNames.add(attr(r.resource?.attributes, "service.name"))
          exports.push(body)
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(
        Effect.succeed({
          server,
          receiver: {
            url: `http://127.0.0.1:${port}`,
            spans: () =>
              exports.flatMap((e) => (e.resourceSpans ?? []).flatMap((r) => (r.scopeSpans ?? []).flatMap((s) => s.spans ?? []))),
            contentTypes,
            serviceNames,
          },
        }),
      )
    })
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void))),
).pipe(Effect.map(({ receiver }) => receiver))

// ---------------------------------------------------------------------------------------------
// The server under test.

interface Harness {
  readonly node: Allidbd.Allidbd
  readonly otlp: Receiver
  readonly grpc: grpc.Client
}

class Server extends Context.Tag("test/Observability/Server")<Server, Harness>() {}

const ServerLive = Layer.scoped(
  Server,
  Effect.gen(function* () {
    const otlp = yield* receiver
    const node = yield* Allidbd.start({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_SERVICE_NAME: "allidb-e2e",
        // Export within a fraction of a second instead of the default 5 s.
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    })
    const { client: Ctor } = Grpc.loadService()
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new Ctor(node.grpcAddress ?? "", grpc.credentials.createInsecure())),
      (c) => Effect.sync(() => c.close()),
    )
    return { node, otlp, grpc: client }
  }),
)

// ---------------------------------------------------------------------------------------------
// Requests on each surface.

const ID_PREFIX = "obs-ent-"
const vectorOf = (i: number): Array<number> => [Math.cos(i), Math.sin(i), Math.cos(2 * i), 0.5 + (i % 3) / 10]

/** Ids written by this file: metric labels must never contain one. */
const nativeEntities = Array.from({ length: 24 }, (_, i) => ({
  id: `${ID_PREFIX}${i}`,
  type: "doc",
  vector: vectorOf(i),
  edges: [{ to: `${ID_PREFIX}${(i + 1) % 24}`, relation: "next", weight: 0.5 }],
}))

interface HttpAnswer {
  readonly status: number
  readonly body: Record<string, unknown>
  readonly headers: Headers
}

const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}): Effect.Effect<HttpAnswer> =>
  Effect.promise(async () => {
    const res = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers }
  })

const metrics = (url: string): Effect.Effect<ReadonlyArray<PrometheusText.Family>> =>
  Effect.promise(async () => {
    const res = await fetch(`${url}/metrics`)
    assert.strictEqual(res.status, 200)
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/)
    // `parse` checks the grammar strictly and throws on the first bad line.
    return PrometheusText.parse(await res.text())
  })

type GrpcResult = { readonly ok: true; readonly value: Record<string, unknown> } | { readonly ok: false; readonly code: number }

type UnaryMethod = (
  message: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, value: Record<string, unknown>) => void,
) => void

const grpcCall = (
  client: grpc.Client,
  method: string,
  message: unknown,
  metadata: Record<string, string> = {},
): Effect.Effect<GrpcResult> =>
  Effect.async<GrpcResult>((resume) => {
    const md = new grpc.Metadata()
    for (const [k, v] of Object.entries(metadata)) md.set(k, v)
    const unary = (client as unknown as Record<string, UnaryMethod>)[method]
    unary.call(client, message, md, { deadline: Date.now() + 15_000 }, (error, value) =>
      resume(Effect.succeed(error === null ? { ok: true, value } : { ok: false, code: error.code })),
    )
  })

const rpc = <A, E>(url: string, f: (client: AlliDbClient.Service) => Effect.Effect<A, E>): Effect.Effect<Exit.Exit<A, E>> =>
  Effect.flatMap(AlliDbClient.AlliDbClient, f).pipe(
    Effect.exit,
    Effect.scoped,
    Effect.provide(AlliDbClient.layer({ url })),
  )

const counter = (families: ReadonlyArray<PrometheusText.Family>, name: string, labels: Record<string, string>): number =>
  PrometheusText.value(families, name, labels) ?? 0

/** Polls `f` until it returns a value (10 s at most). */
const eventually = <A>(what: string, f: () => A | undefined): Effect.Effect<A> =>
  Effect.promise(async () => {
    const deadline = Date.now() + 10_000
    for (;;) {
      const found = f()
      if (found !== undefined) return found
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  })

/** Every span below `root` in its trace (children first, by parentSpanId). */
const descendants = (spans: ReadonlyArray<OtlpSpan>, root: OtlpSpan): Array<OtlpSpan> => {
  const out: Array<OtlpSpan> = []
  const queue = [root.spanId]
  while (queue.length > 0) {
    const id = queue.shift()
    for (const s of spans) {
      if (s.traceId === root.traceId && s.parentSpanId === id) {
        out.push(s)
        queue.push(s.spanId)
      }
    }
  }
  return out
}

const logRecords = (node: Allidbd.Allidbd): Array<Record<string, unknown>> =>
  node.lines().flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

/**
 * Checks one traced request: its request span (by name) continues `traceId` (from
 * `parentSpanId` when the caller named its span), holds the query executor's span with its
 * stages below it, and every log line of the request — the access line at least — carries
 * the trace id.
 */
const checkTrace = (
  h: Harness,
  options: {
    readonly spanName: string
    readonly traceId: string
    readonly parentSpanId: string
    readonly requestId: string
    readonly surface: string
    readonly tenant: string | undefined
  },
) =>
  Effect.gen(function* () {
    const root = yield* eventually(`span ${options.spanName} in trace ${options.traceId}`, () =>
      h.otlp.spans().find((s) => s.traceId === options.traceId && s.name === options.spanName),
    )
    assert.strictEqual(root.parentSpanId, options.parentSpanId)
    assert.strictEqual(attr(root.attributes, "allidb.request_id"), options.requestId)
    if (options.tenant !== undefined) assert.strictEqual(attr(root.attributes, "allidb.tenant"), options.tenant)
    // The stage spans end before the request span, so they are exported with it or earlier.
    const below = descendants(h.otlp.spans(), root)
    const names = below.map((s) => s.name)
    const executor = below.find((s) => s.name === "QueryExecutor.query")
    assert.isDefined(executor, `no QueryExecutor.query below ${options.spanName}: ${names.join(", ")}`)
    const stages = descendants(h.otlp.spans(), executor!).map((s) => s.name)
    // ANN runs synchronously: a span when the executor makes one, else its timing on the query span.
    assert.isTrue(
      stages.includes("QueryExecutor.ann") || typeof attr(executor!.attributes, "ann.ms") === "number",
      `no ANN stage under QueryExecutor.query: ${stages.join(", ")}`,
    )
    assert.includeMembers(stages, ["QueryExecutor.expand", "QueryExecutor.fetch"], `stages: ${stages.join(", ")}`)
    for (const s of below) assert.strictEqual(s.traceId, options.traceId)

    const access = yield* eventually(`access line of ${options.requestId}`, () =>
      logRecords(h.node).find((r) => r.message === "access" && r.request_id === options.requestId),
    )
    assert.strictEqual(access.trace_id, options.traceId)
    assert.strictEqual(access.span_id, root.spanId)
    assert.strictEqual(access.surface, options.surface)
    if (options.tenant !== undefined) assert.strictEqual(access.tenant, options.tenant)
    const inside = logRecords(h.node).filter((r) => r.request_id === options.requestId)
    for (const line of inside) assert.strictEqual(line.trace_id, options.traceId, JSON.stringify(line))
  })

// ---------------------------------------------------------------------------------------------

layer(ServerLive, { excludeTestServices: true, timeout: "60 seconds" })("observability of the real allidbd", (it) => {
  it.effect("writes the data set and exports spans under the configured service name", () =>
    Effect.gen(function* () {
      const h = yield* Server
      const up = yield* post(h.node.httpUrl, "/v1/entities", { entities: nativeEntities })
      assert.strictEqual(up.status, 200, JSON.stringify(up.body))
      yield* eventually("a first export", () => (h.otlp.spans().length > 0 ? true : undefined))
      assert.isTrue(h.otlp.contentTypes.every((t) => t.startsWith("application/json")))
      assert.deepStrictEqual([...h.otlp.serviceNames], ["allidb-e2e"])
      // One request span per request: the platform's own HTTP span is off (Tracing.layer).
      const upsertSpan = yield* eventually("the upsert's request span", () =>
        h.otlp.spans().find((s) => s.name === "http /v1/entities"),
      )
      assert.strictEqual(attr(upsertSpan.attributes, "http.request.method"), "POST")
      assert.deepStrictEqual(
        h.otlp.spans().filter((s) => s.name.startsWith("http.server")).map((s) => s.name),
        [],
      )
    }),
  )

  it.effect("/metrics counts exactly the requests made on every surface and moves query, storage and index metrics", () =>
    Effect.gen(function* () {
      const h = yield* Server
      const url = h.node.httpUrl
      const before = yield* metrics(url)
      const q = vectorOf(3)

      // Native HTTP: 3 queries, 1 refused (k = 0), 1 write.
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* post(url, "/v1/query", { vector: q, k: 5, expand: { hops: 1 } })).status, 200)
      assert.strictEqual((yield* post(url, "/v1/query", { vector: q, k: 0 })).status, 400)
      assert.strictEqual((yield* post(url, "/v1/entities", { entities: [{ id: `${ID_PREFIX}100`, vector: vectorOf(100) }] })).status, 200)
      // Compatible REST: 2 queries, 1 write.
      for (let i = 0; i < 2; i++) assert.strictEqual((yield* post(url, "/query", { query_vector: q, k: 4 })).status, 200)
      const compatPut = yield* post(url, "/entity", {
        entity: { entity_id: `${ID_PREFIX}101`, embeddings: [{ version: 1, vector: vectorOf(101) }] },
      })
      assert.strictEqual(compatPut.status, 200, JSON.stringify(compatPut.body))
      // gRPC: 2 queries, 1 refused (k over the limit), 1 write, 1 health check.
      for (let i = 0; i < 2; i++) assert.isTrue((yield* grpcCall(h.grpc, "Query", { query_vector: q, k: 4 })).ok)
      const tooMany = yield* grpcCall(h.grpc, "Query", { query_vector: q, k: 1_000_000 })
      assert.deepStrictEqual(tooMany, { ok: false, code: grpc.status.INVALID_ARGUMENT })
      const grpcPut = yield* grpcCall(h.grpc, "PutEntity", {
        entity: { entity_id: `${ID_PREFIX}102`, embeddings: [{ version: "1", vector: vectorOf(102) }] },
      })
      assert.isTrue(grpcPut.ok, JSON.stringify(grpcPut))
      assert.isTrue((yield* grpcCall(h.grpc, "HealthCheck", {})).ok)
      // Typed RPC: 2 queries, 1 Get of a missing entity (NotFound).
      for (let i = 0; i < 2; i++) {
        const exit = yield* rpc(url, (c) => c.Query({ request: new QueryRequest({ vector: q, k: 3 }) }))
        assert.isTrue(Exit.isSuccess(exit), String(exit))
      }
      const missing = yield* rpc(url, (c) => c.Get({ id: entityId(`${ID_PREFIX}missing`) }))
      assert.isTrue(Exit.isFailure(missing))

      const after = yield* metrics(url)
      const delta = (name: string, labels: Record<string, string>) => counter(after, name, labels) - counter(before, name, labels)
      const requests = (surface: string, route: string, status: string) =>
        delta("allidb_requests_total", { surface, route, status })
      assert.deepStrictEqual(
        {
          httpQueryOk: requests("http", "/v1/query", "200"),
          httpQueryBad: requests("http", "/v1/query", "400"),
          httpUpsert: requests("http", "/v1/entities", "200"),
          compatQuery: requests("compat", "/query", "200"),
          compatPut: requests("compat", "/entity", "200"),
          compatAsHttp: requests("http", "/query", "200"),
          grpcQueryOk: requests("grpc", "Query", "OK"),
          grpcQueryBad: requests("grpc", "Query", "INVALID_ARGUMENT"),
          grpcPut: requests("grpc", "PutEntity", "OK"),
          grpcHealth: requests("grpc", "HealthCheck", "OK"),
          rpcQuery: requests("rpc", "Query", "OK"),
          rpcGetMissing: requests("rpc", "Get", "NOT_FOUND"),
          httpQuerySeconds: delta("allidb_request_duration_seconds_count", { surface: "http", route: "/v1/query" }),
          grpcQuerySeconds: delta("allidb_request_duration_seconds_count", { surface: "grpc", route: "Query" }),
        },
        {
          httpQueryOk: 3,
          httpQueryBad: 1,
          httpUpsert: 1,
          compatQuery: 2,
          compatPut: 1,
          compatAsHttp: 0,
          grpcQueryOk: 2,
          grpcQueryBad: 1,
          grpcPut: 1,
          grpcHealth: 1,
          rpcQuery: 2,
          rpcGetMissing: 1,
          httpQuerySeconds: 4,
          grpcQuerySeconds: 3,
        },
      )

      // Query stages: nine queries ran (3 HTTP, 2 compat, 2 gRPC, 2 RPC).
      const stage = (name: string) => delta("allidb_query_stage_seconds_count", { stage: name })
      assert.isAtLeast(stage("ann"), 9)
      assert.isAtLeast(stage("score"), 9)
      assert.isAtLeast(stage("fetch"), 9)
      // Expansion: the three native queries asked for it, compat queries always expand one hop.
      assert.isAtLeast(stage("expand"), 5)
      // Storage: three writes went through the WAL, each fsynced (sync mode "always").
      assert.isAbove(delta("allidb_wal_bytes_total", {}), 0)
      assert.isAtLeast(delta("allidb_wal_fsync_seconds_count", {}), 1)
      assert.isAbove(counter(after, "allidb_memtable_bytes", {}), counter(before, "allidb_memtable_bytes", {}))
      // Index: the tenant holds the 24 first entities plus the three written here.
      assert.strictEqual(counter(after, "allidb_index_vectors", { tenant: "default" }), nativeEntities.length + 3)

      // No label value anywhere names an entity.
      for (const family of after) {
        for (const sample of family.samples) {
          for (const [label, value] of Object.entries(sample.labels)) {
            assert.notInclude(value, ID_PREFIX, `${sample.name}{${label}="${value}"}`)
          }
        }
      }
    }),
  )

  it.effect("a native POST /v1/query continues the traceparent's trace, with its stage spans and log lines", () =>
    Effect.gen(function* () {
      const h = yield* Server
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      const callerSpan = "00f067aa0ba902b7"
      const requestId = "obs-native-1"
      const answer = yield* post(
        h.node.httpUrl,
        "/v1/query",
        { vector: vectorOf(5), k: 5, expand: { hops: 1 } },
        { traceparent: `00-${traceId}-${callerSpan}-01`, "x-request-id": requestId },
      )
      assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
      yield* checkTrace(h, {
        spanName: "http /v1/query",
        traceId,
        parentSpanId: callerSpan,
        requestId,
        surface: "http",
        tenant: "default",
      })
    }),
  )

  it.effect("a gRPC Query continues the traceparent of its metadata, or else its trace_id", () =>
    Effect.gen(function* () {
      const h = yield* Server
      const traceId = "0af7651916cd43dd8448eb211c80319c"
      const callerSpan = "b7ad6b7169203331"
      const answer = yield* grpcCall(
        h.grpc,
        "Query",
        // The metadata wins over the message's trace id.
        { query_vector: vectorOf(7), k: 5, trace_id: "11111111111111111111111111111111" },
        { traceparent: `00-${traceId}-${callerSpan}-01`, "x-request-id": "obs-grpc-1" },
      )
      assert.isTrue(answer.ok, JSON.stringify(answer))
      if (answer.ok) assert.strictEqual(answer.value.trace_id, "11111111111111111111111111111111")
      yield* checkTrace(h, {
        spanName: "grpc Query",
        traceId,
        parentSpanId: callerSpan,
        requestId: "obs-grpc-1",
        surface: "grpc",
        tenant: "default",
      })

      // Only a trace id: the request span is parented on the span id derived from it.
      const bodyTrace = "5d1f0e9a3c2b4a6f8e7d6c5b4a392817"
      const second = yield* grpcCall(
        h.grpc,
        "Query",
        { query_vector: vectorOf(8), k: 5, trace_id: bodyTrace },
        { "x-request-id": "obs-grpc-2" },
      )
      assert.isTrue(second.ok, JSON.stringify(second))
      yield* checkTrace(h, {
        spanName: "grpc Query",
        traceId: bodyTrace,
        parentSpanId: bodyTrace.slice(16),
        requestId: "obs-grpc-2",
        surface: "grpc",
        tenant: "default",
      })
    }),
  )

  it.effect("a compat POST /query continues the trace named by its body's trace_id", () =>
    Effect.gen(function* () {
      const h = yield* Server
      const traceId = "a3ce929d0e0e47364bf92f3577b34da6"
      const answer = yield* post(
        h.node.httpUrl,
        "/query",
        { query_vector: vectorOf(9), k: 5, trace_id: traceId },
        { "x-request-id": "obs-compat-1" },
      )
      assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
      assert.strictEqual(answer.body.trace_id, traceId)
      yield* checkTrace(h, {
        spanName: "compat /query",
        traceId,
        parentSpanId: traceId.slice(16),
        requestId: "obs-compat-1",
        surface: "compat",
        tenant: "default",
      })
    }),
  )
})
