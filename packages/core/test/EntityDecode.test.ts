/**
 * decodeEntity / decodeEntities / validateEntityFields against the schemas
 * they stand for: on generated input, valid and invalid, the fast paths must
 * give what the schema gives — the same classes, keys, values and errors.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { decodeEntities, decodeEntity, Entity, GraphEdge, TextChunk, validateEntityFields } from "../src/index.js"

const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
// Printed so a failing property can be replayed: PROPERTY_SEED=<seed> npx vitest run --project core EntityDecode
console.log(`EntityDecode property seed: ${seed}`)

const schemaEntity = Schema.decodeUnknownEither(Entity)
const schemaEntities = Schema.decodeUnknownEither(Schema.Array(Entity))
const schemaValidate = Schema.validateEither(Schema.Struct(Entity.fields))
const attempt = <A>(f: () => A): Either.Either<A, ParseResult.ParseError> => {
  try {
    return Either.right(f())
  } catch (e) {
    if (e instanceof ParseResult.ParseError) return Either.left(e)
    throw e
  }
}

/** Shape, classes and key order of a decoded value (recursively), so two decodes can be compared. */
const shape = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(shape)
  if (typeof v === "object" && v !== null) {
    const proto = Object.getPrototypeOf(v)
    const kind = v instanceof Entity ? "Entity" : v instanceof TextChunk ? "TextChunk" : v instanceof GraphEdge ? "GraphEdge" : proto === Object.prototype ? "object" : "other"
    return { kind, entries: Object.keys(v).map((k) => [k, shape((v as Record<string, unknown>)[k])]) }
  }
  return typeof v === "number" && Number.isNaN(v) ? "NaN" : v
}
const observe = <A>(result: Either.Either<A, ParseResult.ParseError>) =>
  Either.isLeft(result)
    ? { error: result.left.message, issues: ParseResult.ArrayFormatter.formatErrorSync(result.left) }
    : { value: shape(result.right) }

const odd = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.constantFrom(0, -0, -1, 1.5, 2, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -3),
  fc.constantFrom("", "x", "a\u0000b", "é".repeat(129), "x".repeat(257), "x".repeat(256)),
  fc.constant([]),
  fc.constant({}),
)
const maybeOdd = <A>(a: fc.Arbitrary<A>, oddWeight = 1) => fc.oneof({ weight: 12, arbitrary: a }, { weight: oddWeight, arbitrary: odd })
const id = maybeOdd(fc.constantFrom("a", "doc-1/π", "e42", "x".repeat(86), "é".repeat(128)))
const metadata = maybeOdd(
  fc.dictionary(fc.constantFrom("lang", "n", "ok", "group"), fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.boolean(), fc.double({ noNaN: true, min: -5, max: 5 }), odd), { maxKeys: 3 }),
)
const chunkMetadata = maybeOdd(fc.dictionary(fc.constantFrom("page", "src"), fc.oneof({ weight: 8, arbitrary: fc.string({ maxLength: 3 }) }, { weight: 1, arbitrary: odd }), { maxKeys: 2 }))
const chunk = maybeOdd(fc.record({ id, text: maybeOdd(fc.string({ maxLength: 8 })), metadata: chunkMetadata }, { requiredKeys: ["id", "text"] }))
const edge = maybeOdd(
  fc.record(
    { to: id, relation: maybeOdd(fc.constantFrom("cites", "part_of")), weight: maybeOdd(fc.double({ min: 0, max: 1, noNaN: true })), metadata: chunkMetadata },
    { requiredKeys: ["to", "relation"] },
  ),
)
const wireEntity = fc.record(
  {
    id,
    type: maybeOdd(fc.constantFrom("doc", "chunk", "t".repeat(86), "€".repeat(86))),
    vector: maybeOdd(fc.array(fc.oneof({ weight: 30, arbitrary: fc.double({ min: -1, max: 1, noNaN: true }) }, { weight: 1, arbitrary: odd }), { minLength: 0, maxLength: 6 })),
    vector_version: maybeOdd(fc.integer({ min: 0, max: 5 })),
    metadata,
    importance: maybeOdd(fc.double({ min: 0, max: 1, noNaN: true })),
    chunks: maybeOdd(fc.array(chunk, { maxLength: 3 })),
    edges: maybeOdd(fc.array(edge, { maxLength: 5 })),
    created_at: maybeOdd(fc.integer({ min: 0, max: 2 ** 40 })),
    updated_at: maybeOdd(fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(Number.NaN))),
    vectorVersion: fc.integer(),
    extra: odd,
  },
  { requiredKeys: ["id"] },
)

describe("decodeEntity", () => {
  it("decodes the bench's entity shape like the schema, sharing the vector array", () => {
    const input = {
      id: "e7",
      type: "doc",
      vector: [0.5, -0.25],
      metadata: { group: 7, cluster: 3 },
      importance: 0.4,
      chunks: [{ id: "c0", text: "Passage 7" }],
      edges: [{ to: "e1", relation: "cites", weight: 0.5 }, { to: "e2", relation: "part_of" }],
    }
    const fast = decodeEntity(input)
    assert.strictEqual(fast.vector, input.vector)
    assert.strictEqual(fast.edges?.[1]?.weight, 1, "weight defaults to 1")
    assert.deepStrictEqual(observe(Either.right(fast)), observe(schemaEntity(input)))
    assert.deepStrictEqual(Schema.encodeSync(Entity)(fast), Schema.encodeSync(Entity)(Schema.decodeUnknownSync(Entity)(input)))
  })

  it("agrees with the schema on generated wire entities, one by one and as a batch", () => {
    let accepted = 0
    let refused = 0
    fc.assert(
      fc.property(wireEntity, fc.array(wireEntity, { maxLength: 3 }), (input, batch) => {
        const expected = schemaEntity(input)
        if (Either.isRight(expected)) accepted++
        else refused++
        assert.deepStrictEqual(observe(attempt(() => decodeEntity(input))), observe(expected))
        assert.deepStrictEqual(observe(attempt(() => decodeEntities(batch))), observe(schemaEntities(batch)))
      }),
      { seed, numRuns: 2000 },
    )
    // Both outcomes must be exercised, or the property proves little.
    assert.isAbove(accepted, 200)
    assert.isAbove(refused, 200)
  })

  it("validateEntityFields agrees with Schema.validateEither(Schema.Struct(Entity.fields)) on entities and near-entities", () => {
    let valid = 0
    fc.assert(
      fc.property(wireEntity, fc.nat(9), (input, mutation) => {
        const decoded = schemaEntity(input)
        if (Either.isLeft(decoded)) return
        // Entities as an embedder may build them (disableValidation): one field broken, or left alone.
        const e: Record<string, unknown> = { ...decoded.right }
        if (mutation === 1) e.importance = 2
        if (mutation === 2) e.vector = [1, Number.NaN]
        if (mutation === 3) e.chunks = [{ id: "c", text: "plain object, not a TextChunk" }]
        if (mutation === 4) e.id = ""
        if (mutation === 5) e.type = undefined
        if (mutation === 6) e.metadata = { x: Number.POSITIVE_INFINITY }
        const expected = schemaValidate(e)
        if (Either.isRight(expected)) valid++
        const got = validateEntityFields(e)
        assert.strictEqual(Either.isRight(got), Either.isRight(expected))
        if (Either.isLeft(got) && Either.isLeft(expected)) assert.deepStrictEqual(observe(got), observe(expected))
      }),
      { seed, numRuns: 2000 },
    )
    assert.isAbove(valid, 100)
  })
})
