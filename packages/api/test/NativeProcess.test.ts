/**
 * The native HTTP /v1 API, the typed RPC client and the Promise facade
 * against the real `allidbd` child process (built apps/allidbd/dist: the real
 * engine, index and coordinator), with two tenants' keys: what one surface
 * writes the others read the same, and neither tenant sees the other's data.
 */
import { EdgeWrite, Entity, entityId, Expand, QueryRequest, relation, ScanRequest, TraverseRequest } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Allidbd from "../../../apps/allidbd/test/support/Allidbd.js"
import * as AlliDbClient from "../../client/src/AlliDbClient.js"
import { call } from "./support/TestServer.js"

const KEY_A = "native-process-key-a-0123456789"
const KEY_B = "native-process-key-b-0123456789"

const failureTag = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : undefined

const startNode = Allidbd.start({ env: { ALLIDB_API_KEYS: `${KEY_A}=tenant-a,${KEY_B}=tenant-b` } })

const rpcClient = (url: string, apiKey?: string) =>
  Effect.map(Layer.build(AlliDbClient.layer({ url, apiKey })), Context.get(AlliDbClient.AlliDbClient))

describe("native surfaces against a real allidbd", () => {
  it.scopedLive("HTTP /v1 and RPC read each other's writes; tenants stay apart", () =>
    Effect.gen(function* () {
      const node = yield* startNode
      const url = node.httpUrl
      const a = yield* rpcClient(url, KEY_A)
      const b = yield* rpcClient(url, KEY_B)

      // HTTP write, RPC read
      const up = yield* call(url, "POST", "/v1/entities", {
        key: KEY_A,
        body: {
          entities: [
            { id: "n1", type: "doc", vector: [1, 0, 0], importance: 0.9, metadata: { lang: "en" } },
            { id: "n2", type: "doc", vector: [0, 1, 0], metadata: { lang: "de" } },
            { id: "n3", type: "note", vector: [0, 0, 1] },
          ],
        },
      })
      assert.deepStrictEqual(up.body, { ids: ["n1", "n2", "n3"] }, JSON.stringify(up.body))
      const n1 = yield* a.Get({ id: entityId("n1") })
      assert.deepStrictEqual(n1.vector, [1, 0, 0])
      assert.deepStrictEqual(n1.metadata, { lang: "en" })
      assert.strictEqual(failureTag(yield* Effect.exit(b.Get({ id: entityId("n1") }))), "NotFound")
      assert.strictEqual((yield* call(url, "GET", "/v1/entities/n1", { key: KEY_B })).status, 404)

      // RPC write, HTTP read: edges, traverse, query with expansion
      yield* a.PutEdges({
        edges: [
          new EdgeWrite({ from: entityId("n1"), to: entityId("n2"), relation: relation("cites"), weight: 0.5 }),
          new EdgeWrite({ from: entityId("n2"), to: entityId("n3"), relation: relation("cites") }),
        ],
      })
      const traverse = yield* call(url, "POST", "/v1/traverse", { key: KEY_A, body: { from: ["n1"], hops: 2 } })
      assert.strictEqual(traverse.status, 200, JSON.stringify(traverse.body))
      assert.deepStrictEqual(
        traverse.body.results.map((r: { id: string; depth: number }) => [r.id, r.depth]),
        [
          ["n2", 1],
          ["n3", 2],
        ],
      )
      const beta = yield* b.Traverse({ request: new TraverseRequest({ from: [entityId("n1")], hops: 2 }) })
      assert.deepStrictEqual(beta, [])

      const query = yield* call(url, "POST", "/v1/query", {
        key: KEY_A,
        body: { vector: [1, 0.05, 0], k: 1, explain: true },
      })
      assert.strictEqual(query.status, 200, JSON.stringify(query.body))
      assert.strictEqual(query.body.results[0].id, "n1")
      const expanded = yield* a.Query({
        request: new QueryRequest({ vector: [1, 0.05, 0], k: 3, expand: new Expand({ hops: 1, factor: 1 }) }),
      })
      assert.include(
        expanded.map((r): string => r.id),
        "n2",
        "expansion reaches n2 from n1",
      )
      const filtered = yield* call(url, "POST", "/v1/query", {
        key: KEY_A,
        body: { vector: [0, 0, 1], k: 3, filter: { metadata: { lang: "de" } } },
      })
      assert.deepStrictEqual(
        filtered.body.results.map((r: { id: string }) => r.id),
        ["n2"],
      )
      const other = yield* call(url, "POST", "/v1/query", { key: KEY_B, body: { vector: [1, 0, 0], k: 5 } })
      assert.deepStrictEqual(other.body.results, [])

      // paging through both surfaces
      const page1 = yield* a.Scan({ request: new ScanRequest({ limit: 2 }) })
      assert.deepStrictEqual(
        page1.entities.map((e) => e.id),
        ["n1", "n2"],
      )
      const page2 = yield* call(
        url,
        "GET",
        `/v1/entities?limit=2&page_token=${encodeURIComponent(page1.nextPageToken ?? "")}`,
        { key: KEY_A },
      )
      assert.deepStrictEqual(
        page2.body.entities.map((e: { id: string }) => e.id),
        ["n3"],
      )

      // bad input, auth and cross-tenant attempts
      const dim = yield* call(url, "POST", "/v1/entities", { key: KEY_A, body: { entities: [{ id: "x", vector: [1] }] } })
      assert.strictEqual(dim.status, 400)
      assert.strictEqual(dim.body.field, "entities[0].vector")
      assert.strictEqual((yield* call(url, "GET", "/v1/entities/n1")).status, 401)
      const forbidden = yield* call(url, "POST", "/v1/entities", {
        key: KEY_A,
        body: { entities: [{ id: "z" }], tenant: "tenant-b" },
      })
      assert.strictEqual(forbidden.status, 403)
      const anonymous = yield* rpcClient(url)
      assert.strictEqual(failureTag(yield* Effect.exit(anonymous.Get({ id: entityId("n1") }))), "Unauthenticated")

      // deletes through RPC are seen by HTTP; beta's same id is untouched
      yield* b.Upsert({ entities: [new Entity({ id: entityId("n3"), vector: [0, 0, 1] })] })
      yield* a.Delete({ id: entityId("n3") })
      assert.strictEqual((yield* call(url, "GET", "/v1/entities/n3", { key: KEY_A })).status, 404)
      assert.strictEqual((yield* call(url, "GET", "/v1/entities/n3", { key: KEY_B })).status, 200)

      // the Promise facade
      const db = yield* Effect.promise(() => AlliDbClient.connect({ url, apiKey: KEY_B }))
      const fromFacade = yield* Effect.promise(() => db.get("n3"))
      assert.deepStrictEqual(fromFacade.vector, [0, 0, 1])
      const missing = yield* Effect.promise(() => db.get("n1").catch((e: unknown) => e))
      assert.strictEqual((missing as { _tag: string })._tag, "NotFound")
      yield* Effect.promise(() => db.close())

      // the docs page and the OpenAPI document are served by the real node
      assert.strictEqual((yield* call(url, "GET", "/openapi.json")).status, 200)
      assert.strictEqual((yield* call(url, "GET", "/docs")).status, 200)
    }),
  )
})
