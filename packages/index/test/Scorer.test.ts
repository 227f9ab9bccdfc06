import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { DEFAULT_WEIGHTS, ScoreWeights } from "@allidb/core"
import * as Scorer from "../src/Scorer.js"

const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
// Printed so a failing property can be replayed: PROPERTY_SEED=<seed> npx vitest run --project index Scorer
console.log(`Scorer property seed: ${seed}`)

describe("Scorer", () => {
  it("resolves weights over the defaults", () => {
    assert.deepStrictEqual(Scorer.resolveWeights(undefined), { ...DEFAULT_WEIGHTS })
    assert.deepStrictEqual(Scorer.resolveWeights(new ScoreWeights({ graph: 0 })), { ...DEFAULT_WEIGHTS, graph: 0 })
  })

  it("maps distances to similarities per metric", () => {
    assert.strictEqual(Scorer.similarity("cosine", 0), 1)
    assert.strictEqual(Scorer.similarity("cosine", 2), -1)
    assert.strictEqual(Scorer.similarity("l2", 0), 1)
    assert.strictEqual(Scorer.similarity("l2", 3), 0.25)
    assert.strictEqual(Scorer.similarity("ip", 1 - 7.5), 7.5)
  })

  it("decays recency by the half-life", () => {
    assert.strictEqual(Scorer.recency(1000, 1000, 100), 1)
    assert.strictEqual(Scorer.recency(900, 1000, 100), 0.5)
    assert.strictEqual(Scorer.recency(800, 1000, 100), 0.25)
    assert.strictEqual(Scorer.recency(2000, 1000, 100), 1, "future timestamps count as now")
    assert.strictEqual(Scorer.recency(undefined, 1000, 100), 0)
  })

  it("counts missing importance as 0.5 and combines the components", () => {
    assert.strictEqual(Scorer.importanceOf(undefined), 0.5)
    const s = Scorer.score(Scorer.resolveWeights(undefined), { similarity: 1, graph: 1, importance: 0.5, recency: 1 })
    assert.closeTo(s, 0.5 + 0.3 + 0.075 + 0.05, 1e-12)
    assert.closeTo(Scorer.pathWeight([0.5, 0.5], 0.8), 0.25 * 0.64, 1e-12)
  })

  it("ranks by score, then id, deterministically whatever the input order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ id: fc.string({ minLength: 1, maxLength: 3 }), score: fc.integer({ min: 0, max: 3 }) }), {
          maxLength: 40,
        }),
        fc.integer({ min: 0, max: 10 }),
        (items, k) => {
          const a = Scorer.topK(items, k)
          const b = Scorer.topK([...items].reverse(), k)
          assert.deepStrictEqual(
            a.map((x) => [x.id, x.score]),
            b.map((x) => [x.id, x.score]),
          )
          for (let i = 1; i < a.length; i++) assert.isAtMost(Scorer.compareRanked(a[i - 1]!, a[i]!), 0)
          assert.strictEqual(a.length, Math.min(k, items.length))
        },
      ),
      { seed },
    )
  })

  it("never ranks an expanded entity above a direct hit of equal importance and age", () => {
    fc.assert(
      fc.property(
        fc.double({ min: -1, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 5 }),
        fc.double({ min: 0, max: 0.99, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (directSim, simFraction, edgeWeights, decay, importance, recency) => {
          const w = Scorer.resolveWeights(undefined)
          // The expanded entity is at most as similar as the hit (else ANN would have found it first).
          const expandedSim = directSim - simFraction * (directSim + 1)
          const direct = Scorer.score(w, { similarity: directSim, graph: 1, importance, recency })
          const expanded = Scorer.score(w, {
            similarity: expandedSim,
            graph: Scorer.pathWeight(edgeWeights, decay),
            importance,
            recency,
          })
          assert.isBelow(expanded, direct)
        },
      ),
      { seed },
    )
  })

  it("sortRanked orders like sort(compareRanked), short lists and long", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ id: fc.string({ maxLength: 3 }), score: fc.constantFrom(0, 0.5, 1, -0.25) }), {
          selector: (r) => r.id,
          maxLength: 60,
        }),
        (items) => {
          const expected = [...items].sort(Scorer.compareRanked)
          assert.deepStrictEqual(Scorer.sortRanked([...items]), expected)
        },
      ),
      { seed },
    )
  })
})
