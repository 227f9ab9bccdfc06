/**
 * Tenant isolation through the compatible surfaces of the real `allidbd`: two
 * tenants share entity ids and interleave random writes (REST and gRPC),
 * cross-tenant writes, queries and scans. A model of each tenant's entities
 * says what it may see: no query or scan ever returns the other tenant's
 * entity or vector, and cross-tenant writes are refused without effect.
 * Seeded (printed; replay with ALLIDB_FUZZ_SEED=<n>), bounded rounds.
 */
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import * as Allidbd from "../../../apps/allidbd/test/support/Allidbd.js"
import * as Grpc from "../src/Grpc.js"
import { GrpcTestClient } from "./GrpcHarness.js"

const SEED = process.env.ALLIDB_FUZZ_SEED !== undefined ? Number(process.env.ALLIDB_FUZZ_SEED) : Date.now() % 2 ** 31
const TENANTS = ["tenant-a", "tenant-b"] as const
type Tenant = (typeof TENANTS)[number]
const KEYS: Record<Tenant, string> = { "tenant-a": "isolation-key-a-0123456789", "tenant-b": "isolation-key-b-0123456789" }
const IDS = ["a", "b", "c", "d", "e", "f"]

const vector = fc
  .tuple(fc.float({ min: -1, max: 1, noNaN: true }), fc.float({ min: -1, max: 1, noNaN: true }), fc.float({ min: -1, max: 1, noNaN: true }))
  .filter(([x, y, z]) => Math.hypot(x, y, z) > 0.1)
  .map(([x, y, z]) => [Math.fround(x), Math.fround(y), Math.fround(z)])

const surface = fc.constantFrom("rest" as const, "grpc" as const)
const tenant = fc.constantFrom(...TENANTS)

const operation = fc.oneof(
  fc.record({ op: fc.constant("put" as const), tenant, surface, id: fc.constantFrom(...IDS), vector }),
  fc.record({ op: fc.constant("batch" as const), tenant, surface, ids: fc.uniqueArray(fc.constantFrom(...IDS), { minLength: 1, maxLength: 3 }), vector }),
  fc.record({ op: fc.constant("foreign" as const), tenant, surface, id: fc.constantFrom(...IDS), vector }),
  fc.record({ op: fc.constant("query" as const), tenant, surface, vector, k: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("scan" as const), tenant, limit: fc.integer({ min: 1, max: 4 }) }),
)

type Model = Record<Tenant, Map<string, ReadonlyArray<number>>>

interface ResultEntity {
  readonly entity_id: string
  readonly tenant_id: string
  readonly embeddings: ReadonlyArray<{ readonly vector: ReadonlyArray<number> }>
}

describe("tenant isolation through the compatible surfaces", () => {
  it.scopedLive(
    `random interleaved operations of two tenants never cross (seed ${SEED})`,
    () =>
      Effect.gen(function* () {
        console.log(`CompatIsolation seed: ${SEED} (replay with ALLIDB_FUZZ_SEED=${SEED})`)
        const node = yield* Allidbd.start({
          env: { ALLIDB_API_KEYS: TENANTS.map((t) => `${KEYS[t]}=${t}`).join(",") },
        })
        const { client: Ctor } = Grpc.loadService()
        const raw = yield* Effect.acquireRelease(
          Effect.sync(() => new Ctor(node.grpcAddress as string, grpc.credentials.createInsecure())),
          (c) => Effect.sync(() => c.close()),
        )
        const client = new GrpcTestClient(raw)
        const post = async (path: string, body: unknown, t: Tenant) => {
          const response = await fetch(`${node.httpUrl}${path}`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-allidb-api-key": KEYS[t] },
            body: JSON.stringify(body),
          })
          return { status: response.status, body: (await response.json()) as Record<string, unknown> }
        }
        const rpc = async (method: string, request: object, t: Tenant) =>
          Effect.runPromise(client.call(method, request, { apiKey: KEYS[t] }))
        const okRpc = async (method: string, request: object, t: Tenant) => {
          const answer = await rpc(method, request, t)
          if (Either.isLeft(answer)) throw new Error(`${method}: ${answer.left.code} ${answer.left.details}`)
          return answer.right
        }
        const model: Model = { "tenant-a": new Map(), "tenant-b": new Map() }

        const checkVisible = (t: Tenant, entities: ReadonlyArray<ResultEntity>, what: string) => {
          for (const e of entities) {
            assert.strictEqual(e.tenant_id, t, `${what}: tenant_id of ${e.entity_id}`)
            const own = model[t].get(e.entity_id)
            assert.isDefined(own, `${what}: ${t} saw ${e.entity_id}, which it never wrote`)
            const got = e.embeddings[0]?.vector ?? []
            assert.strictEqual(got.length, 3, `${what}: ${e.entity_id} has its vector`)
            for (const [i, x] of got.entries()) {
              assert.closeTo(x, (own as ReadonlyArray<number>)[i], 1e-6, `${what}: ${t}/${e.entity_id}`)
            }
          }
        }

        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.array(operation, { minLength: 5, maxLength: 25 }), async (ops) => {
              for (const op of ops) {
                const entity = (id: string, extra: object = {}) => ({
                  entity_id: id,
                  embeddings: [{ version: "surface" in op && op.surface === "grpc" ? "1" : 1, vector: "vector" in op ? op.vector : [] }],
                  ...extra,
                })
                switch (op.op) {
                  case "put": {
                    if (op.surface === "rest") {
                      const answer = await post("/entity", { entity: entity(op.id) }, op.tenant)
                      assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
                    } else {
                      await okRpc("PutEntity", { entity: entity(op.id) }, op.tenant)
                    }
                    model[op.tenant].set(op.id, op.vector)
                    break
                  }
                  case "batch": {
                    const body = { entities: op.ids.map((id) => entity(id)) }
                    const answer =
                      op.surface === "rest" ? (await post("/entities/batch", body, op.tenant)).body : await okRpc("BatchPutEntities", body, op.tenant)
                    assert.strictEqual(answer.failure_count, 0, JSON.stringify(answer))
                    for (const id of op.ids) model[op.tenant].set(id, op.vector)
                    break
                  }
                  case "foreign": {
                    const other = op.tenant === "tenant-a" ? "tenant-b" : "tenant-a"
                    const body = { entity: entity(op.id, { tenant_id: other }) }
                    if (op.surface === "rest") {
                      assert.strictEqual((await post("/entity", body, op.tenant)).status, 403)
                    } else {
                      const answer = await rpc("PutEntity", body, op.tenant)
                      assert.isTrue(Either.isLeft(answer) && answer.left.code === grpc.status.PERMISSION_DENIED)
                    }
                    break
                  }
                  case "query": {
                    const body = { query_vector: op.vector, k: op.k }
                    const answer = op.surface === "rest" ? (await post("/query", body, op.tenant)).body : await okRpc("Query", body, op.tenant)
                    const results = answer.results as Array<{ entity_id: string; entity: ResultEntity }>
                    assert.isAtMost(results.length, op.k)
                    assert.strictEqual(results.length, Math.min(op.k, model[op.tenant].size), "query sees all its own")
                    checkVisible(
                      op.tenant,
                      results.map((r) => r.entity),
                      `${op.surface} query`,
                    )
                    break
                  }
                  case "scan": {
                    const seen: Array<ResultEntity> = []
                    let token = ""
                    for (let page = 0; page < 20; page++) {
                      const answer = await okRpc("RangeScan", { limit: op.limit, page_token: token }, op.tenant)
                      seen.push(...(answer.entities as Array<ResultEntity>))
                      token = String(answer.next_page_token)
                      if (token === "") break
                    }
                    checkVisible(op.tenant, seen, "scan")
                    assert.deepStrictEqual(
                      seen.map((e) => e.entity_id),
                      [...model[op.tenant].keys()].sort(),
                      "scan returns exactly the tenant's entities, in id order",
                    )
                    break
                  }
                }
              }
            }),
            { seed: SEED, numRuns: 4 },
          ),
        )
      }),
    120_000,
  )
})
