import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { decodeQueryRequest, decodeQueryRequestEither, MAX_K, QueryRequest, ScoreWeights } from "../src/index.js"

const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
// Printed so a failing property can be replayed: PROPERTY_SEED=<seed> npx vitest run --project core Query
console.log(`Query property seed: ${seed}`)

const schemaDecode = Schema.decodeUnknownEither(QueryRequest)

/** Everything a caller can observe of a decode: the value's shape, classes and identity of the vector, or the error. */
const observe = (input: unknown, result: Either.Either<QueryRequest, ParseResult.ParseError>) =>
  Either.isLeft(result)
    ? { error: result.left.message, issues: ParseResult.ArrayFormatter.formatErrorSync(result.left) }
    : {
        keys: Object.keys(result.right),
        json: JSON.stringify(result.right, (_k, v) => (v === undefined ? "<undefined>" : v)),
        isRequest: result.right instanceof QueryRequest,
        weightKeys: result.right.weights === undefined ? undefined : Object.keys(result.right.weights),
        weightsClass: result.right.weights === undefined ? undefined : result.right.weights instanceof ScoreWeights,
        sameVector: result.right.vector === (input as { vector?: unknown }).vector,
        hasOwn: Object.keys(result.right).map((k) => Object.hasOwn(result.right, k)),
      }

// Values that are right for some fields and wrong for others: the generator
// mixes them into every field so both paths see valid and invalid requests.
const anyValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 20 }),
  fc.constantFrom(0, -0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_K, MAX_K + 1, 100_000, 100_001, 2 ** 53),
  fc.double({ min: -2, max: 2 }),
  fc.string({ maxLength: 3 }),
  fc.constant([]),
  fc.constant({}),
)
const component = fc.oneof(
  { weight: 20, arbitrary: fc.double({ min: -10, max: 10, noNaN: true }) },
  { weight: 1, arbitrary: anyValue },
)
const vector = fc.oneof(
  { weight: 10, arbitrary: fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 1, maxLength: 8 }) },
  { weight: 2, arbitrary: fc.array(component, { minLength: 0, maxLength: 6 }) },
  { weight: 1, arbitrary: anyValue },
)
const weightsValue = fc.oneof(
  { weight: 6, arbitrary: fc.record(
    {
      vector: fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), anyValue),
      graph: fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), anyValue),
      importance: fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), anyValue),
      recency: fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), anyValue),
      extra: anyValue,
    },
    { requiredKeys: [] },
  ) },
  { weight: 1, arbitrary: anyValue },
)
const noisyRequest = fc.record(
  {
    vector,
    k: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 100 }) }, { weight: 2, arbitrary: anyValue }),
    ef: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 500 }) }, { weight: 2, arbitrary: anyValue }),
    weights: weightsValue,
    include_entities: fc.oneof(fc.boolean(), anyValue),
    include_vectors: fc.oneof(fc.boolean(), anyValue),
    includeEntities: fc.boolean(),
    explain: fc.oneof(fc.boolean(), anyValue),
    expand: fc.oneof(fc.constant({ hops: 1 }), fc.constant({ hops: 9 }), anyValue),
    filter: fc.oneof(fc.constant({ type: "doc" }), fc.constant({ metadata: { n: { gt: "x" } } }), anyValue),
    other: anyValue,
  },
  { requiredKeys: [] },
)
/** Mostly valid requests (what the fast path takes), each optional key present, absent or undefined. */
const optionalOf = <A>(a: fc.Arbitrary<A>) => fc.oneof({ weight: 8, arbitrary: a }, { weight: 1, arbitrary: fc.constant(undefined) })
const validRequest = fc.record(
  {
    vector: fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 1, maxLength: 8 }),
    k: fc.integer({ min: 1, max: MAX_K }),
    ef: optionalOf(fc.integer({ min: 1, max: 100_000 })),
    weights: optionalOf(
      fc.record(
        {
          vector: optionalOf(fc.double({ min: 0, max: 2, noNaN: true })),
          graph: optionalOf(fc.double({ min: 0, max: 2, noNaN: true })),
          importance: optionalOf(fc.double({ min: 0, max: 2, noNaN: true })),
          recency: optionalOf(fc.double({ min: 0, max: 2, noNaN: true })),
        },
        { requiredKeys: [] },
      ),
    ),
    include_entities: optionalOf(fc.boolean()),
    include_vectors: optionalOf(fc.boolean()),
    explain: optionalOf(fc.boolean()),
  },
  { requiredKeys: ["vector", "k"] },
)
const wireRequest = fc.oneof(validRequest, noisyRequest)

describe("decodeQueryRequest", () => {
  it("decodes a plain kNN request like the schema, to the same classes, sharing the vector", () => {
    const input = { vector: [0.5, -1], k: 10, ef: 24, weights: { vector: 1, graph: 0 }, include_entities: false }
    const decoded = decodeQueryRequest(input)
    assert.isTrue(decoded instanceof QueryRequest)
    assert.isTrue(decoded.weights instanceof ScoreWeights)
    assert.strictEqual(decoded.vector, input.vector)
    assert.deepStrictEqual(observe(input, Either.right(decoded)), observe(input, schemaDecode(input)))
    assert.deepStrictEqual(Schema.encodeSync(QueryRequest)(decoded), Schema.encodeSync(QueryRequest)(Schema.decodeUnknownSync(QueryRequest)(input)))
  })

  it("fails a bad request with the schema's error, naming the field and the rule", () => {
    const bad = [
      { vector: [1, Number.NaN], k: 1 },
      { vector: [], k: 1 },
      { vector: [1], k: 0 },
      { vector: [1], k: 1.5 },
      { vector: [1], k: 1, ef: 100_001 },
      { vector: [1], k: 1, weights: { graph: -1 } },
      { vector: [1], k: 1, include_entities: "yes" },
      { k: 1 },
    ]
    for (const input of bad) {
      const fast = decodeQueryRequestEither(input)
      assert.isTrue(Either.isLeft(fast), JSON.stringify(input))
      assert.deepStrictEqual(observe(input, fast), observe(input, schemaDecode(input)))
      assert.throws(() => decodeQueryRequest(input), ParseResult.ParseError)
    }
    const nan = decodeQueryRequestEither({ vector: [1, Number.NaN], k: 1 })
    assert.isTrue(Either.isLeft(nan))
    if (Either.isLeft(nan)) {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(nan.left)
      assert.deepStrictEqual(issue?.path, ["vector", 1])
    }
  })

  it("agrees with Schema.decodeUnknownEither(QueryRequest) on generated wire requests, valid and invalid", () => {
    let accepted = 0
    let refused = 0
    fc.assert(
      fc.property(wireRequest, (input) => {
        const expected = schemaDecode(input)
        if (Either.isRight(expected)) accepted++
        else refused++
        assert.deepStrictEqual(observe(input, decodeQueryRequestEither(input)), observe(input, expected))
      }),
      { seed, numRuns: 3000 },
    )
    // The generator must exercise both outcomes, or the property proves little.
    assert.isAbove(accepted, 100)
    assert.isAbove(refused, 100)
  })

  it("leaves objects that are not plain to the schema (prototype properties count there)", () => {
    const inherited = Object.assign(Object.create({ k: 3 }) as object, { vector: [1] })
    assert.deepStrictEqual(observe(inherited, decodeQueryRequestEither(inherited)), observe(inherited, schemaDecode(inherited)))
    for (const input of [null, 5, "x", [1], undefined]) {
      assert.deepStrictEqual(observe(input, decodeQueryRequestEither(input)), observe(input, schemaDecode(input)))
    }
  })
})
