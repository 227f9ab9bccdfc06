import { DimensionMismatch, Entity, entityId, GraphEdge, InvalidInput, PermissionDenied, relation, tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Compat from "../src/Compat.js"
import { CompatFakeCoordinator } from "./CompatFakeCoordinator.js"

const T = tenantId("acme")
const decodeEntity = Schema.decodeUnknownSync(Compat.CompatEntity)

describe("Compat mapping", () => {
  it("keeps the newest embedding version as the vector", () => {
    const input = decodeEntity({
      entity_id: "e1",
      embeddings: [
        { version: 2, vector: [1, 0], timestamp_nanos: 5 },
        { version: "3", vector: [0, 1], timestamp_nanos: "1" },
        { version: 1, vector: [1, 1] },
      ],
    })
    const write = Either.getOrThrow(Compat.toCoreWrite(T, input, "entity"))
    assert.deepStrictEqual(write.entity.vector, [0, 1])
    assert.strictEqual(write.entity.vectorVersion, 3)
  })

  it("accepts graph-only entities without embeddings", () => {
    const write = Either.getOrThrow(Compat.toCoreWrite(T, decodeEntity({ entity_id: "g" }), "entity"))
    assert.strictEqual(write.entity.vector, undefined)
    assert.strictEqual(write.incomingEdges.length, 0)
  })

  it("turns incoming edges into writes on the source entity", () => {
    const input = decodeEntity({
      entity_id: "b",
      incoming_edges: [{ from_entity: "a", to_entity: "b", relation: "cites", weight: 0.25 }],
      outgoing_edges: [{ from_entity: "", to_entity: "c", relation: "links" }],
    })
    const write = Either.getOrThrow(Compat.toCoreWrite(T, input, "entity"))
    assert.strictEqual(write.incomingEdges.length, 1)
    assert.strictEqual(write.incomingEdges[0].from, "a")
    assert.strictEqual(write.incomingEdges[0].to, "b")
    assert.strictEqual(write.incomingEdges[0].weight, 0.25)
    assert.deepStrictEqual(
      write.entity.edges?.map((e) => [e.to, e.relation, e.weight]),
      [["c", "links", 1]],
    )
  })

  it("refuses another tenant and mismatched edge ends", () => {
    const other = Compat.toCoreWrite(T, decodeEntity({ entity_id: "x", tenant_id: "evil" }), "entity")
    assert.isTrue(Either.isLeft(other) && other.left instanceof PermissionDenied)
    const own = Compat.toCoreWrite(T, decodeEntity({ entity_id: "x", tenant_id: "acme" }), "entity")
    assert.isTrue(Either.isRight(own))
    const bad = Compat.toCoreWrite(
      T,
      decodeEntity({ entity_id: "x", outgoing_edges: [{ from_entity: "y", to_entity: "z", relation: "r" }] }),
      "entities[4]",
    )
    assert.isTrue(Either.isLeft(bad) && bad.left instanceof InvalidInput)
    if (Either.isLeft(bad) && bad.left instanceof InvalidInput) {
      assert.strictEqual(bad.left.field, "entities[4].outgoing_edges[0].from_entity")
    }
  })

  it("converts timestamps between nanoseconds and milliseconds exactly", () => {
    const input = decodeEntity({
      entity_id: "t",
      created_at_nanos: "1700000000123456789",
      updated_at_nanos: 1700000000999000000,
    })
    const write = Either.getOrThrow(Compat.toCoreWrite(T, input, "entity"))
    assert.strictEqual(write.entity.createdAt, 1700000000123)
    assert.strictEqual(write.entity.updatedAt, 1700000000999)
    const out = Compat.fromCoreEntity(T, write.entity)
    assert.strictEqual(out.created_at_nanos, 1700000000123000000n)
    assert.strictEqual(out.updated_at_nanos, 1700000000999000000n)
  })

  it("maps a core entity back to the compatible shape", () => {
    const entity = new Entity({
      id: entityId("n"),
      type: "doc",
      vector: [0.5, 0.5],
      vectorVersion: 7,
      importance: 0.9,
      edges: [new GraphEdge({ to: entityId("m"), relation: relation("r"), weight: 0.5 })],
      createdAt: 1000,
      updatedAt: 2000,
    })
    const out = Compat.fromCoreEntity(T, entity)
    assert.strictEqual(out.tenant_id, "acme")
    assert.deepStrictEqual(out.embeddings, [{ version: 7, vector: [0.5, 0.5], timestamp_nanos: 2_000_000_000n }])
    assert.deepStrictEqual(out.outgoing_edges[0], {
      from_entity: "n",
      to_entity: "m",
      relation: "r",
      weight: 0.5,
      timestamp_nanos: 0n,
    })
    assert.deepStrictEqual(out.incoming_edges, [])
    assert.strictEqual(out.importance, 0.9)
  })

  it("decodes every consistency spelling and refuses unknown ones", () => {
    const decode = Schema.decodeUnknownEither(Compat.ConsistencyLevel)
    const cases: Array<[unknown, "ONE" | "QUORUM" | "ALL"]> = [
      ["CONSISTENCY_ONE", "ONE"],
      ["CONSISTENCY_QUORUM", "QUORUM"],
      ["CONSISTENCY_ALL", "ALL"],
      ["ONE", "ONE"],
      ["QUORUM", "QUORUM"],
      ["ALL", "ALL"],
      [0, "ONE"],
      [1, "QUORUM"],
      [2, "ALL"],
    ]
    for (const [input, expected] of cases) assert.deepStrictEqual(Either.getOrThrow(decode(input)), expected)
    assert.isTrue(Either.isLeft(decode("TWO")))
    assert.isTrue(Either.isLeft(decode(3)))
  })

  it("refuses negative, fractional and non-numeric timestamps", () => {
    const decode = Schema.decodeUnknownEither(Compat.Nanos)
    assert.isTrue(Either.isLeft(decode(-1)))
    assert.isTrue(Either.isLeft(decode(1.5)))
    assert.isTrue(Either.isLeft(decode("12a")))
    assert.deepStrictEqual(decode("0"), Either.right(0n))
  })
})

describe("Compat operations", () => {
  it.effect("putEntity writes the entity, then its incoming edges on their sources", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make()
      const request = Schema.decodeUnknownSync(Compat.PutEntityRequest)({
        entity: { entity_id: "b", incoming_edges: [{ from_entity: "a", relation: "cites" }] },
        consistency_level: "CONSISTENCY_QUORUM",
      })
      const result = yield* Compat.putEntity(T, request).pipe(Effect.provide(fake.layer))
      assert.strictEqual(result.entity_id, "b")
      assert.deepStrictEqual(
        fake.calls.map((c) => [c.op, c.tenant, c.consistency]),
        [
          ["upsert", "acme", "QUORUM"],
          ["putEdges", "acme", "QUORUM"],
        ],
      )
      assert.deepStrictEqual(fake.edges("acme").map((e) => [e.from, e.to, e.relation]), [["a", "b", "cites"]])
    }))

  it.effect("batchPutEntities counts entities the coordinator refuses", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make({ dimension: 2 })
      const request = Schema.decodeUnknownSync(Compat.BatchPutEntitiesRequest)({
        entities: [
          { entity_id: "a", embeddings: [{ vector: [1, 0] }] },
          { entity_id: "b", embeddings: [{ vector: [1, 0, 0] }] },
          { entity_id: "c" },
        ],
      })
      const result = yield* Compat.batchPutEntities(T, request, { maxBatch: 10, maxK: 100 }).pipe(
        Effect.provide(fake.layer),
      )
      assert.deepStrictEqual([...result.entity_ids], ["a", "c"])
      assert.strictEqual(result.success, false)
      assert.strictEqual(result.success_count, 2)
      assert.strictEqual(result.failure_count, 1)
      assert.include(result.error_message, "b:")
    }))

  it.effect("batchPutEntities refuses a batch over the limit before writing", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make()
      const request = Schema.decodeUnknownSync(Compat.BatchPutEntitiesRequest)({
        entities: [{ entity_id: "a" }, { entity_id: "b" }, { entity_id: "c" }],
      })
      const error = yield* Effect.flip(
        Compat.batchPutEntities(T, request, { maxBatch: 2, maxK: 100 }).pipe(Effect.provide(fake.layer)),
      )
      assert.strictEqual(error._tag, "InvalidInput")
      assert.strictEqual(fake.calls.length, 0)
    }))

  it.effect("putEntity surfaces a dimension mismatch as its typed error", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make({ dimension: 3 })
      const request = Schema.decodeUnknownSync(Compat.PutEntityRequest)({
        entity: { entity_id: "a", embeddings: [{ vector: [1, 0] }] },
      })
      const error = yield* Effect.flip(Compat.putEntity(T, request).pipe(Effect.provide(fake.layer)))
      assert.instanceOf(error, DimensionMismatch)
    }))

  it.effect("query defaults k to 10 and expand_factor to 2 and answers compatible entities", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make()
      yield* Compat.putEntity(
        T,
        Schema.decodeUnknownSync(Compat.PutEntityRequest)({ entity: { entity_id: "a", embeddings: [{ vector: [1, 0] }] } }),
      ).pipe(Effect.provide(fake.layer))
      const answer = yield* Compat.query(
        T,
        Schema.decodeUnknownSync(Compat.CompatQueryRequest)({ query_vector: [1, 0], trace_id: "t-1" }),
        { maxBatch: 10, maxK: 100 },
      ).pipe(Effect.provide(fake.layer))
      const call = fake.calls.find((c) => c.op === "query")
      assert.strictEqual(call?.request?.k, 10)
      assert.strictEqual(call?.request?.expand?.factor, 2)
      assert.strictEqual(answer.trace_id, "t-1")
      assert.strictEqual(answer.total_results, 1)
      assert.strictEqual(answer.results[0].entity?.entity_id, "a")
    }))

  it.effect("rangeScan refuses another tenant", () =>
    Effect.gen(function* () {
      const fake = CompatFakeCoordinator.make()
      const error = yield* Effect.flip(
        Compat.rangeScan(T, { tenant_id: "other" }).pipe(Effect.provide(fake.layer)),
      )
      assert.instanceOf(error, PermissionDenied)
      assert.strictEqual(fake.calls.length, 0)
    }))
})
