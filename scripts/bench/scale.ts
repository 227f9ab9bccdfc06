/**
 * `npm run bench -- scale [--quick] [--sizes 10k,100k,1M] [--efs 16,32,64,128] [--rounds 3]`
 *
 * The query and ingest figures at growing sizes, to show how cost grows:
 * at each size, raw hnswlib-node build rate beside AlliDB's in-process durable
 * ingest rate (the load of the data dir: batches of 1,000, 2 in flight,
 * wait=true), and AlliDB in-process kNN beside raw hnswlib-node across a
 * small ef sweep (QPS at recall@10 ≥ 0.95). Above 100k the exact ground
 * truth covers the first 200 queries only (brute force cost).
 */
import { label } from "./_data.js"
import { dataDirPath, loadRecord } from "./_allidb.js"
import { CACHE_DIR, fmt, ROOT, isMain, log, numbers, option, quick, table, writeResult } from "./_lib.js"
import { runQuery } from "./query.js"
import * as Path from "node:path"

export interface ScaleOptions {
  readonly sizes: ReadonlyArray<number>
  readonly dim: number
  readonly efs: ReadonlyArray<number>
  readonly rounds: number
}

export const runScale = async (o: ScaleOptions) => {
  const rows = []
  const runs = []
  for (const n of o.sizes) {
    const queries = n > 100_000 ? 200 : 300
    const spec = { n, dim: o.dim, queries, seed: 42 }
    log(`\n=== scale: ${label(spec)} ===`)
    const r = await runQuery({ spec, efs: o.efs, rounds: o.rounds, concurrency: [], peers: ["hnswlib"], http: false })
    const load = loadRecord(dataDirPath(spec))
    const hnsw = r.builds.find((b) => b.system === "hnswlib-node")!
    const ours = r.headline.rows.find((x) => x.system === "AlliDB" && x.mode === "in-process")
    const theirs = r.headline.rows.find((x) => x.system === "hnswlib-node")
    rows.push({
      n,
      hnswlibBuildPerSecond: hnsw.vectorsPerSecond,
      allidbIngestPerSecond: load.entities / load.seconds,
      ingestMeasuredAt: load.date,
      // A ratio only when both sides were measured in this run (a cached data dir was loaded earlier).
      ingestSameRun: r.ingest?.loadedThisRun === true,
      allidbQps: ours?.qps,
      allidbEf: ours?.ef,
      allidbRecall: ours?.recall,
      allidbP99: ours?.p99,
      hnswlibQps: theirs?.qps,
      hnswlibEf: theirs?.ef,
      hnswlibRecall: theirs?.recall,
      hnswlibP99: theirs?.p99,
    })
    runs.push(r)
  }
  table(
    `scale (× ${o.dim}): ingest and kNN at recall@10 ≥ 0.95`,
    ["entities", "hnswlib build/s", "AlliDB ingest/s", "ingest ratio", "hnswlib QPS (ef)", "AlliDB QPS (ef)", "QPS ratio", "AlliDB p99 ms"],
    rows.map((r) => [
      fmt(r.n),
      fmt(r.hnswlibBuildPerSecond),
      fmt(r.allidbIngestPerSecond),
      r.ingestSameRun ? `${fmt(r.allidbIngestPerSecond / r.hnswlibBuildPerSecond, 2)}×` : "— (load cached from an earlier run)",
      `${fmt(r.hnswlibQps ?? Number.NaN)} (${r.hnswlibEf})`,
      `${fmt(r.allidbQps ?? Number.NaN)} (${r.allidbEf})`,
      `${fmt((r.allidbQps ?? Number.NaN) / (r.hnswlibQps ?? Number.NaN), 2)}×`,
      fmt(r.allidbP99 ?? Number.NaN, 2),
    ]),
  )
  log(`(AlliDB ingest/s: the timed in-process load of each data dir under ${Path.relative(ROOT, Path.join(CACHE_DIR, "db"))}/, dated in the JSON)`)
  return { dim: o.dim, rows, runs }
}

export const scaleOptionsFromArgs = (): ScaleOptions => ({
  sizes: numbers("sizes", quick ? "5k,10k,20k" : "10k,100k,1M"),
  dim: Number(option("dim", "128")),
  efs: numbers("efs", "16,32,64,128"),
  rounds: Number(option("rounds", "3")),
})

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runScale(scaleOptionsFromArgs())
  writeResult("scale", { ...result, seconds: (Date.now() - started) / 1000 })
}
