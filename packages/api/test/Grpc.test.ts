/**
 * The gRPC surface through a real @grpc/grpc-js client against Grpc.layer on
 * 127.0.0.1:0, over a fake Coordinator and the real Auth. Live clock: the
 * deadline tests wait for real timers.
 */
import { StorageFailure } from "@allidb/core"
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Grpc from "../src/Grpc.js"
import { callRaw, KEY_ACME, KEY_OTHER, type Outcome, startGrpc } from "./GrpcHarness.js"

const ok = (outcome: Outcome): Record<string, unknown> => {
  if (Either.isLeft(outcome)) assert.fail(`expected success, got ${outcome.left.code}: ${outcome.left.details}`)
  return outcome.right
}
const code = (outcome: Outcome): number => {
  if (Either.isRight(outcome)) assert.fail(`expected an error, got ${JSON.stringify(outcome.right)}`)
  return outcome.left.code
}
const details = (outcome: Outcome): string => (Either.isLeft(outcome) ? outcome.left.details : "")

const entity = (id: string, vector?: ReadonlyArray<number>, extra: object = {}) => ({
  entity_id: id,
  entity_type: "doc",
  embeddings: vector === undefined ? [] : [{ version: 1, vector }],
  ...extra,
})

describe("gRPC allidb.AlliDB", () => {
  it.scopedLive("binds port 0 and answers HealthCheck without a key", () =>
    Effect.gen(function* () {
      const { client, port } = yield* startGrpc()
      assert.isAbove(port, 0)
      const health = ok(yield* client.call("HealthCheck", {}))
      assert.strictEqual(health.healthy, true)
      assert.strictEqual(health.status, "SERVING")
      assert.strictEqual(health.version, "test-1")
      assert.match(String(health.timestamp_nanos), /^[1-9][0-9]{18}$/)
    }))

  it.scopedLive("PutEntity writes the entity and its incoming edges for the key's tenant", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      const answer = ok(
        yield* client.call(
          "PutEntity",
          {
            entity: entity("b", [0.5, 0.25], {
              incoming_edges: [{ from_entity: "a", relation: "cites", weight: 0.5 }],
              outgoing_edges: [{ to_entity: "c", relation: "links", weight: 0.75 }],
              chunks: [{ chunk_id: "c1", text: "hello", metadata: { lang: "en" } }],
              importance: 0.25,
              created_at_nanos: "1700000000123456789",
            }),
            consistency_level: "QUORUM",
          },
          { apiKey: KEY_ACME },
        ),
      )
      assert.deepStrictEqual(answer, { success: true, error_message: "", entity_id: "b" })
      const stored = fake.entity("acme", "b")
      assert.deepStrictEqual(stored?.vector, [0.5, 0.25])
      assert.strictEqual(stored?.createdAt, 1700000000123)
      assert.strictEqual(stored?.importance, 0.25)
      assert.deepStrictEqual(stored?.chunks?.[0].metadata, { lang: "en" })
      assert.deepStrictEqual(
        stored?.edges?.map((e) => [e.to, e.relation, e.weight]),
        [["c", "links", 0.75]],
      )
      assert.deepStrictEqual(
        fake.edges("acme").map((e) => [e.from, e.to, e.relation, e.weight]),
        [["a", "b", "cites", 0.5]],
      )
      assert.deepStrictEqual(
        fake.calls.map((c) => [c.op, c.consistency]),
        [
          ["upsert", "QUORUM"],
          ["putEdges", "QUORUM"],
        ],
      )
      assert.strictEqual(fake.entity("other", "b"), undefined)
    }))

  it.scopedLive("refuses missing and unknown keys with UNAUTHENTICATED", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      const request = { entity: entity("a", [1, 0]) }
      assert.strictEqual(code(yield* client.call("PutEntity", request)), grpc.status.UNAUTHENTICATED)
      assert.strictEqual(code(yield* client.call("PutEntity", request, { apiKey: "nope" })), grpc.status.UNAUTHENTICATED)
      assert.strictEqual(code(yield* client.call("Query", { query_vector: [1, 0] })), grpc.status.UNAUTHENTICATED)
      assert.strictEqual(code(yield* client.call("RangeScan", {})), grpc.status.UNAUTHENTICATED)
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("accepts keyless loopback clients as tenant default when no keys are configured", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ config: { apiKeys: [] } })
      ok(yield* client.call("PutEntity", { entity: entity("a", [1, 0]) }))
      assert.isDefined(fake.entity("default", "a"))
    }))

  it.scopedLive("refuses another tenant with PERMISSION_DENIED before the coordinator", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      const put = yield* client.call("PutEntity", { entity: entity("a", [1, 0], { tenant_id: "other" }) }, { apiKey: KEY_ACME })
      assert.strictEqual(code(put), grpc.status.PERMISSION_DENIED)
      const batch = yield* client.call(
        "BatchPutEntities",
        { entities: [entity("a"), entity("b", undefined, { tenant_id: "other" })] },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(code(batch), grpc.status.PERMISSION_DENIED)
      const scan = yield* client.call("RangeScan", { tenant_id: "other" }, { apiKey: KEY_ACME })
      assert.strictEqual(code(scan), grpc.status.PERMISSION_DENIED)
      assert.strictEqual(fake.calls.length, 0)
      // Naming one's own tenant is fine.
      ok(yield* client.call("RangeScan", { tenant_id: "acme" }, { apiKey: KEY_ACME }))
    }))

  it.scopedLive("answers bad input with INVALID_ARGUMENT naming the field", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      const emptyId = yield* client.call("PutEntity", { entity: entity("") }, { apiKey: KEY_ACME })
      assert.strictEqual(code(emptyId), grpc.status.INVALID_ARGUMENT)
      assert.include(details(emptyId), "entity.entity_id")
      const missing = yield* client.call("PutEntity", {}, { apiKey: KEY_ACME })
      assert.strictEqual(code(missing), grpc.status.INVALID_ARGUMENT)
      assert.include(details(missing), "entity")
      const level = yield* client.call("PutEntity", { entity: entity("a"), consistency_level: 7 }, { apiKey: KEY_ACME })
      assert.strictEqual(code(level), grpc.status.INVALID_ARGUMENT)
      assert.include(details(level), "consistency_level")
      const nan = yield* client.call("Query", { query_vector: [1, Number.NaN] }, { apiKey: KEY_ACME })
      assert.strictEqual(code(nan), grpc.status.INVALID_ARGUMENT)
      assert.include(details(nan), "query_vector[1]")
      const k = yield* client.call("Query", { query_vector: [1, 0], k: -3 }, { apiKey: KEY_ACME })
      assert.strictEqual(code(k), grpc.status.INVALID_ARGUMENT)
      assert.include(details(k), "k")
      const weight = yield* client.call(
        "PutEntity",
        { entity: entity("a", undefined, { outgoing_edges: [{ to_entity: "b", relation: "r", weight: 2 }] }) },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(code(weight), grpc.status.INVALID_ARGUMENT)
      assert.include(details(weight), "entity.outgoing_edges[0].weight")
      const dimension = yield* startGrpc({ fake: { dimension: 3 } })
      const mismatch = yield* dimension.client.call("PutEntity", { entity: entity("a", [1, 0]) }, { apiKey: KEY_ACME })
      assert.strictEqual(code(mismatch), grpc.status.INVALID_ARGUMENT)
      assert.include(details(mismatch), "3")
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("undecodable message bytes are INVALID_ARGUMENT, after auth", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      // Field 1 (entity), length-delimited, claiming 100 bytes that are not there.
      const truncated = Buffer.from([0x0a, 0x64, 0x01])
      const answer = yield* callRaw(client.client, "PutEntity", truncated, KEY_ACME)
      assert.isTrue(Either.isLeft(answer) && answer.left.code === grpc.status.INVALID_ARGUMENT)
      assert.include(Either.isLeft(answer) ? answer.left.details : "", "not a valid PutEntity request message")
      const anonymous = yield* callRaw(client.client, "PutEntity", truncated)
      assert.isTrue(Either.isLeft(anonymous) && anonymous.left.code === grpc.status.UNAUTHENTICATED)
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("BatchPutEntities reports written ids and counts refused entities", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ fake: { dimension: 2 } })
      const answer = ok(
        yield* client.call(
          "BatchPutEntities",
          {
            entities: [entity("a", [1, 0]), entity("b", [1, 0, 0]), entity("c"), entity("d", [0, 1])],
            consistency_level: "ALL",
          },
          { apiKey: KEY_ACME },
        ),
      )
      assert.deepStrictEqual(answer.entity_ids, ["a", "c", "d"])
      assert.strictEqual(answer.success, false)
      assert.strictEqual(answer.success_count, 3)
      assert.strictEqual(answer.failure_count, 1)
      assert.include(String(answer.error_message), "b:")
      assert.deepStrictEqual(fake.calls.map((c) => c.consistency), ["ALL"])
      const tooMany = yield* startGrpc({ config: { maxBatch: 2 } })
      const refused = yield* tooMany.client.call(
        "BatchPutEntities",
        { entities: [entity("a"), entity("b"), entity("c")] },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(code(refused), grpc.status.INVALID_ARGUMENT)
      assert.include(details(refused), "entities")
    }))

  it.scopedLive("Query ranks the caller's entities and answers them in the AlliDB shape", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      for (const [id, vector] of [
        ["near", [1, 0.1]],
        ["far", [0, 1]],
        ["mid", [1, 1]],
      ] as const) {
        ok(yield* client.call("PutEntity", { entity: entity(id, vector) }, { apiKey: KEY_ACME }))
      }
      ok(yield* client.call("PutEntity", { entity: entity("foreign", [1, 0]) }, { apiKey: KEY_OTHER }))
      const answer = ok(yield* client.call("Query", { query_vector: [1, 0], k: 2, trace_id: "trace-7" }, { apiKey: KEY_ACME }))
      const results = answer.results as Array<{ entity_id: string; score: number; entity: Record<string, unknown> }>
      assert.deepStrictEqual(
        results.map((r) => r.entity_id),
        ["near", "mid"],
      )
      assert.strictEqual(answer.total_results, 2)
      assert.strictEqual(answer.trace_id, "trace-7")
      assert.isAbove(results[0].score, results[1].score)
      assert.strictEqual(results[0].entity.tenant_id, "acme")
      assert.strictEqual(results[0].entity.created_at_nanos, "1700000000000000000")
      const embeddings = results[0].entity.embeddings as Array<{ version: string; vector: Array<number> }>
      assert.strictEqual(embeddings[0].version, "1")
      assert.closeTo(embeddings[0].vector[1], 0.1, 1e-6)
      const query = fake.calls.find((c) => c.op === "query")?.request
      assert.strictEqual(query?.expand?.factor, 2)
      // Proto3 zero means "unset": k defaults to 10, and a trace id is generated.
      const defaults = ok(yield* client.call("Query", { query_vector: [1, 0] }, { apiKey: KEY_ACME }))
      assert.strictEqual(defaults.total_results, 3)
      assert.match(String(defaults.trace_id), /^[0-9a-f]{32}$/)
      assert.strictEqual(fake.calls.filter((c) => c.op === "query")[1].request?.k, 10)
    }))

  it.scopedLive("RangeScan pages through the caller's entities in id order", () =>
    Effect.gen(function* () {
      const { client } = yield* startGrpc()
      ok(
        yield* client.call(
          "BatchPutEntities",
          { entities: ["e3", "e1", "e5", "e2", "e4"].map((id) => entity(id)) },
          { apiKey: KEY_ACME },
        ),
      )
      ok(yield* client.call("PutEntity", { entity: entity("e0") }, { apiKey: KEY_OTHER }))
      const seen: Array<string> = []
      let token = ""
      for (let page = 0; page < 5; page++) {
        const answer = ok(yield* client.call("RangeScan", { limit: 2, page_token: token }, { apiKey: KEY_ACME }))
        seen.push(...(answer.entities as Array<{ entity_id: string }>).map((e) => e.entity_id))
        token = String(answer.next_page_token)
        if (token === "") break
      }
      assert.deepStrictEqual(seen, ["e1", "e2", "e3", "e4", "e5"])
      const ranged = ok(yield* client.call("RangeScan", { start_key: "e2", end_key: "e4" }, { apiKey: KEY_ACME }))
      assert.deepStrictEqual(
        (ranged.entities as Array<{ entity_id: string }>).map((e) => e.entity_id),
        ["e2", "e3"],
      )
      const other = ok(yield* client.call("RangeScan", {}, { apiKey: KEY_OTHER }))
      assert.deepStrictEqual(
        (other.entities as Array<{ entity_id: string }>).map((e) => e.entity_id),
        ["e0"],
      )
    }))

  it.scopedLive("refuses ReplicaRead and ReplicaWrite to client keys", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc()
      assert.strictEqual(
        code(yield* client.call("ReplicaRead", { tenant_id: "acme", entity_id: "a" }, { apiKey: KEY_ACME })),
        grpc.status.PERMISSION_DENIED,
      )
      assert.strictEqual(
        code(yield* client.call("ReplicaWrite", { tenant_id: "acme", entity: entity("a") }, { apiKey: KEY_ACME })),
        grpc.status.PERMISSION_DENIED,
      )
      assert.strictEqual(code(yield* client.call("ReplicaWrite", {})), grpc.status.UNAUTHENTICATED)
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.scopedLive("the client's deadline interrupts the handler with DEADLINE_EXCEEDED", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ fake: { slowQuery: true } })
      const answer = yield* client.call("Query", { query_vector: [1, 0] }, { apiKey: KEY_ACME, deadlineMs: 200 })
      assert.strictEqual(code(answer), grpc.status.DEADLINE_EXCEEDED)
      yield* eventually(() => fake.state.queryInterrupted === 1)
    }))

  it.scopedLive("the server's request timeout answers DEADLINE_EXCEEDED and interrupts the work", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ fake: { slowQuery: true }, config: { requestTimeoutMs: 150 } })
      const started = Date.now()
      const answer = yield* client.call("Query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
      assert.strictEqual(code(answer), grpc.status.DEADLINE_EXCEEDED)
      assert.include(details(answer), "150 ms")
      assert.isBelow(Date.now() - started, 3_000)
      yield* eventually(() => fake.state.queryInterrupted === 1)
    }))

  it.scopedLive("a client cancellation interrupts the handler", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ fake: { slowQuery: true } })
      const answer = yield* client.call("Query", { query_vector: [1, 0] }, { apiKey: KEY_ACME, cancelAfterMs: 100 })
      assert.strictEqual(code(answer), grpc.status.CANCELLED)
      yield* eventually(() => fake.state.queryStarted === 1 && fake.state.queryInterrupted === 1)
    }))

  it.scopedLive("the per-key rate limit answers RESOURCE_EXHAUSTED with retry-after", () =>
    Effect.gen(function* () {
      const { client } = yield* startGrpc({ config: { rateLimitPerSec: 0.5, rateLimitBurst: 2 } })
      ok(yield* client.call("RangeScan", {}, { apiKey: KEY_ACME }))
      ok(yield* client.call("RangeScan", {}, { apiKey: KEY_ACME }))
      const limited = yield* client.call("RangeScan", {}, { apiKey: KEY_ACME })
      assert.strictEqual(code(limited), grpc.status.RESOURCE_EXHAUSTED)
      const retryAfter = Either.isLeft(limited) ? limited.left.metadata.get("retry-after") : []
      assert.isAtLeast(Number(retryAfter[0]), 1)
      ok(yield* client.call("RangeScan", {}, { apiKey: KEY_OTHER }))
      // HealthCheck is not limited.
      ok(yield* client.call("HealthCheck", {}))
    }))

  it.scopedLive("internal errors answer INTERNAL with a request id and no details", () =>
    Effect.gen(function* () {
      const { client } = yield* startGrpc({
        override: {
          upsert: () => Effect.fail(new StorageFailure({ operation: "wal.append", message: "disk /dev/sda1 on fire" })),
        },
      })
      const answer = yield* client.call("PutEntity", { entity: entity("a") }, { apiKey: KEY_ACME })
      assert.strictEqual(code(answer), grpc.status.INTERNAL)
      assert.notInclude(details(answer), "sda1")
      assert.match(details(answer), /request id [0-9a-f-]{36}/)
      const metadata = Either.isLeft(answer) ? answer.left.metadata.get("x-request-id") : []
      assert.strictEqual(metadata.length, 1)
      assert.include(details(answer), String(metadata[0]))
      // A client's own request id is used (and echoed) when it is a sane token.
      const tagged = yield* client.call("PutEntity", { entity: entity("a") }, { apiKey: KEY_ACME, requestId: "req-42" })
      assert.include(details(tagged), "request id req-42")
    }))

  it.scopedLive("defects answer INTERNAL without a stack trace", () =>
    Effect.gen(function* () {
      const { client } = yield* startGrpc({ override: { scan: () => Effect.dieMessage("bug: secret invariant") } })
      const answer = yield* client.call("RangeScan", {}, { apiKey: KEY_ACME })
      assert.strictEqual(code(answer), grpc.status.INTERNAL)
      assert.notInclude(details(answer), "secret")
    }))

  it.scopedLive("a message over the size limit is RESOURCE_EXHAUSTED", () =>
    Effect.gen(function* () {
      const { client, fake } = yield* startGrpc({ config: { maxBodyMb: 1 / 1024 } })
      const big = yield* client.call(
        "PutEntity",
        { entity: entity("a", Array.from({ length: 1000 }, (_, i) => i / 1000)) },
        { apiKey: KEY_ACME },
      )
      assert.strictEqual(code(big), grpc.status.RESOURCE_EXHAUSTED)
      assert.strictEqual(fake.calls.length, 0)
      ok(yield* client.call("PutEntity", { entity: entity("small", [1, 0]) }, { apiKey: KEY_ACME }))
    }))

  it.live("closing the layer's scope drains, then cancels calls still running", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const { client, fake } = yield* startGrpc({ fake: { slowQuery: true }, shutdownTimeoutMs: 200 }).pipe(
        Scope.extend(scope),
      )
      const inFlight = yield* Effect.fork(client.call("Query", { query_vector: [1, 0] }, { apiKey: KEY_ACME }))
      yield* eventually(() => fake.state.queryStarted === 1)
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      assert.isBelow(Date.now() - started, 3_000)
      const answer = yield* inFlight.await.pipe(Effect.flatten)
      assert.isTrue(Either.isLeft(answer))
      assert.strictEqual(fake.state.queryInterrupted, 1)
    }))

  it("parses grpc-js peer strings", () => {
    assert.strictEqual(Grpc.peerAddress("127.0.0.1:5000"), "127.0.0.1")
    assert.strictEqual(Grpc.peerAddress("::1:5000"), "::1")
    assert.strictEqual(Grpc.peerAddress("::ffff:127.0.0.1:5000"), "::ffff:127.0.0.1")
    assert.strictEqual(Grpc.peerAddress("[::1]:5000"), "::1")
    assert.strictEqual(Grpc.peerAddress("unknown"), undefined)
  })
})

/** Polls a condition the server side sets asynchronously (bounded: 2 s). */
const eventually = (condition: () => boolean): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      if (condition()) return
      yield* Effect.sleep("20 millis")
    }
    assert.fail("condition not reached within 2 s")
  })
