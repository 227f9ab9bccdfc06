import { EdgeWrite, Entity, entityId, QueryRequest, relation, ScanRequest, tenantId, TraverseRequest } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import { Metrics as ObservabilityMetrics } from "@allidb/observability"
import { Coordinator } from "../../cluster/src/Coordinator.js"
import { externalAddress, fakeCoordinator, start } from "../../api/test/support/TestServer.js"
import * as AlliDbClient from "../src/AlliDbClient.js"

const keys = {
  apiKeys: [
    { key: "alpha-key-0001", tenant: tenantId("alpha") },
    { key: "beta-key-0002", tenant: tenantId("beta") },
  ],
}

const failureTag = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : undefined

/** A client that lives as long as the test's scope. */
const clientFor = (url: string, apiKey?: string) =>
  Effect.map(Layer.build(AlliDbClient.layer({ url, apiKey })), Context.get(AlliDbClient.AlliDbClient))

describe("typed RPC client", () => {
  it.live("every call against an in-process server, with typed errors", () =>
    Effect.gen(function* () {
      const { layer, state } = yield* fakeCoordinator
      const server = yield* start(layer, keys)
      const alpha = yield* clientFor(server.url, "alpha-key-0001")
      const beta = yield* clientFor(server.url, "beta-key-0002")

      const up = yield* alpha.Upsert({
        entities: [
          new Entity({ id: entityId("a"), type: "doc", vector: [1, 0], metadata: { n: 1 } }),
          new Entity({ id: entityId("b"), vector: [0, 1] }),
          new Entity({ id: entityId("bad"), vector: [1, 2, 3] }),
        ],
        wait: true,
      })
      assert.deepStrictEqual<ReadonlyArray<string>>(up.ids, ["a", "b"])
      assert.strictEqual(up.failed[0]!.error._tag, "DimensionMismatch")
      assert.strictEqual(up.failed[0]!.error.field, "entities[2].vector")

      const a = yield* alpha.Get({ id: entityId("a") })
      assert.instanceOf(a, Entity)
      assert.deepStrictEqual(a.metadata, { n: 1 })
      assert.strictEqual(failureTag(yield* Effect.exit(beta.Get({ id: entityId("a") }))), "NotFound")

      yield* alpha.PutEdges({
        edges: [new EdgeWrite({ from: entityId("a"), to: entityId("b"), relation: relation("r"), weight: 0.5 })],
      })
      const reached = yield* alpha.Traverse({ request: new TraverseRequest({ from: [entityId("a")], hops: 1 }) })
      assert.deepStrictEqual(
        reached.map((r) => [r.id, r.weight]),
        [["b", 0.5]],
      )
      const results = yield* alpha.Query({ request: new QueryRequest({ vector: [1, 0.1], k: 1 }) })
      assert.deepStrictEqual(
        results.map((r) => r.id),
        ["a"],
      )
      const dim = yield* Effect.exit(alpha.Query({ request: new QueryRequest({ vector: [1, 0, 0], k: 1 }) }))
      assert.strictEqual(failureTag(dim), "DimensionMismatch")
      const page = yield* alpha.Scan({ request: new ScanRequest({ limit: 1 }) })
      assert.deepStrictEqual(
        page.entities.map((e) => e.id),
        ["a"],
      )
      assert.isDefined(page.nextPageToken)
      yield* alpha.Delete({ id: entityId("a") })
      assert.strictEqual(failureTag(yield* Effect.exit(alpha.Delete({ id: entityId("a") }))), "NotFound")
      assert.isTrue(state.writes.every((w) => w.caller === "alpha"))

      // one request count per RPC call, labelled by RPC name and status
      const notFound = Metric.value(
        Metric.taggedWithLabels(ObservabilityMetrics.requestsTotal, [
          MetricLabel.make("surface", "rpc"),
          MetricLabel.make("route", "Get"),
          MetricLabel.make("status", "NOT_FOUND"),
        ]),
      )
      const before = yield* notFound
      yield* Effect.exit(alpha.Get({ id: entityId("a") }))
      assert.strictEqual((yield* notFound).count - before.count, 1)

      const anonymous = yield* clientFor(server.url)
      assert.strictEqual(failureTag(yield* Effect.exit(anonymous.Get({ id: entityId("b") }))), "Unauthenticated")
      const wrong = yield* clientFor(server.url, "wrong-key-1234")
      assert.strictEqual(failureTag(yield* Effect.exit(wrong.Get({ id: entityId("b") }))), "Unauthenticated")
    }).pipe(Effect.scoped),
  )

  it.live("keyless node: loopback RPC clients act as tenant default", () =>
    Effect.gen(function* () {
      const { layer, state } = yield* fakeCoordinator
      const server = yield* start(layer, {})
      const client = yield* clientFor(server.url)
      yield* client.Upsert({ entities: [new Entity({ id: entityId("x") })] })
      assert.strictEqual(state.writes[0]!.caller, "default")
      assert.strictEqual((yield* client.Get({ id: entityId("x") })).id, "x")
      const external = externalAddress()
      if (external !== undefined) {
        const far = yield* clientFor(`http://${external}:${server.port}`)
        assert.strictEqual(failureTag(yield* Effect.exit(far.Get({ id: entityId("x") }))), "Unauthenticated")
      }
    }).pipe(Effect.scoped),
  )

  it.live("rate limit and deadline are typed errors on RPC", () =>
    Effect.gen(function* () {
      const interrupted = yield* Deferred.make<void>()
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
      const coordinator = Layer.succeed(Coordinator, {
        upsert: () => slow,
        get: () => slow,
        remove: () => slow,
        putEdges: () => slow,
        removeEdges: () => slow,
        query: () => slow,
        traverse: () => slow,
        scan: () => slow,
      })
      const server = yield* start(coordinator, { ...keys, requestTimeoutMs: 200, rateLimitPerSec: 1, rateLimitBurst: 1 })
      const client = yield* clientFor(server.url, "alpha-key-0001")
      const first = yield* Effect.exit(client.Get({ id: entityId("a") }))
      assert.strictEqual(failureTag(first), "DeadlineExceeded")
      yield* Deferred.await(interrupted).pipe(Effect.timeout("2 seconds"))
      const second = yield* Effect.exit(client.Get({ id: entityId("a") }))
      assert.strictEqual(failureTag(second), "RateLimited")
    }).pipe(Effect.scoped),
  )
})

describe("Promise facade", () => {
  it.live("JSON in, JSON out, typed rejections", () =>
    Effect.gen(function* () {
      const { layer } = yield* fakeCoordinator
      const server = yield* start(layer, keys)
      const db = yield* Effect.promise(() => AlliDbClient.connect({ url: server.url, apiKey: "alpha-key-0001" }))
      yield* Effect.promise(async () => {
        const up = await db.upsert([
          { id: "a", vector: [1, 0], vector_version: 2, chunks: [{ id: "c1", text: "hello" }] },
          { id: "b", vector: [0, 1] },
        ])
        assert.deepStrictEqual(up, { ids: ["a", "b"], failed: [] })
        const a = await db.get("a")
        assert.strictEqual(a.vector_version, 2)
        assert.isNumber(a.created_at)
        await db.putEdges([{ from: "a", to: "b", relation: "r" }])
        const { results } = await db.query({ vector: [1, 0], k: 2 })
        assert.deepStrictEqual(
          results.map((r) => r.id),
          ["a", "b"],
        )
        const traversed = await db.traverse({ from: ["a"], hops: 1 })
        assert.deepStrictEqual(
          traversed.results.map((r) => r.id),
          ["b"],
        )
        const page = await db.scan({ limit: 1 })
        assert.strictEqual(page.next_page_token, "b")
        await db.deleteEdges([{ from: "a", to: "b", relation: "r" }])
        await db.delete("b")
        const missing = await db.get("b").catch((e: unknown) => e)
        assert.strictEqual((missing as { _tag: string })._tag, "NotFound")
        const bad = await db.upsert([{ id: "" }]).catch((e: unknown) => e)
        assert.strictEqual((bad as { _tag: string; field: string })._tag, "InvalidInput")
        assert.strictEqual((bad as { field: string }).field, "entities[0].id")
        const badK = await db.query({ vector: [1, 0], k: 0 }).catch((e: unknown) => e)
        assert.strictEqual((badK as { field: string }).field, "k")
        await db.close()
      })
    }).pipe(Effect.scoped),
  )
})
