import { assert, describe, it } from "@effect/vitest"
import { SeededRandom } from "@allidb/core"
import * as Graph from "../src/Graph.js"

// a -knows(0.9)-> b -knows(0.5)-> c -cites(1)-> d ; a -cites(0.2)-> c ; e -knows(1)-> a
const build = () => {
  const g = new Graph.Adjacency()
  g.setOutEdges("a", [
    { to: "b", relation: "knows", weight: 0.9 },
    { to: "c", relation: "cites", weight: 0.2 },
  ])
  g.setOutEdges("b", [{ to: "c", relation: "knows", weight: 0.5 }])
  g.setOutEdges("c", [{ to: "d", relation: "cites", weight: 1 }])
  g.setOutEdges("e", [{ to: "a", relation: "knows", weight: 1 }])
  return g
}

const expand = (g: Graph.Adjacency, origins: Array<string>, options: Partial<Graph.ExpansionOptions> = {}) => {
  const e = new Graph.Expansion(g, origins, {
    hops: 1,
    direction: "out",
    fanout: 100,
    hopDecay: 1,
    prefer: "weight",
    exists: () => true,
    ...options,
  })
  // A tiny budget exercises resumption.
  while (!e.run(1)) {
    /* resume */
  }
  return e.result
}

const weights = (r: ReadonlyMap<string, Graph.Reached>) =>
  Object.fromEntries([...r.values()].map((x) => [x.id, Math.round(x.weight * 1000) / 1000]))

describe("Graph", () => {
  it("keeps outgoing and derived incoming edges in step", () => {
    const g = build()
    assert.strictEqual(g.edges, 5)
    assert.deepStrictEqual(
      g.neighbours("c", "in", undefined).map((n) => [n.id, n.relation]),
      [
        ["b", "knows"],
        ["a", "cites"],
      ],
    )
    g.setOutEdges("a", [{ to: "b", relation: "knows", weight: 0.9 }])
    assert.strictEqual(g.edges, 4)
    assert.deepStrictEqual(
      g.neighbours("c", "in", undefined).map((n) => n.id),
      ["b"],
    )
    g.setOutEdges("b", [])
    assert.deepStrictEqual(g.neighbours("c", "both", undefined), [{ id: "d", relation: "cites", weight: 1, direction: "out" }])
  })

  it("follows hops out, in and both ways", () => {
    const g = build()
    assert.deepStrictEqual(weights(expand(g, ["a"])), { b: 0.9, c: 0.2 })
    assert.deepStrictEqual(weights(expand(g, ["a"], { hops: 2 })), { b: 0.9, c: 0.45, d: 0.2 })
    assert.deepStrictEqual(weights(expand(g, ["a"], { hops: 3 })), { b: 0.9, c: 0.45, d: 0.45 })
    assert.deepStrictEqual(weights(expand(g, ["a"], { direction: "in" })), { e: 1 })
    assert.deepStrictEqual(weights(expand(g, ["c"], { direction: "both" })), { a: 0.2, b: 0.5, d: 1 })
  })

  it("filters relations, applies the hop decay and the fan-out", () => {
    const g = build()
    assert.deepStrictEqual(weights(expand(g, ["a"], { hops: 3, relations: ["cites"] })), { c: 0.2, d: 0.2 })
    assert.deepStrictEqual(weights(expand(g, ["a"], { hops: 2, hopDecay: 0.5 })), { b: 0.45, c: 0.113, d: 0.05 })
    assert.deepStrictEqual(weights(expand(g, ["a"], { fanout: 1 })), { b: 0.9 }, "strongest neighbour first")
  })

  it("records the best path and its origin, and never returns an origin", () => {
    const g = build()
    const r = expand(g, ["a", "b"], { hops: 2 })
    assert.isFalse(r.has("a"))
    assert.isFalse(r.has("b"))
    const d = r.get("d")!
    assert.strictEqual(d.origin, "b")
    assert.strictEqual(d.depth, 2)
    assert.deepStrictEqual(
      d.path.map((s) => [s.from, s.to, s.relation, s.direction]),
      [
        ["b", "c", "knows", "out"],
        ["c", "d", "cites", "out"],
      ],
    )
    const viaIn = expand(g, ["d"], { direction: "in", hops: 2 }).get("b")!
    assert.deepStrictEqual(
      viaIn.path.map((s) => [s.from, s.to, s.direction]),
      [
        ["d", "c", "in"],
        ["c", "b", "in"],
      ],
    )
  })

  it("prefers the shortest path in depth mode and skips entities that do not exist", () => {
    const g = build()
    const r = expand(g, ["a"], { hops: 2, prefer: "depth" })
    assert.strictEqual(r.get("c")!.depth, 1)
    assert.closeTo(r.get("c")!.weight, 0.2, 1e-12)
    const missing = expand(g, ["a"], { hops: 3, exists: (id) => id !== "c" })
    assert.deepStrictEqual(weights(missing), { b: 0.9 }, "no walking through a missing entity")
    assert.strictEqual(expand(g, ["zz"], { hops: 2 }).size, 0)
  })

  it("keeps one edge per (relation, to), the last one given, in first-seen order, for short and long edge lists", () => {
    for (const n of [12, 40]) {
      const g = new Graph.Adjacency()
      const edges: Array<Graph.Edge> = []
      for (let i = 0; i < n; i++) edges.push({ to: `t${i % 5}`, relation: i % 2 === 0 ? "r" : "s", weight: i / 100 })
      g.setOutEdges("x", edges)
      // The reference: what a Map keyed by the pair keeps.
      const expected = new Map<string, Graph.Edge>()
      for (const e of edges) expected.set(`${e.to}/${e.relation}`, e)
      assert.deepStrictEqual(
        g.outEdges("x").map((e) => [e.to, e.relation, e.weight]),
        [...expected.values()].map((e) => [e.to, e.relation, e.weight]),
        `${n} edges`,
      )
      assert.strictEqual(g.edges, expected.size)
      for (const e of expected.values()) {
        const incoming = g.neighbours(e.to, "in", undefined).filter((x) => x.relation === e.relation)
        assert.deepStrictEqual(incoming.map((x) => [x.id, x.weight]), [["x", e.weight]])
      }
      g.setOutEdges("x", [])
      assert.strictEqual(g.edges, 0)
      assert.deepStrictEqual(g.neighbours("t0", "in", undefined), [])
    }
  })

  it("derives incoming edges that match the outgoing ones through random replacements and removals", () => {
    const seed = Number(process.env.PROPERTY_SEED ?? 2024)
    const random = SeededRandom.mulberry32(seed)
    const g = new Graph.Adjacency()
    const model = new Map<string, Array<Graph.Edge>>()
    const node = () => `n${Math.floor(random() * 12)}`
    for (let step = 0; step < 1500; step++) {
      const from = node()
      const edges: Array<Graph.Edge> = []
      const count = random() < 0.2 ? 0 : Math.floor(random() * 6)
      for (let i = 0; i < count; i++) {
        edges.push({ to: random() < 0.3 ? "hub" : node(), relation: random() < 0.5 ? "r" : "s", weight: Math.round(random() * 100) / 100 })
      }
      g.setOutEdges(from, edges)
      const unique = new Map<string, Graph.Edge>()
      for (const e of edges) unique.set(`${e.to}/${e.relation}`, e)
      if (unique.size === 0) model.delete(from)
      else model.set(from, [...unique.values()])
      if (step % 50 !== 0) continue
      // Incoming edges of every node as the out lists imply them.
      for (const target of ["hub", ...Array.from({ length: 12 }, (_, i) => `n${i}`)]) {
        const expected: Array<[string, string, number]> = []
        for (const [f, list] of model) for (const e of list) if (e.to === target) expected.push([f, e.relation, e.weight])
        const got = g.neighbours(target, "in", undefined).map((n): [string, string, number] => [n.id, n.relation, n.weight])
        const order = (a: [string, string, number], b: [string, string, number]) =>
          a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0
        assert.deepStrictEqual(got.sort(order), expected.sort(order), `seed ${seed}, step ${step}, into ${target}`)
      }
      assert.strictEqual(g.edges, [...model.values()].reduce((n, l) => n + l.length, 0))
    }
  })
})
