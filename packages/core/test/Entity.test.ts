import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { ChunkId, Entity, EntityId, GraphEdge, QueryRequest, Relation, TenantId, TextChunk, unsafeInstance } from "../src/index.js"

const decodeEntity = Schema.decodeUnknownEither(Entity)

describe("ids", () => {
  it("accepts ordinary ids and rejects empty, oversized and control characters", () => {
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(EntityId)("doc-1/π")))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(EntityId)("")))
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(EntityId)("x".repeat(256))))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(EntityId)("x".repeat(257))))
    // 129 two-byte characters = 258 bytes
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(EntityId)("é".repeat(129))))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TenantId)("a\u0000b")))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TenantId)("a\nb")))
  })
})

describe("Entity", () => {
  it("decodes the native JSON shape with snake_case keys", () => {
    const e = decodeEntity({
      id: "a",
      type: "doc",
      vector: [0.1, 0.2],
      metadata: { lang: "en", n: 3, ok: true },
      importance: 0.7,
      chunks: [{ id: "c1", text: "hello" }],
      edges: [{ to: "b", relation: "cites" }],
      created_at: 1000,
    })
    assert.isTrue(Either.isRight(e))
    if (Either.isRight(e)) {
      assert.strictEqual(e.right.createdAt, 1000)
      assert.strictEqual(e.right.edges?.[0]?.weight, 1)
    }
  })

  it("rejects NaN and infinite vector components, and importance outside [0,1]", () => {
    assert.isTrue(Either.isLeft(decodeEntity({ id: "a", vector: [1, Number.NaN] })))
    assert.isTrue(Either.isLeft(decodeEntity({ id: "a", vector: [Number.POSITIVE_INFINITY] })))
    assert.isTrue(Either.isLeft(decodeEntity({ id: "a", vector: [] })))
    assert.isTrue(Either.isLeft(decodeEntity({ id: "a", importance: 1.5 })))
    assert.isTrue(Either.isLeft(decodeEntity({ id: "a", edges: [{ to: "b", relation: "r", weight: -0.1 }] })))
  })

  it("round-trips through encode", () => {
    const e = Schema.decodeUnknownSync(Entity)({ id: "a", vector: [1, 2], updated_at: 5 })
    const encoded = Schema.encodeSync(Entity)(e)
    assert.deepStrictEqual(encoded, { id: "a", vector: [1, 2], updated_at: 5 })
  })
})

describe("QueryRequest", () => {
  it("bounds k", () => {
    const decode = Schema.decodeUnknownEither(QueryRequest)
    assert.isTrue(Either.isRight(decode({ vector: [1], k: 10 })))
    assert.isTrue(Either.isLeft(decode({ vector: [1], k: 0 })))
    assert.isTrue(Either.isLeft(decode({ vector: [1], k: 1_000_000 })))
  })
})

describe("unsafeInstance", () => {
  it("makes what the constructor makes from valid props: same class, keys, encoding and equality", () => {
    const props = {
      id: EntityId.make("e1"),
      type: "doc",
      vector: [0.5, -1, 2],
      vectorVersion: 3,
      metadata: { lang: "en", n: 2 },
      importance: 0.25,
      chunks: [unsafeInstance(TextChunk, { id: ChunkId.make("c1"), text: "hello" })],
      edges: [unsafeInstance(GraphEdge, { relation: Relation.make("cites"), to: EntityId.make("e2"), weight: 0.5 })],
      createdAt: 1,
      updatedAt: 2,
    }
    const built = unsafeInstance(Entity, props)
    const constructed = new Entity({
      ...props,
      chunks: [new TextChunk({ id: ChunkId.make("c1"), text: "hello" })],
      edges: [new GraphEdge({ relation: Relation.make("cites"), to: EntityId.make("e2"), weight: 0.5 })],
    })
    assert.isTrue(built instanceof Entity)
    assert.deepStrictEqual(Object.keys(built), Object.keys(constructed))
    assert.deepStrictEqual(Schema.encodeSync(Entity)(built), Schema.encodeSync(Entity)(constructed))
    assert.deepStrictEqual(built, constructed)
  })
})
