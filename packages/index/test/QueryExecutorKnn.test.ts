/**
 * The kNN-only path of the QueryExecutor (no expansion, no entity fetch: one
 * synchronous Effect step, the benchmark's headline path) held to an
 * independent reference (the index's own search + Scorer), to the same query
 * with entities fetched, to concurrent use, and to the stage metrics — so a
 * faster rewrite of that path has something to be checked against.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { QueryResult, ScoreExplain } from "@allidb/core"
import * as Metrics from "../src/Metrics.js"
import * as Scorer from "../src/Scorer.js"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-knn-"))

const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000)
// Printed so a failing case can be replayed: PROPERTY_SEED=<seed> npx vitest run --project index QueryExecutorKnn
console.log(`QueryExecutorKnn seed: ${seed}`)

const NOW = 1_000_000_000
const DIM = 8

/**
 * Entities with importance and updatedAt drawn at random, and every fifth a
 * copy of an earlier vector with the same importance and age, so equal
 * scores occur and the id tie-break decides.
 */
const dataSet = (random: () => number, count: number) => {
  const normal = Harness.gaussian(random)
  const vectors: Array<Array<number>> = []
  const entities: Array<ReturnType<typeof entity>> = []
  for (let i = 0; i < count; i++) {
    const twin = i >= 5 && i % 5 === 0 ? i - 5 : undefined
    const vector = twin !== undefined ? vectors[twin]! : Array.from({ length: DIM }, () => normal())
    vectors.push(vector)
    const importance: number | undefined =
      twin !== undefined ? entities[twin]!.importance : random() < 0.2 ? undefined : random()
    const updatedAt: number | undefined =
      twin !== undefined ? entities[twin]!.updatedAt : random() < 0.2 ? undefined : Math.floor(random() * NOW)
    entities.push(
      entity(`e${String(i).padStart(3, "0")}`, {
        vector,
        ...(importance === undefined ? {} : { importance }),
        ...(updatedAt === undefined ? {} : { updatedAt }),
      }),
    )
  }
  return { vectors, entities }
}

/** What a kNN-only query must answer, from the index's search and Scorer alone. */
const reference = (
  h: Harness.Harness,
  vector: ReadonlyArray<number>,
  k: number,
  ef: number,
  weights: Scorer.Weights,
  now: number,
  halfLifeMs: number,
) => {
  const index = h.tenants.get(T)!
  const ranked = index.searchKnn(vector, k, Math.max(ef, k)).map((hit) => {
    const attrs = index.attrs.get(hit.id)!
    const similarity = Scorer.similarity(index.metric, hit.distance)
    const importance = Scorer.importanceOf(attrs.importance)
    const recency = Scorer.recency(attrs.updatedAt, now, halfLifeMs)
    return { id: hit.id, score: Scorer.scoreOf(weights, similarity, 1, importance, recency), similarity, importance, recency }
  })
  return Scorer.topK(ranked, k)
}

const randomWeights = (random: () => number): Record<string, number> | undefined => {
  if (random() < 0.3) return undefined
  const w: Record<string, number> = {}
  for (const name of ["vector", "graph", "importance", "recency"]) {
    const r = random()
    // Zero weights matter: the executor skips a zero-weighted component's work.
    if (r < 0.6) w[name] = r < 0.2 ? 0 : Math.round(random() * 100) / 100
  }
  return w
}

describe("QueryExecutor kNN-only path", () => {
  for (const metric of ["cosine", "l2", "ip"] as const) {
    it.scoped(`ranks and scores as the index's search and Scorer do (${metric}, seed ${seed})`, () =>
      Effect.gen(function* () {
        const random = Harness.rng(seed + metric.length)
        const halfLifeMs = 200_000_000
        const h = yield* Harness.make({ dataDir: tmp(), config: { defaultMetric: metric, recencyHalfLifeMs: halfLifeMs } })
        const { entities } = dataSet(random, 150)
        yield* h.put(entities)
        yield* TestClock.setTime(NOW)
        const normal = Harness.gaussian(random)
        for (let q = 0; q < 40; q++) {
          // Up to 60 hits: past 32 the ranking takes the Array.prototype.sort branch.
          const k = 1 + Math.floor(random() * 60)
          const ef = 16 + Math.floor(random() * 100)
          const explain = random() < 0.5
          const weights = randomWeights(random)
          // Some queries are stored vectors exactly: a twin pair then ties at the top.
          const vector = random() < 0.3 ? entities[Math.floor(random() * entities.length)]!.vector! : Array.from({ length: DIM }, () => normal())
          const encoded = { vector, k, ef, include_entities: false, explain, ...(weights === undefined ? {} : { weights }) }
          const results = yield* h.executor.query(T, request(encoded))
          const resolved = Scorer.resolveWeights(request(encoded).weights)
          const expected = reference(h, vector, k, ef, resolved, NOW, halfLifeMs)
          const context = `seed ${seed}, query ${q}, ${JSON.stringify({ k, ef, explain, weights })}`
          assert.deepStrictEqual(
            results.map((r) => [r.id, r.score]),
            expected.map((e) => [e.id, e.score]),
            context,
          )
          for (let i = 0; i < results.length; i++) {
            const r = results[i]!
            assert.instanceOf(r, QueryResult)
            assert.strictEqual(Object.getPrototypeOf(r), QueryResult.prototype)
            assert.isUndefined(r.entity)
            if (!explain) {
              assert.isUndefined(r.explain, context)
              assert.deepStrictEqual(Object.keys(r), ["id", "score"])
              continue
            }
            const e = expected[i]!
            assert.deepStrictEqual(
              Schema.encodeSync(QueryResult)(r),
              Schema.encodeSync(QueryResult)(
                new QueryResult({
                  id: r.id,
                  score: e.score,
                  explain: new ScoreExplain({
                    similarity: e.similarity,
                    graph: 1,
                    importance: e.importance,
                    recency: e.recency,
                    weights: { ...resolved },
                    origin: r.id,
                    path: [],
                  }),
                }),
              ),
              context,
            )
          }
        }
      }),
    )
  }

  it.scoped(`answers what the same query with entities answers, entity aside (seed ${seed})`, () =>
    Effect.gen(function* () {
      const random = Harness.rng(seed + 7)
      const h = yield* Harness.make({ dataDir: tmp() })
      const { entities } = dataSet(random, 120)
      yield* h.put(entities)
      yield* TestClock.setTime(NOW)
      const normal = Harness.gaussian(random)
      for (let q = 0; q < 30; q++) {
        const encoded = {
          vector: Array.from({ length: DIM }, () => normal()),
          k: 1 + Math.floor(random() * 50),
          explain: random() < 0.5,
          ...(random() < 0.5 ? { weights: randomWeights(random) ?? {} } : {}),
        }
        const knn = yield* h.executor.query(T, request({ ...encoded, include_entities: false }))
        const withEntities = yield* h.executor.query(T, request(encoded))
        const context = `seed ${seed}, query ${q}`
        assert.strictEqual(knn.length, withEntities.length, context)
        for (let i = 0; i < knn.length; i++) {
          const { entity: fetched, ...rest } = withEntities[i]!
          assert.isDefined(fetched, context)
          assert.deepStrictEqual(
            Schema.encodeSync(QueryResult)(knn[i]!),
            Schema.encodeSync(QueryResult)(new QueryResult(rest)),
            context,
          )
        }
      }
    }),
  )

  it.scoped("concurrent queries, kNN-only and with entities interleaved, answer as when run alone", () =>
    Effect.gen(function* () {
      const random = Harness.rng(seed + 11)
      const h = yield* Harness.make({ dataDir: tmp() })
      const { entities } = dataSet(random, 100)
      yield* h.put(entities)
      const normal = Harness.gaussian(random)
      const requests = Array.from({ length: 24 }, (_, i) =>
        request({ vector: Array.from({ length: DIM }, () => normal()), k: 5 + (i % 7), include_entities: i % 3 === 0, explain: i % 2 === 0 }),
      )
      const alone = yield* Effect.forEach(requests, (r) => h.executor.query(T, r))
      const together = yield* Effect.forEach(requests, (r) => h.executor.query(T, r), { concurrency: "unbounded" })
      assert.deepStrictEqual(
        together.map((rs) => rs.map((r) => Schema.encodeSync(QueryResult)(r))),
        alone.map((rs) => rs.map((r) => Schema.encodeSync(QueryResult)(r))),
      )
    }),
  )

  it.scoped("records the ann and score stages once per query, and filter when filtered", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([
        entity("a", { vector: [1, 0], type: "x" }),
        entity("b", { vector: [0, 1], type: "y" }),
      ])
      const count = (stage: Metrics.Stage) => Metric.value(Metrics.stageSeconds(stage)).pipe(Effect.map((s) => s.count))
      const before = { ann: yield* count("ann"), score: yield* count("score"), filter: yield* count("filter") }
      yield* h.executor.query(T, request({ vector: [1, 0], k: 1, include_entities: false }))
      yield* h.executor.query(T, request({ vector: [1, 0], k: 1, include_entities: false, filter: { type: "y" } }))
      assert.strictEqual((yield* count("ann")) - before.ann, 2)
      assert.strictEqual((yield* count("score")) - before.score, 2)
      assert.strictEqual((yield* count("filter")) - before.filter, 1)
    }),
  )
})
