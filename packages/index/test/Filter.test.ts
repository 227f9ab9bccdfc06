import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { QueryFilter } from "@allidb/core"
import * as Filter from "../src/Filter.js"

const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
console.log(`Filter property seed: ${seed}`)

const doc = { type: "doc", metadata: { lang: "en", year: 2020, draft: false } }
const chunk = { type: "chunk", metadata: { lang: "de", year: 2024, draft: true } }
const bare = {}

const matches = (filter: ConstructorParameters<typeof QueryFilter>[0], a: Filter.Filterable) =>
  Filter.compile(new QueryFilter(filter))!.matches(a)

describe("Filter", () => {
  it("no conditions compile to no filter", () => {
    assert.isUndefined(Filter.compile(undefined))
    assert.isUndefined(Filter.compile(new QueryFilter({})))
  })

  it("type equality and lists", () => {
    assert.isTrue(matches({ type: "doc" }, doc))
    assert.isFalse(matches({ type: "doc" }, chunk))
    assert.isFalse(matches({ type: "doc" }, bare))
    assert.isTrue(matches({ type: ["chunk", "doc"] }, chunk))
    assert.isFalse(matches({ type: [] }, chunk))
  })

  it("metadata equality, eq, in and ranges", () => {
    assert.isTrue(matches({ metadata: { lang: "en" } }, doc))
    assert.isFalse(matches({ metadata: { lang: "en" } }, chunk))
    assert.isTrue(matches({ metadata: { draft: { eq: true } } }, chunk))
    assert.isFalse(matches({ metadata: { year: "2020" } }, doc), "a string never equals a number")
    assert.isTrue(matches({ metadata: { lang: { in: ["fr", "de"] } } }, chunk))
    assert.isFalse(matches({ metadata: { lang: { in: ["fr", "de"] } } }, doc))
    assert.isTrue(matches({ metadata: { year: { gte: 2020, lt: 2021 } } }, doc))
    assert.isFalse(matches({ metadata: { year: { gt: 2020 } } }, doc))
    assert.isTrue(matches({ metadata: { year: { lte: 2024, gt: 2023 } } }, chunk))
    assert.isFalse(matches({ metadata: { lang: { gt: 0 } } }, doc), "ranges only match numbers")
    assert.isFalse(matches({ metadata: { missing: { gte: 0 } } }, doc))
    assert.isTrue(matches({ type: "doc", metadata: { lang: "en", year: { lt: 2021 } } }, doc))
    assert.isFalse(matches({ type: "doc", metadata: { lang: "de" } }, doc), "conditions are ANDed")
  })

  it("an entity matching a filter is in the smallest posting group", () => {
    const value = fc.oneof(fc.constantFrom("a", "b", "c"), fc.integer({ min: 0, max: 3 }), fc.boolean())
    const attrs = fc.record({
      type: fc.option(fc.constantFrom("x", "y"), { nil: undefined }),
      metadata: fc.option(fc.dictionary(fc.constantFrom("k1", "k2"), value), { nil: undefined }),
    })
    const condition = fc.oneof(
      value,
      value.map((eq) => ({ eq })),
      fc.array(value, { maxLength: 3 }).map((values) => ({ in: values })),
      fc.record({ gte: fc.integer({ min: 0, max: 3 }) }),
    )
    const filter = fc.record({
      type: fc.option(fc.oneof(fc.constantFrom("x", "y"), fc.array(fc.constantFrom("x", "y"))), { nil: undefined }),
      metadata: fc.option(fc.dictionary(fc.constantFrom("k1", "k2"), condition), { nil: undefined }),
    })
    fc.assert(
      fc.property(attrs, filter, (a, f) => {
        const compiled = Filter.compile(new QueryFilter(f as ConstructorParameters<typeof QueryFilter>[0]))
        if (compiled === undefined || !compiled.matches(a)) return
        const keys = new Set(Filter.postingKeys(a))
        for (const group of compiled.postingGroups) assert.isTrue(group.some((k) => keys.has(k)))
      }),
      { seed },
    )
  })
})
