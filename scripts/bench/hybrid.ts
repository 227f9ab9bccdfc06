/**
 * `npm run bench -- hybrid [--quick] [--n 100k] [--queries 300] [--rounds 3] [--efs 16,64,256]`
 *
 * Two hybrid query shapes on one loaded data set:
 * 1. kNN + 2-hop graph expansion with the unified score (default weights,
 *    entities returned, as a RAG caller asks): QPS and p50/p99 in-process and
 *    over HTTP; and how much of the answer the approximate search loses,
 *    measured against the same query at ef = 2,000 (near-exhaustive; the
 *    unified score has no independent exact reference, the filtered case does).
 * 2. kNN with a 1%-selective metadata filter (`group = 7`), similarity only:
 *    recall@10 against the exact filtered top-10 (brute force over the
 *    matching rows), beside raw hnswlib-node searchKnn with the same filter
 *    as a label predicate at the same ef.
 */
import * as Fs from "node:fs"
import { copyDataDir, ensureBuilt, httpQuery, loadedDataDir, openInProcess, startServer } from "./_allidb.js"
import { FILTER_GROUP, filteredTruth, generate, indexOfId, K, label, queryOf, recallAt10, type Spec, toArray, type Truth } from "./_data.js"
import { fmt, isMain, log, median, now, numbers, option, percentile, quick, runConcurrent, table, writeResult } from "./_lib.js"
import hnswlib from "hnswlib-node"
import { EF_CONSTRUCTION, M } from "./_peers.js"

export interface HybridOptions {
  readonly spec: Spec
  readonly rounds: number
  readonly efs: ReadonlyArray<number>
  readonly concurrency: ReadonlyArray<number>
  readonly withHnswlib: boolean
}

const REFERENCE_EF = 2000

const expandRequest = (v: ReadonlyArray<number>, ef: number) => ({
  vector: v,
  k: K,
  ef,
  expand: { hops: 2, factor: 2 },
})
const filterRequest = (v: ReadonlyArray<number>, ef: number) => ({
  vector: v,
  k: K,
  ef,
  filter: { metadata: { group: FILTER_GROUP } },
  weights: { vector: 1, graph: 0, importance: 0, recency: 0 },
  include_entities: false,
})

type Ask = (request: unknown) => Promise<ReadonlyArray<{ readonly id: string }>>

interface Row {
  readonly shape: string
  readonly mode: string
  readonly ef: number
  readonly recall: number
  readonly recallAgainst: string
  readonly qps: number
  readonly p50: number
  readonly p99: number
}

const measure = async (
  queries: number,
  rounds: number,
  concurrency: number,
  f: (q: number) => Promise<ReadonlyArray<number>>,
): Promise<{ got: Array<ReadonlyArray<number>>; qps: number; p50: number; p99: number }> => {
  const got = new Array<ReadonlyArray<number>>(queries)
  const qps: Array<number> = []
  const lat: Array<number> = []
  for (let q = 0; q < Math.min(10, queries); q++) await f(q)
  for (let r = 0; r < rounds; r++) {
    const run = await runConcurrent(queries, concurrency, async (q) => {
      const ids = await f(q)
      if (r === 0) got[q] = ids
    })
    lat.push(...run.latencies)
    qps.push(queries / run.seconds)
  }
  return { got, qps: median(qps), p50: percentile(lat, 50), p99: percentile(lat, 99) }
}

/** Overlap of each answer with a reference answer (same k). */
const overlap = (reference: ReadonlyArray<ReadonlyArray<number>>, got: ReadonlyArray<ReadonlyArray<number>>) => {
  let hit = 0
  let all = 0
  for (let q = 0; q < reference.length; q++) {
    const want = new Set(reference[q])
    all += want.size
    for (const id of got[q] ?? []) if (want.has(id)) hit++
  }
  return hit / Math.max(1, all)
}

export const runHybrid = async (o: HybridOptions) => {
  ensureBuilt()
  const d = generate(o.spec)
  const t0 = now()
  const truth: Truth = filteredTruth(d)
  log(`exact filtered ground truth (group = ${FILTER_GROUP}, ${fmt(d.group.filter((g) => g === FILTER_GROUP).length)} of ${fmt(d.n)} rows): ${truth.cached ? "cached" : `${fmt((now() - t0) / 1000, 1)} s`}`)
  const dir = await loadedDataDir(d)
  const serverDir = copyDataDir(dir)
  const db = await openInProcess(dir)
  const server = await startServer(serverDir)
  const asks: Array<{ mode: string; concurrency: number; ask: Ask }> = [
    { mode: "in-process", concurrency: 1, ask: (r) => db.query(r as never) },
    ...o.concurrency.map((c) => ({ mode: `HTTP ×${c}`, concurrency: c, ask: (r: unknown) => httpQuery(server.url, r) })),
  ]
  const ids = (rs: ReadonlyArray<{ readonly id: string }>) => rs.map((r) => indexOfId(r.id))
  const rows: Array<Row> = []
  const queries = d.queries
  let expandedShare = Number.NaN
  try {
    // 1. expansion: reference answers at a near-exhaustive ef (in-process; not timed).
    const reference: Array<ReadonlyArray<number>> = []
    let expanded = 0
    for (let q = 0; q < queries; q++) {
      const rs = await db.query({ ...expandRequest(toArray(queryOf(d, q)), REFERENCE_EF), explain: true } as never)
      reference.push(ids(rs))
      expanded += rs.filter((r) => ((r as { explain?: { path: ReadonlyArray<unknown> } }).explain?.path.length ?? 0) > 0).length
    }
    expandedShare = expanded / Math.max(1, queries * K)
    log(`kNN + 2 hops: ${fmt(100 * expandedShare, 1)}% of the top-${K} at ef ${REFERENCE_EF} were reached through the graph`)
    for (const a of asks) {
      for (const ef of o.efs) {
        const m = await measure(queries, o.rounds, a.concurrency, async (q) => ids(await a.ask(expandRequest(toArray(queryOf(d, q)), ef))))
        rows.push({ shape: "kNN + 2 hops", mode: a.mode, ef, recall: overlap(reference, m.got), recallAgainst: `ef ${REFERENCE_EF}`, qps: m.qps, p50: m.p50, p99: m.p99 })
      }
    }
    // 2. 1%-selective metadata filter vs exact filtered truth.
    for (const a of asks) {
      for (const ef of o.efs) {
        const m = await measure(queries, o.rounds, a.concurrency, async (q) => ids(await a.ask(filterRequest(toArray(queryOf(d, q)), ef))))
        rows.push({ shape: "kNN, filter 1%", mode: a.mode, ef, recall: recallAt10(truth, m.got), recallAgainst: "exact filtered", qps: m.qps, p50: m.p50, p99: m.p99 })
      }
    }
  } finally {
    await db.close()
    await server.stop()
    Fs.rmSync(serverDir, { recursive: true, force: true })
  }
  if (o.withHnswlib) {
    const index = new hnswlib.HierarchicalNSW("cosine", d.dim)
    index.initIndex({ maxElements: d.n, m: M, efConstruction: EF_CONSTRUCTION, randomSeed: 100 })
    log(`building raw hnswlib-node on ${label(d)} for the filtered baseline…`)
    for (let i = 0; i < d.n; i++) index.addPoint(toArray(d.vectors.subarray(i * d.dim, (i + 1) * d.dim)), i)
    const keep = (label: number) => d.group[label] === FILTER_GROUP
    for (const ef of o.efs) {
      index.setEf(Math.max(ef, K))
      const m = await measure(queries, o.rounds, 1, async (q) => {
        const r = index.searchKnn(toArray(queryOf(d, q)), K, keep)
        return Array.from(r.neighbors)
      })
      rows.push({ shape: "kNN, filter 1%", mode: "hnswlib-node filter fn", ef, recall: recallAt10(truth, m.got), recallAgainst: "exact filtered", qps: m.qps, p50: m.p50, p99: m.p99 })
    }
  }
  table(
    `hybrid queries on ${label(d)}, ${queries} queries, ${o.rounds} rounds`,
    ["shape", "mode", "ef", "recall@10", "against", "QPS (median)", "p50 ms", "p99 ms"],
    rows.map((r) => [r.shape, r.mode, String(r.ef), fmt(r.recall, 3), r.recallAgainst, fmt(r.qps), fmt(r.p50, 2), fmt(r.p99, 2)]),
  )
  return { spec: o.spec, referenceEf: REFERENCE_EF, expandedShare, rows }
}

export const hybridOptionsFromArgs = (): HybridOptions => ({
  spec: {
    n: numbers("n", quick ? "10k" : "100k")[0]!,
    dim: Number(option("dim", "128")),
    queries: Number(option("queries", quick ? "200" : "300")),
    seed: Number(option("seed", "42")),
  },
  rounds: Number(option("rounds", "3")),
  efs: numbers("efs", "16,64,256"),
  concurrency: numbers("concurrency", "1,4"),
  withHnswlib: option("hnswlib", "yes") !== "no",
})

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runHybrid(hybridOptionsFromArgs())
  writeResult("hybrid", { ...result, seconds: (Date.now() - started) / 1000 })
}
