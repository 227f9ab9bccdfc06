import { Coordinator } from "@allidb/cluster"
import { entityId, StorageFailure, tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import { Metrics as ObservabilityMetrics } from "@allidb/observability"
import { call, externalAddress, fakeCoordinator, start } from "./support/TestServer.js"

const keys = {
  apiKeys: [
    { key: "alpha-key-0001", tenant: tenantId("alpha") },
    { key: "beta-key-0002", tenant: tenantId("beta") },
  ],
}
const A = "alpha-key-0001"
const B = "beta-key-0002"

/** A server with two keyed tenants over fresh fakes. */
const keyed = (config: Parameters<typeof start>[1] = {}) =>
  Effect.gen(function* () {
    const { layer, state } = yield* fakeCoordinator
    const server = yield* start(layer, { ...keys, ...config })
    return { ...server, state }
  })

const expectError = (
  answer: { readonly status: number; readonly body: { code?: string; field?: string; error?: string } },
  status: number,
  code: string,
  field?: string,
) => {
  assert.strictEqual(answer.status, status, JSON.stringify(answer.body))
  assert.strictEqual(answer.body.code, code, JSON.stringify(answer.body))
  assert.isString(answer.body.error)
  if (field !== undefined) assert.strictEqual(answer.body.field, field, JSON.stringify(answer.body))
}

/** A Coordinator whose every call runs `behaviour`; the rest of the shape is never reached in these tests. */
const coordinatorWith = (behaviour: Effect.Effect<never, StorageFailure>) =>
  Layer.succeed(Coordinator.Coordinator, {
    upsert: () => behaviour,
    get: () => behaviour,
    remove: () => behaviour,
    putEdges: () => behaviour,
    removeEdges: () => behaviour,
    query: () => behaviour,
    traverse: () => behaviour,
    scan: () => behaviour,
  })

describe("native HTTP /v1: authentication", () => {
  it.live("missing or unknown key → 401; each key sees only its tenant", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      expectError(yield* call(s.url, "GET", "/v1/entities/a"), 401, "UNAUTHENTICATED")
      expectError(yield* call(s.url, "GET", "/v1/entities/a", { key: "nope-nope-nope" }), 401, "UNAUTHENTICATED")
      expectError(yield* call(s.url, "POST", "/v1/query", { body: { vector: [1], k: 1 } }), 401, "UNAUTHENTICATED")
      const up = yield* call(s.url, "POST", "/v1/entities", { key: A, body: { entities: [{ id: "a", vector: [1, 0] }] } })
      assert.strictEqual(up.status, 200)
      assert.strictEqual((yield* call(s.url, "GET", "/v1/entities/a", { key: A })).status, 200)
      expectError(yield* call(s.url, "GET", "/v1/entities/a", { key: B }), 404, "NOT_FOUND")
      const q = yield* call(s.url, "POST", "/v1/query", { key: B, body: { vector: [1, 0], k: 5 } })
      assert.strictEqual(q.status, 200)
      assert.deepStrictEqual(q.body.results, [])
      assert.isTrue(s.state.writes.every((w) => w.caller === "alpha"))
    }).pipe(Effect.scoped),
  )

  it.live("a body naming another tenant → 403 before anything is written", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      const entities = [{ id: "a" }]
      expectError(
        yield* call(s.url, "POST", "/v1/entities", { key: A, body: { entities, tenant: "beta" } }),
        403,
        "PERMISSION_DENIED",
      )
      expectError(
        yield* call(s.url, "POST", "/v1/query", { key: A, body: { vector: [1], k: 1, tenant: "beta" } }),
        403,
        "PERMISSION_DENIED",
      )
      expectError(
        yield* call(s.url, "POST", "/v1/edges", {
          key: A,
          body: { edges: [{ from: "a", to: "b", relation: "r" }], tenant: "beta" },
        }),
        403,
        "PERMISSION_DENIED",
      )
      assert.strictEqual(s.state.writes.length, 0)
      const own = yield* call(s.url, "POST", "/v1/entities", { key: A, body: { entities, tenant: "alpha" } })
      assert.strictEqual(own.status, 200)
    }).pipe(Effect.scoped),
  )

  it.live("with no keys: loopback clients act as tenant default, others get 401", () =>
    Effect.gen(function* () {
      const { layer, state } = yield* fakeCoordinator
      const s = yield* start(layer, {})
      const up = yield* call(s.url, "POST", "/v1/entities", { body: { entities: [{ id: "x" }] } })
      assert.strictEqual(up.status, 200)
      assert.strictEqual(state.writes[0]!.caller, "default")
      const external = externalAddress()
      if (external !== undefined) {
        const far = yield* call(`http://${external}:${s.port}`, "GET", "/v1/entities/x")
        expectError(far, 401, "UNAUTHENTICATED")
      }
    }).pipe(Effect.scoped),
  )
})

describe("native HTTP /v1: routes", () => {
  it.live("upsert, get, scan with paging, delete", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      const entities = ["c", "a", "d", "b", "e"].map((id, i) => ({
        id,
        type: "doc",
        vector: [1, i],
        metadata: { n: i, tag: "t", ok: true },
        importance: 0.5,
        chunks: [{ id: `${id}-1`, text: `text of ${id}` }],
        edges: [{ to: "a", relation: "see", weight: 0.5 }],
      }))
      const up = yield* call(s.url, "POST", "/v1/entities", {
        key: A,
        body: { entities, consistency: "QUORUM", wait: true },
      })
      assert.deepStrictEqual(up.body, { ids: ["c", "a", "d", "b", "e"] })
      const got = yield* call(s.url, "GET", "/v1/entities/d", { key: A })
      assert.strictEqual(got.body.id, "d")
      assert.deepStrictEqual(got.body.vector, [1, 2])
      assert.deepStrictEqual(got.body.chunks, [{ id: "d-1", text: "text of d" }])
      assert.deepStrictEqual(got.body.edges, [{ to: "a", relation: "see", weight: 0.5 }])
      assert.isNumber(got.body.created_at)

      const page1 = yield* call(s.url, "GET", "/v1/entities?limit=2", { key: A })
      assert.deepStrictEqual(
        page1.body.entities.map((e: { id: string }) => e.id),
        ["a", "b"],
      )
      const token = page1.body.next_page_token as string
      assert.isString(token)
      const page2 = yield* call(s.url, "GET", `/v1/entities?limit=2&page_token=${encodeURIComponent(token)}`, { key: A })
      assert.deepStrictEqual(
        page2.body.entities.map((e: { id: string }) => e.id),
        ["c", "d"],
      )
      const ranged = yield* call(s.url, "GET", "/v1/entities?start=b&end=d", { key: A })
      assert.deepStrictEqual(
        ranged.body.entities.map((e: { id: string }) => e.id),
        ["b", "c"],
      )
      assert.isUndefined(ranged.body.next_page_token)

      const del = yield* call(s.url, "DELETE", "/v1/entities/d", { key: A })
      assert.deepStrictEqual(del.body, { id: "d", deleted: true })
      expectError(yield* call(s.url, "GET", "/v1/entities/d", { key: A }), 404, "NOT_FOUND")
      expectError(yield* call(s.url, "DELETE", "/v1/entities/d", { key: A }), 404, "NOT_FOUND")
    }).pipe(Effect.scoped),
  )

  it.live("edges, query with expansion, traverse", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      yield* call(s.url, "POST", "/v1/entities", {
        key: A,
        body: {
          entities: [
            { id: "q", type: "doc", vector: [1, 0] },
            { id: "r", type: "doc", vector: [0, 1] },
            { id: "s", type: "note", vector: [0.7, 0.7] },
          ],
        },
      })
      const put = yield* call(s.url, "POST", "/v1/edges", {
        key: A,
        body: {
          edges: [
            { from: "q", to: "r", relation: "cites", weight: 0.5 },
            { from: "r", to: "s", relation: "cites" },
            { from: "q", to: "ghost", relation: "cites" },
          ],
        },
      })
      assert.deepStrictEqual(put.body, { count: 3 })
      const traverse = yield* call(s.url, "POST", "/v1/traverse", {
        key: A,
        body: { from: ["q"], hops: 2, relations: ["cites"], direction: "out" },
      })
      assert.strictEqual(traverse.status, 200, JSON.stringify(traverse.body))
      const reached = traverse.body.results.map((r: { id: string; depth: number; weight: number }) => [
        r.id,
        r.depth,
        r.weight,
      ])
      assert.deepStrictEqual(reached, [
        ["r", 1, 0.5],
        ["ghost", 1, 1],
        ["s", 2, 0.5],
      ])
      assert.deepStrictEqual(traverse.body.results[2].path.map((p: { to: string }) => p.to), ["r", "s"])

      const removed = yield* call(s.url, "DELETE", "/v1/edges", {
        key: A,
        body: { edges: [{ from: "q", to: "ghost", relation: "cites" }] },
      })
      assert.deepStrictEqual(removed.body, { count: 1 })
      const q = yield* call(s.url, "GET", "/v1/entities/q", { key: A })
      assert.deepStrictEqual(q.body.edges.map((e: { to: string }) => e.to), ["r"])

      const query = yield* call(s.url, "POST", "/v1/query", {
        key: A,
        body: {
          vector: [1, 0.1],
          k: 2,
          ef: 50,
          expand: { hops: 1, factor: 2, direction: "both" },
          filter: { type: "doc" },
          weights: { vector: 1 },
          include_vectors: false,
          explain: false,
        },
      })
      assert.strictEqual(query.status, 200, JSON.stringify(query.body))
      assert.deepStrictEqual(
        query.body.results.map((r: { id: string }) => r.id),
        ["q", "r"],
      )
      assert.isNumber(query.body.results[0].score)
    }).pipe(Effect.scoped),
  )
})

describe("native HTTP /v1: bad input is a 400 naming the field and rule", () => {
  it.live("entity, query, traverse and scan fields", () =>
    Effect.gen(function* () {
      const s = yield* keyed({ maxK: 100, maxBatch: 3 })
      const post = (path: string, body: unknown) => call(s.url, "POST", path, { key: A, body })
      expectError(yield* post("/v1/entities", { entities: [{ id: "" }] }), 400, "INVALID_ARGUMENT", "entities[0].id")
      const long = yield* post("/v1/entities", { entities: [{ id: "x".repeat(257) }] })
      expectError(long, 400, "INVALID_ARGUMENT", "entities[0].id")
      assert.include(long.body.error, "256 bytes")
      expectError(
        yield* post("/v1/entities", { entities: [{ id: "v", vector: [1, "x"] }] }),
        400,
        "INVALID_ARGUMENT",
        "entities[0].vector[1]",
      )
      expectError(
        yield* post("/v1/entities", { entities: [{ id: "v", importance: 2 }] }),
        400,
        "INVALID_ARGUMENT",
        "entities[0].importance",
      )
      expectError(yield* post("/v1/entities", { entities: [] , consistency: "SOME" }), 400, "INVALID_ARGUMENT", "consistency")
      expectError(yield* post("/v1/entities", {}), 400, "INVALID_ARGUMENT", "entities")
      const batch = yield* post("/v1/entities", { entities: [{ id: "1" }, { id: "2" }, { id: "3" }, { id: "4" }] })
      expectError(batch, 400, "INVALID_ARGUMENT", "entities")
      assert.include(batch.body.error, "at most 3")

      // the tenant's dimension is fixed by its first vector; both numbers are named
      assert.strictEqual((yield* post("/v1/entities", { entities: [{ id: "d3", vector: [1, 2, 3] }] })).status, 200)
      const dim = yield* post("/v1/entities", { entities: [{ id: "d2", vector: [1, 2] }] })
      expectError(dim, 400, "INVALID_ARGUMENT", "entities[0].vector")
      assert.include(dim.body.error, "2")
      assert.include(dim.body.error, "3")
      // a mixed batch writes the good entities and lists the bad ones with request indices
      const mixed = yield* post("/v1/entities", {
        entities: [{ id: "ok1" }, { id: "" }, { id: "bad-dim", vector: [1] }],
      })
      assert.strictEqual(mixed.status, 200)
      assert.deepStrictEqual(mixed.body.ids, ["ok1"])
      assert.deepStrictEqual(
        mixed.body.failed.map((f: { id: string; field: string; code: string }) => [f.id, f.field, f.code]),
        [
          ["", "entities[1].id", "INVALID_ARGUMENT"],
          ["bad-dim", "entities[2].vector", "INVALID_ARGUMENT"],
        ],
      )

      expectError(yield* post("/v1/query", { vector: [1, 2, 3], k: 0 }), 400, "INVALID_ARGUMENT", "k")
      expectError(yield* post("/v1/query", { vector: [1, 2, 3], k: 101 }), 400, "INVALID_ARGUMENT", "k")
      expectError(yield* post("/v1/query", { vector: [], k: 1 }), 400, "INVALID_ARGUMENT", "vector")
      expectError(yield* post("/v1/query", { vector: [1, 2], k: 1 }), 400, "INVALID_ARGUMENT", "vector")
      expectError(
        yield* post("/v1/query", { vector: [1, 2, 3], k: 1, expand: { hops: 9 } }),
        400,
        "INVALID_ARGUMENT",
        "expand.hops",
      )
      expectError(yield* post("/v1/traverse", { from: [], hops: 1 }), 400, "INVALID_ARGUMENT", "from")
      expectError(yield* post("/v1/traverse", { from: ["a"], hops: 1, limit: 1000 }), 400, "INVALID_ARGUMENT", "limit")
      expectError(
        yield* post("/v1/edges", { edges: [{ from: "a", to: "b", relation: "r", weight: 1.5 }] }),
        400,
        "INVALID_ARGUMENT",
        "edges[0].weight",
      )
      expectError(yield* call(s.url, "GET", "/v1/entities?limit=abc", { key: A }), 400, "INVALID_ARGUMENT", "limit")
      expectError(yield* call(s.url, "GET", "/v1/entities?limit=0", { key: A }), 400, "INVALID_ARGUMENT", "limit")
      // a parameter HttpApi itself refuses (given twice) gets the same error shape
      expectError(yield* call(s.url, "GET", "/v1/entities?limit=1&limit=2", { key: A }), 400, "INVALID_ARGUMENT", "limit")
      expectError(
        yield* call(s.url, "GET", `/v1/entities/${"y".repeat(300)}`, { key: A }),
        400,
        "INVALID_ARGUMENT",
        "id",
      )
      expectError(
        yield* call(s.url, "POST", "/v1/query", { key: A, body: "{not json", raw: true }),
        400,
        "INVALID_ARGUMENT",
        "body",
      )
      expectError(
        yield* call(s.url, "POST", "/v1/query", { key: A, body: "[1,2]", raw: true }),
        400,
        "INVALID_ARGUMENT",
      )
    }).pipe(Effect.scoped),
  )
})

describe("native HTTP /v1: limits", () => {
  it.live("a body over the limit → 413, with or without Content-Length", () =>
    Effect.gen(function* () {
      const s = yield* keyed({ maxBodyMb: 1 / 1024 }) // 1 KiB
      const big = { entities: [{ id: "a", vector: Array.from({ length: 400 }, () => 0.5) }] }
      expectError(yield* call(s.url, "POST", "/v1/entities", { key: A, body: big }), 413, "RESOURCE_EXHAUSTED")
      const text = JSON.stringify(big)
      const stream = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(text))
          controller.close()
        },
      })
      const chunked = yield* call(s.url, "POST", "/v1/entities", { key: A, body: stream, raw: true })
      expectError(chunked, 413, "RESOURCE_EXHAUSTED")
      assert.strictEqual(s.state.writes.length, 0)
    }).pipe(Effect.scoped),
  )

  it.live("per-key rate limit → 429 with Retry-After; other keys unaffected", () =>
    Effect.gen(function* () {
      const s = yield* keyed({ rateLimitPerSec: 1, rateLimitBurst: 2 })
      const statuses: Array<number> = []
      for (let i = 0; i < 3; i++) statuses.push((yield* call(s.url, "GET", "/v1/entities?limit=1", { key: A })).status)
      assert.deepStrictEqual(statuses, [200, 200, 429])
      const limited = yield* call(s.url, "GET", "/v1/entities?limit=1", { key: A })
      expectError(limited, 429, "RESOURCE_EXHAUSTED")
      assert.strictEqual(limited.headers.get("retry-after"), "1")
      assert.strictEqual((yield* call(s.url, "GET", "/v1/entities?limit=1", { key: B })).status, 200)
    }).pipe(Effect.scoped),
  )

  it.live("a request over its deadline → 504 and its work is interrupted", () =>
    Effect.gen(function* () {
      const interrupted = yield* Deferred.make<void>()
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
      const s = yield* start(coordinatorWith(slow), { ...keys, requestTimeoutMs: 200 })
      const answer = yield* call(s.url, "POST", "/v1/query", { key: A, body: { vector: [1], k: 1 } })
      expectError(answer, 504, "DEADLINE_EXCEEDED")
      yield* Deferred.await(interrupted).pipe(Effect.timeout("2 seconds"))
    }).pipe(Effect.scoped),
  )

  it.live("a client that disconnects interrupts its request", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const slow = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
      )
      const s = yield* start(coordinatorWith(slow), { ...keys, requestTimeoutMs: 60_000 })
      const controller = new AbortController()
      const pending = yield* Effect.fork(
        call(s.url, "GET", "/v1/entities/a", { key: A, signal: controller.signal }).pipe(Effect.exit),
      )
      yield* Deferred.await(started).pipe(Effect.timeout("2 seconds"))
      controller.abort()
      yield* Deferred.await(interrupted).pipe(Effect.timeout("2 seconds"))
      yield* pending.await
    }).pipe(Effect.scoped),
  )

  it.live("internal errors → 500 with a request id and no details; X-Request-Id is echoed", () =>
    Effect.gen(function* () {
      const failing = Effect.fail(new StorageFailure({ operation: "get", message: "EIO on /secret/path" }))
      const s = yield* start(coordinatorWith(failing), keys)
      const answer = yield* call(s.url, "GET", "/v1/entities/a", { key: A, headers: { "x-request-id": "req-42" } })
      expectError(answer, 500, "INTERNAL")
      assert.strictEqual(answer.body.request_id, "req-42")
      assert.strictEqual(answer.headers.get("x-request-id"), "req-42")
      assert.notInclude(JSON.stringify(answer.body), "secret")

      const defect = yield* start(coordinatorWith(Effect.dieMessage("bug: /secret/stack")), keys)
      const crashed = yield* call(defect.url, "GET", "/v1/entities/a", { key: A })
      expectError(crashed, 500, "INTERNAL")
      assert.isString(crashed.body.request_id)
      assert.strictEqual(crashed.headers.get("x-request-id"), crashed.body.request_id)
      assert.notInclude(JSON.stringify(crashed.body), "secret")
    }).pipe(Effect.scoped),
  )
})

describe("request telemetry", () => {
  it.live("every request is counted under its route template and status", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      const counter = (route: string, status: string) =>
        Metric.value(
          Metric.taggedWithLabels(ObservabilityMetrics.requestsTotal, [
            MetricLabel.make("surface", "http"),
            MetricLabel.make("route", route),
            MetricLabel.make("status", status),
          ]),
        )
      const before = yield* counter("/v1/entities/:id", "404")
      yield* call(s.url, "GET", "/v1/entities/nope-1", { key: A })
      yield* call(s.url, "GET", "/v1/entities/nope-2", { key: A })
      const after = yield* counter("/v1/entities/:id", "404")
      assert.strictEqual(after.count - before.count, 2)
      const unauthorized = yield* counter("/v1/entities/:id", "401")
      yield* call(s.url, "GET", "/v1/entities/x")
      assert.strictEqual((yield* counter("/v1/entities/:id", "401")).count - unauthorized.count, 1)
    }).pipe(Effect.scoped),
  )
})

describe("OpenAPI and docs", () => {
  it.live("/openapi.json describes every route; /docs serves a page", () =>
    Effect.gen(function* () {
      const s = yield* keyed()
      const spec = yield* call(s.url, "GET", "/openapi.json")
      assert.strictEqual(spec.status, 200)
      const paths = Object.keys(spec.body.paths).sort()
      assert.deepStrictEqual(paths, ["/v1/edges", "/v1/entities", "/v1/entities/{id}", "/v1/query", "/v1/traverse"])
      assert.property(spec.body.paths["/v1/entities"].post.responses, "400")
      assert.property(spec.body.paths["/v1/entities/{id}"].get.responses, "404")
      assert.property(spec.body.components.securitySchemes, "apiKey")
      const docs = yield* call(s.url, "GET", "/docs")
      assert.strictEqual(docs.status, 200)
      assert.include(String(docs.body), "<html")
      assert.strictEqual(entityId("x"), "x")
    }).pipe(Effect.scoped),
  )
})
