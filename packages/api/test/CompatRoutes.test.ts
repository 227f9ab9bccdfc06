/**
 * The AlliDB-compatible REST routes through a real HTTP server and fetch,
 * over a fake Coordinator and the real Auth. Live clock (deadline tests).
 */
import { request as httpRequest } from "node:http"
import { StorageFailure } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { startRest } from "./CompatHarness.js"
import { KEY_ACME, KEY_OTHER } from "./GrpcHarness.js"

const entity = (id: string, vector?: ReadonlyArray<number>, extra: object = {}) => ({
  entity_id: id,
  entity_type: "doc",
  ...(vector === undefined ? {} : { embeddings: [{ version: 1, vector, timestamp_nanos: 1 }] }),
  ...extra,
})

/** Polls a condition set asynchronously by the server (bounded: 2 s). */
const eventually = (condition: () => boolean): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      if (condition()) return
      yield* Effect.sleep("20 millis")
    }
    assert.fail("condition not reached within 2 s")
  })

describe("AlliDB-compatible REST", () => {
  it.scopedLive("POST /entity upserts for the key's tenant and writes incoming edges on their sources", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest()
      const answer = yield* post(
        "/entity",
        {
          entity: entity("b", [1, 0], {
            incoming_edges: [{ from_entity: "a", to_entity: "b", relation: "cites", weight: 0.5, timestamp_nanos: 0 }],
            outgoing_edges: [{ from_entity: "b", to_entity: "c", relation: "links", weight: 0.25, timestamp_nanos: 0 }],
            chunks: [{ chunk_id: "c1", text: "hi", metadata: {} }],
            importance: 0.5,
            tenant_id: "acme",
            created_at_nanos: 1700000000123000000,
          }),
          consistency_level: "CONSISTENCY_ALL",
          trace_id: "t1",
        },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(answer.body, { success: true, entity_id: "b" })
      assert.strictEqual(fake.entity("acme", "b")?.createdAt, 1700000000123)
      assert.deepStrictEqual(
        fake.entity("acme", "a")?.edges?.map((e) => [e.to, e.relation, e.weight]),
        [["b", "cites", 0.5]],
      )
      assert.deepStrictEqual(
        fake.calls.map((c) => [c.op, c.tenant, c.consistency]),
        [
          ["upsert", "acme", "ALL"],
          ["putEdges", "acme", "ALL"],
        ],
      )
    }))

  it.scopedLive("refuses missing or unknown keys with 401 and other tenants with 403", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest()
      const missing = yield* post("/entity", { entity: entity("a") })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual(missing.body.code, "UNAUTHENTICATED")
      assert.isString(missing.body.error)
      const unknown = yield* post("/query", { query_vector: [1, 0] }, { apiKey: "wrong" })
      assert.strictEqual(unknown.status, 401)
      const foreign = yield* post("/entity", { entity: entity("a", undefined, { tenant_id: "other" }) }, { apiKey: KEY_ACME })
      assert.strictEqual(foreign.status, 403)
      assert.strictEqual(foreign.body.code, "PERMISSION_DENIED")
      const foreignBatch = yield* post(
        "/entities/batch",
        { entities: [entity("x"), entity("y", undefined, { tenant_id: "other" })] },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(foreignBatch.status, 403)
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("keyless mode accepts loopback clients as tenant default", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest({ config: { apiKeys: [] } })
      const answer = yield* post("/entity", { entity: entity("a", [1, 0]) })
      assert.strictEqual(answer.status, 200)
      assert.isDefined(fake.entity("default", "a"))
    }))

  it.scopedLive("answers bad input with 400 naming the field and the rule", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest()
      const cases: Array<[string, unknown, string]> = [
        ["/entity", { entity: { entity_id: "" } }, "entity.entity_id"],
        ["/entity", {}, "entity"],
        ["/entity", { entity: entity("a"), consistency_level: "TWO" }, "consistency_level"],
        ["/entity", { entity: entity("a", [1, 0]), consistency_level: 5 }, "consistency_level"],
        ["/entity", { entity: { entity_id: "a", embeddings: [{ vector: [] }] } }, "entity.embeddings[0].vector"],
        ["/entity", { entity: { entity_id: "a", created_at_nanos: -5 } }, "entity.created_at_nanos"],
        ["/entity", { entity: { entity_id: "a", importance: 1.5 } }, "entity.importance"],
        ["/entity", { entity: { entity_id: "a", incoming_edges: [{ relation: "r" }] } }, "entity.incoming_edges[0].from_entity"],
        ["/entities/batch", { entities: [entity("ok"), { entity_id: "x".repeat(300) }] }, "entities[1].entity_id"],
        ["/entities/batch", { entities: "nope" }, "entities"],
        ["/query", { query_vector: [] }, "query_vector"],
        ["/query", { query_vector: [1, "x"] }, "query_vector[1]"],
        ["/query", { query_vector: [1, 0], k: 0 }, "k"],
        ["/query", { query_vector: [1, 0], k: 2.5 }, "k"],
        ["/query", { query_vector: [1, 0], expand_factor: 0 }, "expand_factor"],
        ["/query", [1, 2, 3], "body"],
      ]
      for (const [path, body, field] of cases) {
        const answer = yield* post(path, body, { apiKey: KEY_ACME })
        assert.strictEqual(answer.status, 400, `${path} ${JSON.stringify(body).slice(0, 80)}`)
        assert.strictEqual(answer.body.code, "INVALID_ARGUMENT")
        assert.strictEqual(answer.body.field, field, JSON.stringify(answer.body))
        assert.include(String(answer.body.error), field)
      }
      const malformed = yield* post("/entity", undefined, { apiKey: KEY_ACME, raw: "{\"entity\": " })
      assert.strictEqual(malformed.status, 400)
      assert.strictEqual(malformed.body.field, "body")
      const empty = yield* post("/entity", undefined, { apiKey: KEY_ACME, raw: "" })
      assert.strictEqual(empty.status, 400)
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("a vector of another dimension is a 400 naming both numbers", () =>
    Effect.gen(function* () {
      const { post } = yield* startRest({ fake: { dimension: 3 } })
      const answer = yield* post("/entity", { entity: entity("a", [1, 0]) }, { apiKey: KEY_ACME })
      assert.strictEqual(answer.status, 400)
      assert.include(String(answer.body.error), "2")
      assert.include(String(answer.body.error), "3")
    }))

  it.scopedLive("POST /entities/batch reports ids and counts; a batch over the limit is a 400", () =>
    Effect.gen(function* () {
      const { post } = yield* startRest({ fake: { dimension: 2 }, config: { maxBatch: 4 } })
      const answer = yield* post(
        "/entities/batch",
        { entities: [entity("a", [1, 0]), entity("b", [1, 0, 0]), entity("c")], consistency_level: "QUORUM" },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(answer.body.entity_ids, ["a", "c"])
      assert.strictEqual(answer.body.success, false)
      assert.strictEqual(answer.body.success_count, 2)
      assert.strictEqual(answer.body.failure_count, 1)
      assert.include(String(answer.body.error_message), "b:")
      const all = yield* post("/entities/batch", { entities: [entity("d", [0, 1])] }, { apiKey: KEY_ACME })
      assert.deepStrictEqual(all.body, { success: true, entity_ids: ["d"], success_count: 1, failure_count: 0 })
      const tooMany = yield* post(
        "/entities/batch",
        { entities: ["1", "2", "3", "4", "5"].map((id) => entity(id)) },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(tooMany.status, 400)
      assert.strictEqual(tooMany.body.field, "entities")
    }))

  it.scopedLive("POST /query answers the caller's nearest entities in the AlliDB shape", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest()
      yield* post(
        "/entities/batch",
        { entities: [entity("near", [1, 0.1]), entity("mid", [1, 1]), entity("far", [0, 1])] },
        { apiKey: KEY_ACME },
      )
      yield* post("/entity", { entity: entity("theirs", [1, 0]) }, { apiKey: KEY_OTHER })
      const answer = yield* post(
        "/query",
        { query_vector: [1, 0], k: 2, expand_factor: 3, consistency_level: "ONE", trace_id: "tr-1" },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(answer.status, 200)
      const results = answer.body.results as Array<{ entity_id: string; score: number; entity: Record<string, unknown> }>
      assert.deepStrictEqual(
        results.map((r) => r.entity_id),
        ["near", "mid"],
      )
      assert.strictEqual(answer.body.total_results, 2)
      assert.strictEqual(answer.body.trace_id, "tr-1")
      assert.deepStrictEqual(results[0].entity, {
        entity_id: "near",
        tenant_id: "acme",
        entity_type: "doc",
        embeddings: [{ version: 1, vector: [1, 0.1], timestamp_nanos: 1700000000000000000 }],
        outgoing_edges: [],
        incoming_edges: [],
        chunks: [],
        created_at_nanos: 1700000000000000000,
        updated_at_nanos: 1700000000000000000,
      })
      const call = fake.calls.find((c) => c.op === "query")
      assert.strictEqual(call?.request?.expand?.factor, 3)
      assert.strictEqual(call?.consistency, "ONE")
      const defaults = yield* post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
      assert.strictEqual(defaults.body.total_results, 3)
      assert.match(String(defaults.body.trace_id), /^[0-9a-f]{32}$/)
      const last = fake.calls.filter((c) => c.op === "query")[1]
      assert.strictEqual(last.request?.k, 10)
      assert.strictEqual(last.request?.expand?.factor, 2)
    }))

  it.scopedLive("a body over the limit is a 413, with or without Content-Length", () =>
    Effect.gen(function* () {
      const { post, port, fake } = yield* startRest({ config: { maxBodyMb: 1 / 1024 } })
      const big = { entity: entity("a", Array.from({ length: 400 }, (_, i) => i / 400)) }
      const declared = yield* post("/entity", big, { apiKey: KEY_ACME })
      assert.strictEqual(declared.status, 413)
      assert.strictEqual(declared.body.code, "RESOURCE_EXHAUSTED")
      // Chunked: the size is only known while streaming; the rest is drained so the 413 arrives.
      const chunked = yield* Effect.promise(
        () =>
          new Promise<{ status: number; body: string } | "cut">((resolve) => {
            const req = httpRequest(
              {
                host: "127.0.0.1",
                port,
                method: "POST",
                path: "/entity",
                headers: { "content-type": "application/json", "x-allidb-api-key": KEY_ACME },
              },
              (res) => {
                let body = ""
                res.on("data", (chunk) => {
                  body += chunk
                })
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
                res.on("error", () => resolve("cut"))
              },
            )
            req.on("error", () => resolve("cut"))
            const text = JSON.stringify(big)
            for (let i = 0; i < text.length; i += 256) req.write(text.slice(i, i + 256))
            req.end()
          }),
      )
      if (chunked === "cut") assert.fail("the connection was cut instead of answering 413")
      assert.strictEqual(chunked.status, 413)
      assert.strictEqual(JSON.parse(chunked.body).code, "RESOURCE_EXHAUSTED")
      assert.strictEqual(fake.calls.length, 0)
      const small = yield* post("/entity", { entity: entity("small", [1, 0]) }, { apiKey: KEY_ACME })
      assert.strictEqual(small.status, 200)
    }))

  it.scopedLive("the request deadline answers 504 and interrupts the work", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest({ fake: { slowQuery: true }, config: { requestTimeoutMs: 150 } })
      const answer = yield* post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
      assert.strictEqual(answer.status, 504)
      assert.strictEqual(answer.body.code, "DEADLINE_EXCEEDED")
      yield* eventually(() => fake.state.queryInterrupted === 1)
    }))

  it.scopedLive("a client that disconnects interrupts its request", () =>
    Effect.gen(function* () {
      const { post, fake } = yield* startRest({ fake: { slowQuery: true } })
      const controller = new AbortController()
      const inFlight = yield* Effect.fork(
        Effect.either(post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME, signal: controller.signal })),
      )
      yield* eventually(() => fake.state.queryStarted === 1)
      controller.abort()
      yield* eventually(() => fake.state.queryInterrupted === 1)
      yield* inFlight.await
    }))

  it.scopedLive("the per-key rate limit answers 429 with Retry-After", () =>
    Effect.gen(function* () {
      const { post } = yield* startRest({ config: { rateLimitPerSec: 0.5, rateLimitBurst: 2 } })
      const statuses: Array<number> = []
      let retryAfter: string | null = null
      for (let i = 0; i < 3; i++) {
        const answer = yield* post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
        statuses.push(answer.status)
        if (answer.status === 429) {
          retryAfter = answer.headers.get("retry-after")
          assert.strictEqual(answer.body.code, "RESOURCE_EXHAUSTED")
        }
      }
      assert.deepStrictEqual(statuses, [200, 200, 429])
      assert.isNotNull(retryAfter)
      assert.isAtLeast(Number(retryAfter), 1)
      // Another key has its own bucket.
      const other = yield* post("/query", { query_vector: [1, 0] }, { apiKey: KEY_OTHER })
      assert.strictEqual(other.status, 200)
    }))

  it.scopedLive("internal errors answer 500 with a request id and no details", () =>
    Effect.gen(function* () {
      const { post } = yield* startRest({
        override: { upsert: () => Effect.fail(new StorageFailure({ operation: "wal", message: "secret path /data/x" })) },
      })
      const answer = yield* post("/entity", { entity: entity("a") }, { apiKey: KEY_ACME })
      assert.strictEqual(answer.status, 500)
      assert.strictEqual(answer.body.code, "INTERNAL")
      assert.notInclude(JSON.stringify(answer.body), "secret")
      assert.isString(answer.body.request_id)
      assert.strictEqual(answer.headers.get("x-request-id"), answer.body.request_id)
      const defect = yield* startRest({ override: { query: () => Effect.dieMessage("bug: hidden") } })
      const died = yield* defect.post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
      assert.strictEqual(died.status, 500)
      assert.notInclude(JSON.stringify(died.body), "hidden")
      assert.isString(died.body.request_id)
    }))
})
