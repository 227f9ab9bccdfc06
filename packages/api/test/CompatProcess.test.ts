/**
 * The AlliDB-compatible REST routes and gRPC against the real `allidbd`
 * child process (built apps/allidbd/dist; the real engine, index and
 * coordinator), with two tenants' keys: writes through one surface read the
 * same through the others, incoming edges land on their source entities, and
 * neither tenant sees the other's data.
 */
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Allidbd from "../../../apps/allidbd/test/support/Allidbd.js"
import * as Grpc from "../src/Grpc.js"
import { GrpcTestClient, type Outcome } from "./GrpcHarness.js"

const KEY_A = "compat-process-key-a-0123456789"
const KEY_B = "compat-process-key-b-0123456789"

const startNode = Effect.gen(function* () {
  const node = yield* Allidbd.start({
    env: { ALLIDB_API_KEYS: `${KEY_A}=tenant-a,${KEY_B}=tenant-b` },
  })
  assert.isDefined(node.grpcAddress, "the listening line names the gRPC address")
  const { client: Ctor } = Grpc.loadService()
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => new Ctor(node.grpcAddress as string, grpc.credentials.createInsecure())),
    (c) => Effect.sync(() => c.close()),
  )
  const post = (path: string, body: unknown, apiKey?: string) =>
    Effect.promise(async () => {
      const response = await fetch(`${node.httpUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(apiKey !== undefined ? { "x-allidb-api-key": apiKey } : {}) },
        body: JSON.stringify(body),
      })
      return { status: response.status, body: (await response.json()) as Record<string, unknown> }
    })
  const get = (path: string, apiKey: string) =>
    Effect.promise(async () => {
      const response = await fetch(`${node.httpUrl}${path}`, { headers: { "x-allidb-api-key": apiKey } })
      return { status: response.status, body: (await response.json()) as Record<string, unknown> }
    })
  return { node, grpc: new GrpcTestClient(client), post, get }
})

const ok = (outcome: Outcome): Record<string, unknown> => {
  if (Either.isLeft(outcome)) assert.fail(`expected success, got ${outcome.left.code}: ${outcome.left.details}`)
  return outcome.right
}
const code = (outcome: Outcome): number => (Either.isLeft(outcome) ? outcome.left.code : grpc.status.OK)

describe("compatible surfaces against the real allidbd", () => {
  it.scopedLive(
    "REST and gRPC write and read the same data, per tenant",
    () =>
      Effect.gen(function* () {
        const { grpc: client, post, get } = yield* startNode
        // REST: an entity with an incoming edge from a not-yet-written source.
        const put = yield* post(
          "/entity",
          {
            entity: {
              entity_id: "doc-1",
              entity_type: "document",
              embeddings: [
                { version: 1, vector: [0, 1, 0] },
                { version: 2, vector: [1, 0, 0] },
              ],
              incoming_edges: [{ from_entity: "author-1", relation: "wrote", weight: 0.9 }],
              chunks: [{ chunk_id: "c1", text: "hello", metadata: { page: "1" } }],
              importance: 0.5,
            },
            consistency_level: "CONSISTENCY_QUORUM",
          },
          KEY_A,
        )
        assert.strictEqual(put.status, 200, JSON.stringify(put.body))
        // The incoming edge is an outgoing edge of its source, readable natively.
        const author = yield* get("/v1/entities/author-1", KEY_A)
        assert.strictEqual(author.status, 200, JSON.stringify(author.body))
        const edges = author.body.edges as Array<{ to: string; relation: string }>
        assert.deepStrictEqual(
          edges.map((e) => [e.to, e.relation]),
          [["doc-1", "wrote"]],
        )
        // gRPC batch for the same tenant, a dimension mismatch counted as a failure.
        const batch = ok(
          yield* client.call(
            "BatchPutEntities",
            {
              entities: [
                { entity_id: "doc-2", embeddings: [{ version: "1", vector: [0.9, 0.1, 0] }] },
                { entity_id: "doc-3", embeddings: [{ version: "1", vector: [1, 0] }] },
              ],
            },
            { apiKey: KEY_A },
          ),
        )
        assert.deepStrictEqual(batch.entity_ids, ["doc-2"])
        assert.strictEqual(batch.failure_count, 1)
        // Tenant B writes its own doc-1, far from the query.
        const theirs = yield* post(
          "/entity",
          { entity: { entity_id: "doc-1", embeddings: [{ version: 1, vector: [0, 0, 1] }] } },
          KEY_B,
        )
        assert.strictEqual(theirs.status, 200)

        // Query through both surfaces: the newest embedding of doc-1 is the indexed one.
        const rest = yield* post("/query", { query_vector: [1, 0, 0], k: 2 }, KEY_A)
        assert.strictEqual(rest.status, 200, JSON.stringify(rest.body))
        const restIds = (rest.body.results as Array<{ entity_id: string; entity: { tenant_id: string } }>).map(
          (r) => r.entity_id,
        )
        assert.deepStrictEqual(restIds, ["doc-1", "doc-2"])
        const viaGrpc = ok(yield* client.call("Query", { query_vector: [1, 0, 0], k: 2 }, { apiKey: KEY_A }))
        const results = viaGrpc.results as Array<{ entity_id: string; entity: { tenant_id: string; embeddings: Array<{ version: string }> } }>
        assert.deepStrictEqual(
          results.map((r) => r.entity_id),
          restIds,
        )
        assert.strictEqual(results[0].entity.tenant_id, "tenant-a")
        assert.strictEqual(results[0].entity.embeddings[0].version, "2")
        const b = ok(yield* client.call("Query", { query_vector: [1, 0, 0], k: 10 }, { apiKey: KEY_B }))
        assert.deepStrictEqual(
          (b.results as Array<{ entity_id: string; entity: { tenant_id: string } }>).map((r) => [r.entity_id, r.entity.tenant_id]),
          [["doc-1", "tenant-b"]],
        )

        // RangeScan pages through tenant A only.
        const seen: Array<string> = []
        let token = ""
        for (let i = 0; i < 10; i++) {
          const page = ok(yield* client.call("RangeScan", { limit: 2, page_token: token }, { apiKey: KEY_A }))
          seen.push(...(page.entities as Array<{ entity_id: string }>).map((e) => e.entity_id))
          token = String(page.next_page_token)
          if (token === "") break
        }
        assert.deepStrictEqual(seen, ["author-1", "doc-1", "doc-2"])
      }),
    60_000,
  )

  it.scopedLive(
    "auth failures, cross-tenant attempts and bad input are refused on both surfaces",
    () =>
      Effect.gen(function* () {
        const { grpc: client, post } = yield* startNode
        assert.strictEqual((yield* post("/entity", { entity: { entity_id: "x" } })).status, 401)
        assert.strictEqual((yield* post("/query", { query_vector: [1] }, "wrong-key")).status, 401)
        assert.strictEqual(
          (yield* post("/entity", { entity: { entity_id: "x", tenant_id: "tenant-b" } }, KEY_A)).status,
          403,
        )
        const bad = yield* post("/query", { query_vector: [1, Number.NaN] }, KEY_A)
        assert.strictEqual(bad.status, 400)
        assert.strictEqual(code(yield* client.call("PutEntity", { entity: { entity_id: "x" } })), grpc.status.UNAUTHENTICATED)
        assert.strictEqual(
          code(yield* client.call("RangeScan", { tenant_id: "tenant-b" }, { apiKey: KEY_A })),
          grpc.status.PERMISSION_DENIED,
        )
        assert.strictEqual(
          code(yield* client.call("ReplicaWrite", { tenant_id: "tenant-a" }, { apiKey: KEY_A })),
          grpc.status.PERMISSION_DENIED,
        )
        assert.strictEqual(
          code(yield* client.call("PutEntity", { entity: { entity_id: "" } }, { apiKey: KEY_A })),
          grpc.status.INVALID_ARGUMENT,
        )
        const health = ok(yield* client.call("HealthCheck", {}))
        assert.strictEqual(health.healthy, true)
      }),
    60_000,
  )
})
