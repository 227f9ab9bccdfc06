import { assert, describe, it } from "@effect/vitest"
import { Entity, type EntityId, GraphEdge, type Relation, SeededRandom } from "@allidb/core"
import * as Filter from "../src/Filter.js"
import { TenantIndex } from "../src/TenantIndex.js"

const params = { m: 8, efConstruction: 50, randomSeed: 100, initialCapacity: 4, growthFactor: 2 }

const filled = (n: number): TenantIndex => {
  const index = new TenantIndex("t", "l2", params, 2)
  for (let i = 0; i < n; i++) index.applyRow(`e${i}`, new Entity({ id: `e${i}` as EntityId, vector: [i, i % 7] }))
  return index
}

describe("TenantIndex", () => {
  it("hands hnswlib each query's ef, calling setEf only when it changes, and again after the native index is replaced", () => {
    const index = filled(40)
    const native = index.hnsw!
    const calls: Array<number> = []
    // The addon's methods are read-only: spy through a proxy that forwards to the native object.
    const spied = new Proxy(native, {
      get: (target, key) => {
        if (key === "setEf") {
          return (ef: number) => {
            calls.push(ef)
            target.setEf(ef)
          }
        }
        const value = Reflect.get(target, key)
        return typeof value === "function" ? value.bind(target) : value
      },
    })
    index.hnsw = spied
    index.searchKnn([3, 3], 5, 16)
    index.searchKnn([3, 3], 5, 16)
    index.searchKnn([3, 3], 5, 32)
    // k above ef raises ef to k
    index.searchKnn([3, 3], 20, 8)
    assert.deepStrictEqual(calls, [16, 32, 20])
    // A replaced native index (a snapshot load assigns one) starts with hnswlib's own ef.
    index.hnsw = spied
    index.searchKnn([3, 3], 5, 20)
    assert.deepStrictEqual(calls, [16, 32, 20, 20])
  })

  it("grows past its initial capacity and keeps the float32 mirror and norms of every vector", () => {
    const index = filled(40)
    assert.isAtLeast(index.capacity, 40)
    assert.strictEqual(index.liveVectors, 40)
    for (let label = 0; label < 40; label++) {
      const i = Number(index.labelToId[label]!.slice(1))
      assert.strictEqual(index.vectors[label * 2], i)
      assert.strictEqual(index.vectors[label * 2 + 1], i % 7)
      assert.closeTo(index.norms[label]!, Math.hypot(i, i % 7), 1e-4)
    }
    const hits = index.searchKnn([10, 3], 1, 16)
    assert.strictEqual(hits[0]!.id, "e10")
    assert.isAbove(index.addPointMs, 0)
  })

  it("mirrors importance and updatedAt by label exactly as the attributes hold them, through updates, deletes, reuse and growth", () => {
    const seed = Number(process.env.PROPERTY_SEED ?? 4242)
    const random = SeededRandom.mulberry32(seed)
    const index = new TenantIndex("t", "l2", params, 2)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
    for (let step = 0; step < 600; step++) {
      const id = `e${Math.floor(random() * 60)}`
      const r = random()
      if (r < 0.15) {
        index.applyRow(id, undefined)
      } else {
        const entity = new Entity({
          id: id as EntityId,
          ...(r < 0.25 ? {} : { vector: pick([[1, 2], [3, 4], [random() * 10, random() * 10]]) }),
          ...(random() < 0.3 ? {} : { importance: pick([0, 0.25, 1, random()]) }),
          ...(random() < 0.3 ? {} : { updatedAt: pick([0, -5, 1_700_000_000_000, Number.NaN, random() * 1e6]) }),
          ...(random() < 0.4 ? {} : { type: pick(["doc", "chunk", "1", `t${Math.floor(random() * 200)}`]) }),
          ...(random() < 0.4
            ? {}
            : { metadata: random() < 0.5 ? { n: pick([1, "1", true, 0, -0]) } : { n: pick([1, 2]), lang: pick(["en", "de", "1"]) } }),
        })
        index.applyRow(id, entity)
      }
      for (const [key, attrs] of index.attrs) {
        if (attrs.label < 0) continue
        const where = `seed ${seed}, step ${step}, ${key} at label ${attrs.label}`
        assert.strictEqual(index.labelToId[attrs.label], key, where)
        assert.deepStrictEqual(index.importanceAt(attrs.label), attrs.importance, where)
        assert.deepStrictEqual(index.updatedAtAt(attrs.label), attrs.updatedAt, where)
      }
      // The posting sets filters look up: exactly the live labels per type and metadata pair.
      const expected = new Map<string, Array<number>>()
      for (const attrs of index.attrs.values()) {
        if (attrs.label < 0) continue
        for (const key of Filter.postingKeys(attrs)) expected.set(key, [...(expected.get(key) ?? []), attrs.label])
      }
      assert.deepStrictEqual(
        new Map([...index.postings].map(([key, set]) => [key, [...set].sort((a, b) => a - b)])),
        new Map([...expected].map(([key, labels]) => [key, labels.sort((a, b) => a - b)])),
        `postings, seed ${seed}, step ${step}`,
      )
    }
    assert.isAbove(index.capacity, params.initialCapacity, "the run must have grown the index")
    assert.isAbove(index.freeLabels.length + index.liveVectors, 0)
  })

  it("applies a range of rows exactly as one applyRow per row: same labels, mirror, attributes, postings, graph, counts and native answers", () => {
    const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
    console.log(`TenantIndex applyRange property seed: ${seed}`)
    const random = SeededRandom.mulberry32(seed)
    const one = new TenantIndex("t", "l2", params, 2)
    const ranged = new TenantIndex("t", "l2", params, 2)
    const counts = { inserted: 0, skipped: 0 }
    const expected = { inserted: 0, skipped: 0 }
    const vectorOf = (): Array<number> =>
      random() < 0.05 ? [1, 2, 3] : random() < 0.2 ? [Math.floor(random() * 3), 1] : [random() * 10, random() * 10]
    for (let batch = 0; batch < 60; batch++) {
      const ids: Array<string> = []
      const entities: Array<Entity | undefined> = []
      const size = 1 + Math.floor(random() * 40)
      for (let j = 0; j < size; j++) {
        // Repeats inside a batch too: applyRange must give what sequential application gives.
        const id = `e${Math.floor(random() * 80)}`
        ids.push(id)
        if (random() < 0.15) {
          entities.push(undefined)
          continue
        }
        const edges = Array.from(
          { length: Math.floor(random() * 4) },
          () =>
            new GraphEdge({ to: `e${Math.floor(random() * 80)}` as EntityId, relation: (random() < 0.5 ? "a" : "b") as Relation, weight: random() }),
        )
        entities.push(
          new Entity({
            id: id as EntityId,
            ...(random() < 0.15 ? {} : { vector: vectorOf() }),
            ...(random() < 0.5 ? {} : { type: random() < 0.5 ? "doc" : "chunk" }),
            ...(random() < 0.5 ? {} : { metadata: { g: Math.floor(random() * 3) } }),
            ...(random() < 0.5 ? {} : { importance: random() }),
            edges,
          }),
        )
      }
      for (let j = 0; j < ids.length; j++) {
        const outcome = one.applyRow(ids[j]!, entities[j])
        if (outcome === "inserted") expected.inserted++
        else if (outcome === "skipped") expected.skipped++
      }
      for (let from = 0; from < ids.length; ) {
        const to = Math.min(ids.length, from + 1 + Math.floor(random() * 12))
        ranged.applyRange(ids, entities, from, to, counts)
        from = to
      }
      const where = `seed ${seed}, batch ${batch}`
      assert.deepStrictEqual(counts, expected, where)
      assert.deepStrictEqual(ranged.labelToId, one.labelToId, where)
      assert.deepStrictEqual(ranged.freeLabels, one.freeLabels, where)
      assert.strictEqual(ranged.liveVectors, one.liveVectors, where)
      assert.strictEqual(ranged.addPointCount, one.addPointCount, where)
      assert.deepStrictEqual(ranged.vectors, one.vectors, where)
      assert.deepStrictEqual(ranged.norms, one.norms, where)
      assert.deepStrictEqual(ranged.scoring, one.scoring, where)
      assert.deepStrictEqual(ranged.attrs, one.attrs, where)
      assert.deepStrictEqual(ranged.postings, one.postings, where)
      assert.deepStrictEqual(new Map(ranged.graph.entries()), new Map(one.graph.entries()), where)
      // The same native operations in the same order build the same HNSW graph.
      for (let q = 0; q < 5; q++) {
        const query = [random() * 10, random() * 10]
        assert.deepStrictEqual(ranged.searchLabels(query, 10, 20), one.searchLabels(query, 10, 20), where)
      }
    }
    assert.isAbove(expected.inserted, 0)
    assert.isAbove(expected.skipped, 0)
  })
})
