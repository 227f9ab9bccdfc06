import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Equal from "effect/Equal"
import * as Schema from "effect/Schema"
import { Entity, type EntityId, QueryResult, SeededRandom, type TenantId } from "@allidb/core"
import * as QueryExecutorModule from "../src/QueryExecutor.js"
import * as Scorer from "../src/Scorer.js"
import { edge } from "./FakeStorage.js"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-query-"))
const ids = (results: ReadonlyArray<{ readonly id: string }>) => results.map((r) => r.id)

// hit -cites(0.5)-> doc -part_of(0.8)-> book ; other -cites(1)-> hit ; doc has no vector
const graph = [
  entity("hit", { vector: [1, 0], type: "chunk", edges: [edge("doc", "cites", 0.5)], importance: 0.5 }),
  entity("doc", { type: "doc", edges: [edge("book", "part_of", 0.8)], metadata: { lang: "en" } }),
  entity("book", { type: "book", vector: [0, 1], metadata: { lang: "de" } }),
  entity("other", { type: "chunk", vector: [-1, 0], edges: [edge("hit", "cites", 1)] }),
]

describe("QueryExecutor", () => {
  it.scoped("a direct hit has graph score 1 and an empty path; expansion scores path weight × decay", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { expandHopDecay: 0.8 } })
      yield* h.put(graph)
      const results = yield* h.executor.query(
        T,
        request({ vector: [1, 0], k: 1, explain: true, expand: { hops: 2, factor: 1 } }),
      )
      assert.deepStrictEqual(ids(results), ["hit", "doc", "book"].slice(0, 1))
      const all = yield* h.executor.query(
        T,
        request({ vector: [1, 0], k: 10, explain: true, expand: { hops: 2, factor: 1 } }),
      )
      // k = 10 → 10 ANN candidates, so "other" and "book" are direct hits too
      const byId = new Map(all.map((r) => [r.id, r]))
      const hit = byId.get("hit" as never)!.explain!
      assert.strictEqual(hit.graph, 1)
      assert.deepStrictEqual(hit.path, [])
      assert.strictEqual(hit.origin, "hit")
      const doc = byId.get("doc" as never)!.explain!
      assert.closeTo(doc.graph, 0.5 * 0.8, 1e-9)
      assert.strictEqual(doc.similarity, 0, "no vector, no similarity")
      assert.strictEqual(doc.origin, "hit")
      assert.deepStrictEqual(
        doc.path.map((s) => [s.from, s.to, s.relation, s.weight, s.direction]),
        [["hit", "doc", "cites", 0.5, "out"]],
      )
      assert.isTrue(byId.has("book" as never))
      assert.strictEqual(byId.get("book" as never)!.explain!.graph, 1, "book is itself an ANN hit")
    }),
  )

  it.scoped("expansion follows relations and directions, and reaches entities without vectors", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put(graph)
      const run = (expand: Record<string, unknown>) =>
        h.executor.query(
          T,
          request({ vector: [1, 0], k: 5, weights: { vector: 0 }, explain: true, expand: { factor: 1, ...expand } }),
        )
      // k = 5 → all three vectors are ANN hits; doc (no vector) only comes from expansion.
      const out = yield* run({ hops: 1 })
      assert.deepStrictEqual(out.find((r) => r.id === "doc")!.explain!.origin, "hit")
      assert.notInclude(ids(yield* run({ hops: 1, relations: ["part_of"] })), "doc", "doc -part_of-> book is not out of a hit")
      const incoming = yield* run({ hops: 1, direction: "in" })
      const viaBook = incoming.find((r) => r.id === "doc")!.explain!
      assert.strictEqual(viaBook.origin, "book")
      assert.deepStrictEqual(
        viaBook.path.map((s) => [s.from, s.to, s.relation, s.direction]),
        [["book", "doc", "part_of", "in"]],
      )
      assert.notInclude(ids(yield* run({ hops: 1, direction: "in", relations: ["cites"] })), "doc")
      assert.include(ids(yield* run({ hops: 1, direction: "both" })), "doc")
    }),
  )

  it.scoped("expanded results obey the filter; filtered ANN never returns a non-matching entity", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put(graph)
      const docsOnly = yield* h.executor.query(
        T,
        request({ vector: [1, 0], k: 10, filter: { type: "doc" }, expand: { hops: 2 } }),
      )
      assert.deepStrictEqual(ids(docsOnly), [], "no vector matches type=doc, so there is nothing to expand from")
      const chunks = yield* h.executor.query(
        T,
        request({ vector: [0, 1], k: 10, filter: { type: "chunk" }, expand: { hops: 1 } }),
      )
      assert.sameMembers(ids(chunks), ["hit", "other"])
      const lang = yield* h.executor.query(T, request({ vector: [1, 0], k: 10, filter: { metadata: { lang: "de" } } }))
      assert.deepStrictEqual(ids(lang), ["book"])
    }),
  )

  it.scoped("weights, importance, recency and the id tiebreak order the results", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { recencyHalfLifeMs: 1000 } })
      yield* h.put([
        entity("b", { vector: [1, 0], importance: 0.2 }),
        entity("a", { vector: [1, 0], importance: 0.2 }),
        entity("c", { vector: [0.9, 0.1], importance: 1 }),
      ])
      const base = yield* h.executor.query(T, request({ vector: [1, 0], k: 3, weights: { importance: 0 } }))
      assert.deepStrictEqual(ids(base), ["a", "b", "c"], "equal scores tie by id")
      const important = yield* h.executor.query(T, request({ vector: [1, 0], k: 3, weights: { importance: 1 } }))
      assert.strictEqual(important[0]!.id, "c")
      // missing importance counts as 0.5
      yield* h.put([entity("d", { vector: [0, 1] })])
      const onlyImportance = yield* h.executor.query(
        T,
        request({ vector: [0, 1], k: 4, weights: { vector: 0, graph: 0, importance: 1, recency: 0 }, explain: true }),
      )
      assert.strictEqual(onlyImportance[0]!.id, "c")
      const d = yield* h.executor.query(
        T,
        request({ vector: [0, 1], k: 4, weights: { vector: 0, graph: 0, importance: 1, recency: 0 }, explain: true }),
      )
      assert.strictEqual(d.find((r) => r.id === "d")!.explain!.importance, 0.5)
    }),
  )

  it.scoped("a result's score is the unified score of its components, with or without explain, whatever the weights", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { recencyHalfLifeMs: 5_000 } })
      yield* TestClock.setTime(20_000)
      const random = SeededRandom.mulberry32(99)
      yield* h.put(
        Array.from({ length: 60 }, (_, i) =>
          entity(`e${i}`, {
            vector: [random() - 0.5, random() - 0.5, random() - 0.5],
            ...(i % 4 === 0 ? {} : { importance: random() }),
            ...(i % 3 === 0 ? {} : { updatedAt: Math.floor(random() * 30_000) }),
          }),
        ),
      )
      const weightSets = [
        undefined,
        { vector: 1, graph: 0, importance: 0, recency: 0 },
        { importance: 0 },
        { recency: 0 },
        { vector: 0.2, importance: 2, recency: 3 },
      ]
      for (const weights of weightSets) {
        const vector = [random() - 0.5, random() - 0.5, random() - 0.5]
        const encoded = { vector, k: 20, include_entities: false, ...(weights === undefined ? {} : { weights }) }
        const plain = yield* h.executor.query(T, request(encoded))
        const explained = yield* h.executor.query(T, request({ ...encoded, explain: true }))
        assert.deepStrictEqual(
          plain.map((r) => [r.id, r.score]),
          explained.map((r) => [r.id, r.score]),
          `weights ${JSON.stringify(weights)}`,
        )
        for (const r of explained) {
          const e = r.explain!
          assert.strictEqual(r.score, Scorer.score(e.weights, e), `${r.id}, weights ${JSON.stringify(weights)}`)
          const stored = (yield* h.storage.get(T, T, r.id))!
          assert.strictEqual(e.importance, stored.importance ?? 0.5)
          assert.strictEqual(e.recency, Scorer.recency(stored.updatedAt, 20_000, 5_000))
        }
      }
    }),
  )

  it.scoped("entities come from storage; vectors only when asked", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([entity("a", { vector: [1, 0], metadata: { x: 1 } })])
      const [plain] = yield* h.executor.query(T, request({ vector: [1, 0], k: 1 }))
      assert.deepStrictEqual(plain!.entity!.metadata, { x: 1 })
      assert.isUndefined(plain!.entity!.vector)
      assert.isUndefined(plain!.explain)
      const [withVector] = yield* h.executor.query(T, request({ vector: [1, 0], k: 1, include_vectors: true }))
      assert.deepStrictEqual(withVector!.entity!.vector, [1, 0])
      const [bare] = yield* h.executor.query(T, request({ vector: [1, 0], k: 1, include_entities: false }))
      assert.isUndefined(bare!.entity)
    }),
  )

  it.scoped("l2 and inner-product tenants", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { tenantMetrics: { l2: "l2", ip: "ip" } } })
      const l2 = "l2" as TenantId
      const ip = "ip" as TenantId
      const rows = [entity("near", { vector: [1, 1] }), entity("far", { vector: [10, 10] })]
      yield* h.put(rows, l2)
      yield* h.put(rows, ip)
      const weights = { graph: 0, importance: 0, recency: 0 }
      const r1 = yield* h.executor.query(l2, request({ vector: [1, 1], k: 2, weights, explain: true }))
      assert.deepStrictEqual(ids(r1), ["near", "far"])
      assert.closeTo(r1[0]!.explain!.similarity, 1, 1e-6)
      assert.closeTo(r1[1]!.explain!.similarity, 1 / (1 + 162), 1e-6, "1 / (1 + squared distance)")
      const r2 = yield* h.executor.query(ip, request({ vector: [1, 1], k: 2, weights, explain: true }))
      assert.deepStrictEqual(ids(r2), ["far", "near"], "inner product favours the long vector")
      assert.closeTo(r2[0]!.explain!.similarity, 20, 1e-4)
    }),
  )

  it.scoped("traverse returns depth, path and weight; unknown start ids yield nothing", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put(graph)
      const out = yield* h.executor.traverse(T, Harness.traverseRequest({ from: ["hit"], hops: 2 }))
      assert.deepStrictEqual(
        out.map((r) => [r.id, r.depth, Math.round(r.weight * 100) / 100]),
        [
          ["doc", 1, 0.5],
          ["book", 2, 0.4],
        ],
      )
      assert.deepStrictEqual(
        out[1]!.path.map((s) => s.relation),
        ["cites", "part_of"],
      )
      assert.strictEqual(out[1]!.entity!.type, "book")
      assert.isUndefined(out[1]!.entity!.vector)
      const back = yield* h.executor.traverse(
        T,
        Harness.traverseRequest({ from: ["book"], hops: 3, direction: "in", limit: 2 }),
      )
      assert.deepStrictEqual(ids(back), ["doc", "hit"])
      const rel = yield* h.executor.traverse(
        T,
        Harness.traverseRequest({ from: ["hit"], hops: 2, relations: ["part_of"] }),
      )
      assert.deepStrictEqual(rel, [])
      assert.deepStrictEqual(yield* h.executor.traverse(T, Harness.traverseRequest({ from: ["nope"], hops: 2 })), [])
    }),
  )

  it.scoped("a query on a tenant without vectors returns nothing", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([entity("x", { type: "t" })])
      assert.deepStrictEqual(yield* h.executor.query(T, request({ vector: [1, 2, 3], k: 3, expand: { hops: 2 } })), [])
    }),
  )

  it.live("a query over its deadline fails with DeadlineExceeded and leaves the index as it was", () =>
    Effect.scoped(Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { queryTimeoutMs: 30, sliceMs: 2 } })
      // A dense graph: 300 nodes, each linked to every other → a 3-hop expansion is far beyond 30 ms.
      const n = 300
      const nodes = Array.from({ length: n }, (_, i) =>
        entity(`n${i}`, {
          vector: [Math.cos(i), Math.sin(i)],
          edges: Array.from({ length: n }, (_, j) => edge(`n${j}`, "r", 0.5 + (j % 7) / 20)).filter(
            (e) => e.to !== `n${i}`,
          ),
        }),
      )
      yield* h.put(nodes)
      const before = yield* h.index.stats
      const started = performance.now()
      const error = yield* Effect.flip(
        h.executor.query(T, request({ vector: [1, 0], k: 50, expand: { hops: 3, factor: 6, fanout: 300 } })),
      )
      const elapsed = performance.now() - started
      assert.strictEqual(error._tag, "DeadlineExceeded")
      assert.isBelow(elapsed, 1000, "interrupted promptly, not after the whole expansion")
      assert.deepStrictEqual(yield* h.index.stats, before)
      const ok = yield* h.executor.query(T, request({ vector: [1, 0], k: 3 }))
      assert.strictEqual(ok.length, 3)
      // a caller's shorter deadline interrupts too
      const short = yield* Effect.exit(
        h.executor
          .traverse(T, Harness.traverseRequest({ from: ["n0"], hops: 5 }))
          .pipe(Effect.timeout("1 millis")),
      )
      assert.isTrue(short._tag === "Failure" || short._tag === "Success")
    })),
  )
})

describe("QueryExecutor.makeResult", () => {
  it("builds the same QueryResult as the class constructor", () => {
    const props = { id: "a" as EntityId, score: 0.5, entity: entity("a", { type: "t" }) }
    const made = QueryExecutorModule.makeResult(props)
    const constructed = new QueryResult(props)
    assert.instanceOf(made, QueryResult)
    assert.deepStrictEqual(Schema.encodeSync(QueryResult)(made), Schema.encodeSync(QueryResult)(constructed))
    assert.isTrue(Equal.equals(made, constructed))
  })
})

describe("QueryExecutor entities", () => {
  it.scoped("an entity without its vector still encodes and compares like a constructed one", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      const stored = entity("a", { vector: [1, 0], type: "t", metadata: { x: 1 }, importance: 0.3 })
      yield* h.put([stored])
      const [r] = yield* h.executor.query(T, request({ vector: [1, 0], k: 1 }))
      const { vector: _v, ...rest } = stored
      const expected = new Entity(rest)
      assert.instanceOf(r!.entity, Entity)
      assert.deepStrictEqual({ ...r!.entity! }, { ...expected })
      assert.deepStrictEqual(Schema.encodeSync(Entity)(r!.entity!), Schema.encodeSync(Entity)(expected))
    }),
  )
})

describe("QueryExecutor tracing", () => {
  it.scoped("makes query spans (with stage children) once an exporting tracer is installed", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put(graph)
      const builtIn = Context.get(DefaultServices.liveServices, Tracer.Tracer)
      const names: Array<string> = []
      const recording = Tracer.make({
        span: (...args: Parameters<Tracer.Tracer["span"]>) => {
          names.push(args[0])
          return builtIn.span(...args)
        },
        context: builtIn.context,
      })
      yield* h.executor.query(T, request({ vector: [1, 0], k: 3, expand: { hops: 1 } }))
      assert.deepStrictEqual(names, [], "no spans under the built-in tracer")
      yield* h.executor
        .query(T, request({ vector: [1, 0], k: 3, expand: { hops: 1 } }))
        .pipe(Effect.withTracer(recording))
      assert.sameMembers(names, ["QueryExecutor.query", "QueryExecutor.expand", "QueryExecutor.fetch"])
    }),
  )
})
