/**
 * Recall of the whole path (fake storage → UnifiedIndex → QueryExecutor)
 * against brute force on a seeded Gaussian mixture, with and without filters.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const SEED = Number(process.env.RECALL_SEED ?? 20240)
const N = 20_000
const DIM = 64
const QUERIES = 100
console.log(`Recall data seed: ${SEED} (replay with RECALL_SEED=${SEED})`)

// One mixture; the last QUERIES points are held out as queries.
const all = Harness.clustered({ seed: SEED, count: N + QUERIES, dim: DIM, clusters: 64, spread: 0.5 })
const vectors = all.slice(0, N)
const queryPoints = all.slice(N)

class Loaded extends Context.Tag("test/Loaded")<Loaded, Harness.Harness>() {}

const loaded = Layer.scoped(
  Loaded,
  Effect.gen(function* () {
    const h = yield* Harness.make({
      dataDir: Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-recall-")),
      // 1% filters (200 vectors) go through filtered HNSW; 0.25% ones through the exact scan.
      config: { exactScanThreshold: 100 },
    })
    for (let start = 0; start < N; start += 2000) {
      yield* h.put(
        vectors.slice(start, start + 2000).map((vector, j) => {
          const i = start + j
          return entity(`e${i}`, {
            vector,
            type: i % 2 === 0 ? "even" : "odd",
            metadata: { bucket: i % 100, rare: i % 400, score: (i * 7919) % 1000 },
          })
        }),
      )
    }
    return h
  }),
)

const recallOf = (
  h: Harness.Harness,
  filter: Record<string, unknown> | undefined,
  include: (i: number) => boolean,
  check: (i: number) => boolean = include,
) =>
  Effect.gen(function* () {
    let total = 0
    for (const query of queryPoints) {
      const truth = Harness.bruteForceCosine(vectors, query, 10, include).map((i) => `e${i}`)
      const results = yield* h.executor.query(
        T,
        request({ vector: query, k: 10, include_entities: false, ...(filter ? { filter } : {}) }),
      )
      for (const r of results) assert.isTrue(check(Number(r.id.slice(1))), `${r.id} does not match the filter`)
      total += Harness.recallAt(
        truth,
        results.map((r) => r.id),
      )
    }
    return total / queryPoints.length
  })

layer(loaded, { timeout: 120_000 })("recall", (it) => {
  describe("20,000 × 64 clustered vectors", () => {
    it.effect("recall@10 ≥ 0.95 without a filter", () =>
      Effect.gen(function* () {
        const h = yield* Loaded
        const recall = yield* recallOf(h, undefined, () => true)
        console.log(`recall@10 unfiltered: ${recall.toFixed(4)}`)
        assert.isAtLeast(recall, 0.95)
      }),
    )

    it.effect("a 1% filter (filtered HNSW) keeps recall@10 ≥ 0.9 and never returns a non-match", () =>
      Effect.gen(function* () {
        const h = yield* Loaded
        const recall = yield* recallOf(h, { metadata: { bucket: 7 } }, (i) => i % 100 === 7)
        console.log(`recall@10 with a 1% equality filter: ${recall.toFixed(4)}`)
        assert.isAtLeast(recall, 0.9)
        const ranged = yield* recallOf(
          h,
          { metadata: { score: { gte: 100, lt: 110 } } },
          (i) => (i * 7919) % 1000 >= 100 && (i * 7919) % 1000 < 110,
        )
        console.log(`recall@10 with a 1% range filter: ${ranged.toFixed(4)}`)
        assert.isAtLeast(ranged, 0.9)
      }),
    )

    it.effect("a very selective filter is answered exactly", () =>
      Effect.gen(function* () {
        const h = yield* Loaded
        const recall = yield* recallOf(h, { metadata: { rare: 3 }, type: "odd" }, (i) => i % 400 === 3)
        console.log(`recall@10 with a 0.25% filter (exact scan): ${recall.toFixed(4)}`)
        assert.strictEqual(recall, 1)
      }),
    )

    it.effect("a broad filter (50%) never returns a non-match", () =>
      Effect.gen(function* () {
        const h = yield* Loaded
        const recall = yield* recallOf(
          h,
          { type: "even", metadata: { bucket: { in: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20] } } },
          (i) => i % 2 === 0 && i % 100 <= 20,
        )
        console.log(`recall@10 with a ~5.5% type + in filter: ${recall.toFixed(4)}`)
        assert.isAtLeast(recall, 0.9)
      }),
    )
  })
})
