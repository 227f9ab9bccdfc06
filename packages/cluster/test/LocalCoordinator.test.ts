import {
  EdgeRef,
  EdgeWrite,
  Entity,
  entityId,
  QueryRequest,
  relation,
  ScanRequest,
  tenantId,
  TraverseRequest,
} from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { Coordinator } from "../src/Coordinator.js"
import * as LocalCoordinator from "../src/LocalCoordinator.js"
import * as Fakes from "./support/Fakes.js"

const alpha = tenantId("alpha")
const beta = tenantId("beta")

/** A fresh coordinator over fresh fakes; the state is returned for assertions. */
const setup = Effect.gen(function* () {
  const state = yield* Fakes.makeState
  const coordinator = yield* Effect.provide(
    Coordinator,
    LocalCoordinator.layer.pipe(Layer.provide(Fakes.layer(state))),
  )
  return { state, coordinator }
})

const entity = (id: string, vector?: ReadonlyArray<number>, extra: { readonly type?: string; readonly edges?: [] } = {}) =>
  new Entity({ id: entityId(id), ...(vector === undefined ? {} : { vector }), ...extra })

const failureTag = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>): string | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : undefined

describe("LocalCoordinator", () => {
  it.effect("writes a batch in one storage write, every mutation tagged with the caller's tenant", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      const result = yield* coordinator.upsert(alpha, [entity("a", [1, 0, 0]), entity("b", [0, 1, 0]), entity("c")])
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, ["a", "b", "c"])
      assert.deepStrictEqual(result.failed, [])
      assert.strictEqual(state.writes.length, 1)
      assert.isTrue(state.writes[0]!.mutations.every((m) => m.tenant === alpha))
      assert.deepStrictEqual(state.awaited, [1], "waited for the index to reach the write's seq")
      const got = yield* coordinator.get(alpha, entityId("a"))
      assert.deepStrictEqual(got.vector, [1, 0, 0])
      assert.strictEqual(failureTag(yield* Effect.exit(coordinator.get(beta, entityId("a")))), "NotFound")
    }),
  )

  it.effect("refuses bad entities one by one and writes the rest", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      yield* coordinator.upsert(alpha, [entity("first", [1, 2, 3])])
      // built without validation, as an embedder could
      const nan = Entity.make({ id: entityId("nan"), vector: [1, Number.NaN, 3] }, { disableValidation: true })
      const result = yield* coordinator.upsert(alpha, [
        entity("ok", [3, 2, 1]),
        entity("wrong-dim", [1, 2]),
        nan,
        entity("ok2"),
      ])
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, ["ok", "ok2"])
      assert.deepStrictEqual(
        result.failed.map((f) => [f.id, f.error._tag, f.error.field]),
        [
          ["wrong-dim", "DimensionMismatch", "entities[1].vector"],
          ["nan", "InvalidInput", "entities[2].vector[1]"],
        ],
      )
      assert.include(result.failed[0]!.error.message, "2")
      assert.include(result.failed[0]!.error.message, "3")
      assert.strictEqual(state.writes.length, 2)
      assert.strictEqual(state.writes[1]!.mutations.length, 2)
    }),
  )

  it.effect("a batch on a fresh tenant: the first vector fixes the dimension, every later mismatch names its own field", () =>
    Effect.gen(function* () {
      const { coordinator } = yield* setup
      const result = yield* coordinator.upsert(alpha, [
        entity("a", [1, 2]),
        entity("b", [1, 2, 3]),
        entity("c", [3, 2]),
        entity("d", [0, 0, 1]),
      ])
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, ["a", "c"])
      assert.deepStrictEqual(
        result.failed.map((f) => [f.id, f.error._tag, f.error.field, f.error.message]),
        [
          ["b", "DimensionMismatch", "entities[1].vector", "entities[1].vector: vector dimension 3 does not match the tenant's dimension 2"],
          ["d", "DimensionMismatch", "entities[3].vector", "entities[3].vector: vector dimension 3 does not match the tenant's dimension 2"],
        ],
      )
    }),
  )

  it.effect("a repeated id writes the last occurrence and reports the earlier ones", () =>
    Effect.gen(function* () {
      const { coordinator } = yield* setup
      const result = yield* coordinator.upsert(alpha, [
        entity("x", undefined, { type: "old" }),
        entity("x", undefined, { type: "new" }),
      ])
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, ["x"])
      assert.strictEqual(result.failed[0]!.error.field, "entities[0].id")
      assert.strictEqual((yield* coordinator.get(alpha, entityId("x"))).type, "new")
    }),
  )

  it.effect("an all-bad batch writes nothing", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      yield* coordinator.upsert(alpha, [entity("a", [1, 2])])
      const result = yield* coordinator.upsert(alpha, [entity("b", [1])])
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, [])
      assert.strictEqual(state.writes.length, 1)
      assert.deepStrictEqual(yield* coordinator.upsert(alpha, []), { ids: [], failed: [] })
      assert.strictEqual(state.writes.length, 1)
    }),
  )

  it.effect("wait=false acknowledges without waiting for the index; the default waits", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      state.hold = true
      yield* coordinator.upsert(alpha, [entity("a", [1])], { wait: false })
      assert.deepStrictEqual(state.awaited, [])
      const waiting = yield* Effect.fork(coordinator.upsert(alpha, [entity("b", [1])]))
      yield* TestClock.adjust("1 second")
      assert.isNull(waiting.unsafePoll(), "a waiting write is not acknowledged before the index catches up")
      yield* Fakes.release(state)
      const result = yield* Fiber.join(waiting)
      assert.deepStrictEqual<ReadonlyArray<string>>(result.ids, ["b"])
      assert.deepStrictEqual(state.awaited, [2])
    }),
  )

  it.effect("remove: NotFound when absent, a row delete otherwise", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      assert.strictEqual(failureTag(yield* Effect.exit(coordinator.remove(alpha, entityId("nope")))), "NotFound")
      assert.strictEqual(state.writes.length, 0)
      yield* coordinator.upsert(alpha, [entity("a")])
      yield* coordinator.remove(alpha, entityId("a"))
      assert.strictEqual(state.writes[1]!.mutations[0]!._tag, "DeleteEntity")
      assert.strictEqual(failureTag(yield* Effect.exit(coordinator.get(alpha, entityId("a")))), "NotFound")
    }),
  )

  it.effect("edges: put to missing entities is allowed, delete removes one edge", () =>
    Effect.gen(function* () {
      const { state, coordinator } = yield* setup
      const rel = relation("cites")
      yield* coordinator.putEdges(alpha, [
        new EdgeWrite({ from: entityId("a"), to: entityId("ghost"), relation: rel, weight: 0.5 }),
        new EdgeWrite({ from: entityId("a"), to: entityId("b"), relation: rel }),
      ])
      assert.deepStrictEqual(
        state.writes[0]!.mutations.map((m) => m._tag),
        ["PutEdge", "PutEdge"],
      )
      const a = yield* coordinator.get(alpha, entityId("a"))
      assert.deepStrictEqual(
        a.edges?.map((e) => [e.to, e.weight]),
        [
          ["ghost", 0.5],
          ["b", 1],
        ],
      )
      yield* coordinator.removeEdges(alpha, [new EdgeRef({ from: entityId("a"), to: entityId("ghost"), relation: rel })])
      assert.deepStrictEqual((yield* coordinator.get(alpha, entityId("a"))).edges?.map((e) => e.to), ["b"])
      const bad = EdgeWrite.make(
        { from: entityId("a"), to: entityId("b"), relation: rel, weight: 2 },
        { disableValidation: true },
      )
      const exit = yield* Effect.exit(coordinator.putEdges(alpha, [bad]))
      assert.strictEqual(failureTag(exit), "InvalidInput")
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "InvalidInput") {
        assert.strictEqual(exit.cause.error.field, "edges[0].weight")
      }
      yield* coordinator.putEdges(alpha, [])
      assert.strictEqual(state.writes.length, 2)
    }),
  )

  it.effect("query checks the tenant's dimension, then runs the executor", () =>
    Effect.gen(function* () {
      const { coordinator } = yield* setup
      yield* coordinator.upsert(alpha, [entity("a", [1, 0]), entity("b", [0, 1])])
      yield* coordinator.upsert(beta, [entity("z", [1, 0, 0])])
      const results = yield* coordinator.query(alpha, new QueryRequest({ vector: [1, 0.1], k: 1 }))
      assert.deepStrictEqual(
        results.map((r) => r.id),
        ["a"],
      )
      const exit = yield* Effect.exit(coordinator.query(alpha, new QueryRequest({ vector: [1, 0, 0], k: 1 })))
      assert.strictEqual(failureTag(exit), "DimensionMismatch")
    }),
  )

  it.effect("traverse and scan are per tenant", () =>
    Effect.gen(function* () {
      const { coordinator } = yield* setup
      const rel = relation("r")
      yield* coordinator.upsert(alpha, [
        entity("a", undefined, { edges: [] }),
        entity("b"),
        entity("c"),
      ])
      yield* coordinator.putEdges(alpha, [
        new EdgeWrite({ from: entityId("a"), to: entityId("b"), relation: rel, weight: 0.5 }),
        new EdgeWrite({ from: entityId("b"), to: entityId("c"), relation: rel, weight: 0.5 }),
      ])
      const reached = yield* coordinator.traverse(alpha, new TraverseRequest({ from: [entityId("a")], hops: 2 }))
      assert.deepStrictEqual(
        reached.map((r) => [r.id, r.depth, r.weight]),
        [
          ["b", 1, 0.5],
          ["c", 2, 0.25],
        ],
      )
      assert.deepStrictEqual(yield* coordinator.traverse(beta, new TraverseRequest({ from: [entityId("a")], hops: 2 })), [])
      const page1 = yield* coordinator.scan(alpha, new ScanRequest({ limit: 2 }))
      assert.deepStrictEqual(
        page1.entities.map((e) => e.id),
        ["a", "b"],
      )
      assert.isDefined(page1.nextPageToken)
      const page2 = yield* coordinator.scan(alpha, new ScanRequest({ limit: 2, pageToken: page1.nextPageToken! }))
      assert.deepStrictEqual(
        page2.entities.map((e) => e.id),
        ["c"],
      )
      assert.isUndefined(page2.nextPageToken)
      assert.deepStrictEqual((yield* coordinator.scan(beta, new ScanRequest({}))).entities, [])
    }),
  )
})
