/**
 * Tenant isolation, property-tested: two tenants run random interleaved
 * operations on the same ids through the native HTTP API and the typed RPC
 * client. Every read is checked against a model of the reader's own tenant;
 * each tenant's vectors carry its own sign (alpha > 0, beta < 0), so a value
 * leaking across tenants cannot go unnoticed. Seeded; the seed is printed
 * (replay with A1_ISOLATION_SEED=<seed>).
 */
import { EdgeWrite, Entity, entityId, QueryRequest, relation, ScanRequest, tenantId, TraverseRequest } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import fc from "fast-check"
import * as AlliDbClient from "../../client/src/AlliDbClient.js"
import { call, fakeCoordinator, start } from "./support/TestServer.js"

const TENANTS = [
  { name: "alpha", key: "iso-alpha-key-01", sign: 1 },
  { name: "beta", key: "iso-beta-key-002", sign: -1 },
] as const
const IDS = ["a", "b", "c", "d"] as const

type Op =
  | { readonly _tag: "upsert"; readonly id: string; readonly x: number }
  | { readonly _tag: "delete"; readonly id: string }
  | { readonly _tag: "get"; readonly id: string }
  | { readonly _tag: "edge"; readonly from: string; readonly to: string }
  | { readonly _tag: "scan" }
  | { readonly _tag: "query" }
  | { readonly _tag: "traverse"; readonly from: string }

const id = fc.constantFrom(...IDS)
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ _tag: fc.constant("upsert" as const), id, x: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ _tag: fc.constant("delete" as const), id }),
  fc.record({ _tag: fc.constant("get" as const), id }),
  fc.record({ _tag: fc.constant("edge" as const), from: id, to: id }),
  fc.record({ _tag: fc.constant("scan" as const) }),
  fc.record({ _tag: fc.constant("query" as const) }),
  fc.record({ _tag: fc.constant("traverse" as const), from: id }),
)
const step = fc.record({ tenant: fc.constantFrom(0, 1), viaRpc: fc.boolean(), op })

interface Row {
  readonly vector: ReadonlyArray<number>
  readonly edges: Set<string>
}

describe("tenant isolation", () => {
  it.live("random interleaved operations of two tenants never cross, over HTTP and RPC", () =>
    Effect.gen(function* () {
      const seed = Number(process.env.A1_ISOLATION_SEED ?? Date.now() % 2 ** 31)
      console.log(`TenantIsolation seed: ${seed} (replay with A1_ISOLATION_SEED=${seed})`)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 25 }), (steps) =>
            Effect.runPromise(Effect.scoped(runScenario(steps))),
          ),
          { seed, numRuns: 12 },
        ),
      )
    }),
  )
})

const runScenario = (steps: ReadonlyArray<{ tenant: number; viaRpc: boolean; op: Op }>) =>
  Effect.gen(function* () {
    const { layer } = yield* fakeCoordinator
    const server = yield* start(layer, {
      apiKeys: TENANTS.map((t) => ({ key: t.key, tenant: tenantId(t.name) })),
    })
    const clients = yield* Effect.forEach(TENANTS, (t) =>
      Effect.map(
        Layer.build(AlliDbClient.layer({ url: server.url, apiKey: t.key })),
        Context.get(AlliDbClient.AlliDbClient),
      ),
    )
    const models = TENANTS.map(() => new Map<string, Row>())

    for (const { tenant, viaRpc, op } of steps) {
      const t = TENANTS[tenant]!
      const model = models[tenant]!
      const rpc = clients[tenant]!
      const http = (method: string, path: string, body?: unknown) =>
        call(server.url, method, path, { key: t.key, ...(body === undefined ? {} : { body }) })
      const label = `${t.name} ${viaRpc ? "rpc" : "http"} ${JSON.stringify(op)}`
      switch (op._tag) {
        case "upsert": {
          const vector = [t.sign * op.x, 1]
          if (viaRpc) yield* rpc.Upsert({ entities: [new Entity({ id: entityId(op.id), vector })] })
          else assert.strictEqual((yield* http("POST", "/v1/entities", { entities: [{ id: op.id, vector }] })).status, 200)
          model.set(op.id, { vector, edges: new Set() })
          break
        }
        case "delete": {
          const existed = model.has(op.id)
          if (viaRpc) {
            const exit = yield* Effect.exit(rpc.Delete({ id: entityId(op.id) }))
            assert.strictEqual(Exit.isSuccess(exit), existed, label)
          } else {
            assert.strictEqual((yield* http("DELETE", `/v1/entities/${op.id}`)).status, existed ? 200 : 404, label)
          }
          model.delete(op.id)
          break
        }
        case "edge": {
          // only between entities the tenant has, so the model stays exact
          if (!model.has(op.from)) break
          if (viaRpc) {
            yield* rpc.PutEdges({
              edges: [new EdgeWrite({ from: entityId(op.from), to: entityId(op.to), relation: relation("r") })],
            })
          } else {
            const answer = yield* http("POST", "/v1/edges", { edges: [{ from: op.from, to: op.to, relation: "r" }] })
            assert.strictEqual(answer.status, 200, label)
          }
          model.get(op.from)!.edges.add(op.to)
          break
        }
        case "get": {
          const expected = model.get(op.id)
          if (viaRpc) {
            const exit = yield* Effect.exit(rpc.Get({ id: entityId(op.id) }))
            if (expected === undefined) assert.isTrue(Exit.isFailure(exit), label)
            else if (Exit.isSuccess(exit)) assert.deepStrictEqual(exit.value.vector, expected.vector, label)
            else assert.fail(`${label}: ${String(exit)}`)
          } else {
            const answer = yield* http("GET", `/v1/entities/${op.id}`)
            assert.strictEqual(answer.status, expected === undefined ? 404 : 200, label)
            if (expected !== undefined) assert.deepStrictEqual(answer.body.vector, expected.vector, label)
          }
          break
        }
        case "scan": {
          const ids = viaRpc
            ? (yield* rpc.Scan({ request: new ScanRequest({ limit: 100 }) })).entities.map((e): string => e.id)
            : (yield* http("GET", "/v1/entities?limit=100")).body.entities.map((e: { id: string }) => e.id)
          assert.deepStrictEqual(ids, [...model.keys()].sort(), label)
          break
        }
        case "query": {
          const results = viaRpc
            ? (yield* rpc.Query({ request: new QueryRequest({ vector: [t.sign, 1], k: 10 }) })).map((r) => ({
                id: r.id as string,
                vector: r.entity?.vector,
              }))
            : (yield* http("POST", "/v1/query", { vector: [t.sign, 1], k: 10 })).body.results.map(
                (r: { id: string; entity?: { vector?: Array<number> } }) => ({ id: r.id, vector: r.entity?.vector }),
              )
          for (const r of results) {
            assert.isTrue(model.has(r.id), `${label}: ${r.id} is not ${t.name}'s`)
            assert.deepStrictEqual(r.vector, model.get(r.id)!.vector, label)
          }
          assert.strictEqual(results.length, model.size, label)
          break
        }
        case "traverse": {
          const reached: Array<string> = viaRpc
            ? (yield* rpc.Traverse({ request: new TraverseRequest({ from: [entityId(op.from)], hops: 1 }) })).map(
                (r): string => r.id,
              )
            : (yield* http("POST", "/v1/traverse", { from: [op.from], hops: 1 })).body.results.map(
                (r: { id: string }) => r.id,
              )
          const expected = [...(model.get(op.from)?.edges ?? [])].filter((to) => to !== op.from).sort()
          assert.deepStrictEqual([...reached].sort(), expected, label)
          break
        }
      }
    }
  })
