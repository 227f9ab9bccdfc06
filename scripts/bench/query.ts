/**
 * `npm run bench -- query [--quick] [--n 100k] [--dim 128] [--queries 500]
 *   [--efs 10,16,…] [--rounds 3] [--concurrency 1,4,16] [--peers hnswlib,usearch,lancedb]`
 *
 * kNN top-10 across an ef sweep on one data set: recall@10 against exact
 * (brute-force cosine) ground truth, QPS (median of rounds), p50/p99 — for
 * AlliDB in-process (the node Layer), AlliDB over HTTP with 1, 4 and 16
 * concurrent clients (allidbd child process), raw hnswlib-node, usearch and
 * LanceDB, all in one run on the same vectors and queries.
 */
import * as Fs from "node:fs"
import { copyDataDir, ensureBuilt, httpQuery, knnRequest, loadedDataDir, loadRecord, openInProcess, startServer } from "./_allidb.js"
import { generate, groundTruth, indexOfId, label, type Spec, toArray } from "./_data.js"
import { flag, fmt, isMain, log, median, numbers, option, quick, table, writeResult } from "./_lib.js"
import { ensurePeers, hnswlibSearcher, lanceSearcher, peerVersions, type Searcher, usearchSearcher } from "./_peers.js"
import { atRecall, type Point, printSweep, type System, sweep } from "./_sweep.js"

export interface QueryOptions {
  readonly spec: Spec
  readonly efs: ReadonlyArray<number>
  readonly rounds: number
  readonly concurrency: ReadonlyArray<number>
  readonly peers: ReadonlyArray<string>
  /** Skip the HTTP server (scale at 1M keeps memory and time down). */
  readonly http?: boolean
  readonly truthQueries?: number
}

export const DEFAULT_EFS = "10,16,24,32,48,64,96,128,256"

const fromSearcher = (s: Searcher): System => ({
  name: s.name,
  mode: "in-process",
  concurrency: 1,
  setEf: s.setEf,
  search: (q) => s.search(q),
})

export const runQuery = async (o: QueryOptions) => {
  ensureBuilt()
  const d = generate(o.spec)
  const truth = groundTruth(d, o.truthQueries ?? d.queries)
  const builds: Array<{ system: string; settings: string; buildSeconds: number; vectorsPerSecond: number }> = []
  const searchers: Array<Searcher> = []
  if (o.peers.some((p) => p !== "hnswlib")) ensurePeers()
  // hnswlib's build is synchronous and single-threaded: this process's CPU
  // time around it is its CPU cost (the ingest ratio per CPU-second below).
  let hnswlibBuildCpuSeconds: number | undefined
  for (const p of o.peers) {
    log(`building ${p} on ${label(d)}…`)
    const cpu0 = process.cpuUsage()
    const s = p === "hnswlib" ? hnswlibSearcher(d) : p === "usearch" ? usearchSearcher(d) : p === "lancedb" ? await lanceSearcher(d) : undefined
    if (s === undefined) throw new Error(`unknown peer ${p}`)
    if (p === "hnswlib") {
      const cpu = process.cpuUsage(cpu0)
      hnswlibBuildCpuSeconds = (cpu.user + cpu.system) / 1e6
    }
    searchers.push(s)
    builds.push({ system: s.name, settings: s.settings, buildSeconds: s.buildSeconds, vectorsPerSecond: d.n / s.buildSeconds })
  }

  const loadStarted = Date.now()
  const dir = await loadedDataDir(d)
  const load = loadRecord(dir)
  const loadedThisRun = Date.parse(load.date) >= loadStarted
  // The server gets its own copy: one data dir, one process (the dir is locked).
  const serverDir = o.http === false ? undefined : copyDataDir(dir)
  const db = await openInProcess(dir)
  const server = serverDir === undefined ? undefined : await startServer(serverDir)
  const toIndexes = (rs: ReadonlyArray<{ readonly id: string }>) => rs.map((r) => indexOfId(r.id))
  const systems: Array<System> = [
    {
      name: "AlliDB",
      mode: "in-process",
      concurrency: 1,
      setEf: () => undefined,
      search: async (q, ef) => toIndexes(await db.query(knnRequest(toArray(q), ef))),
      searchAll: async (qs, ef) => {
        const run = await db.queryMany(qs.map((q) => knnRequest(toArray(q), ef)))
        return { got: run.results.map(toIndexes), latencies: run.latencies }
      },
    },
    {
      name: "AlliDB",
      mode: "in-process, requests decoded beforehand",
      concurrency: 1,
      setEf: () => undefined,
      search: async (q, ef) => toIndexes(await db.query(knnRequest(toArray(q), ef))),
      searchAll: async (qs, ef) => {
        const run = await db.queryMany(
          qs.map((q) => knnRequest(toArray(q), ef)),
          { decodeFirst: true },
        )
        return { got: run.results.map(toIndexes), latencies: run.latencies, seconds: run.seconds }
      },
    },
    {
      name: "AlliDB",
      mode: "in-process, runPromise per query",
      concurrency: 1,
      setEf: () => undefined,
      search: async (q, ef) => toIndexes(await db.query(knnRequest(toArray(q), ef))),
    },
    ...searchers.map(fromSearcher),
    ...(server === undefined
      ? []
      : o.concurrency.map(
          (c): System => ({
            name: "AlliDB",
            mode: `HTTP ×${c}`,
            concurrency: c,
            setEf: () => undefined,
            search: async (q, ef) => toIndexes(await httpQuery(server.url, knnRequest(toArray(q), ef))),
          }),
        )),
  ]
  let points: Array<Point>
  try {
    points = await sweep(d, truth, systems, o.efs, o.rounds)
  } finally {
    await db.close()
    await server?.stop()
    if (serverDir !== undefined) Fs.rmSync(serverDir, { recursive: true, force: true })
    for (const s of searchers) await s.close()
  }
  printSweep(`kNN top-10 on ${label(d)}, ${truth.count} queries, ${o.rounds} rounds`, points)
  table(
    `index build on ${label(d)} (peers)`,
    ["system", "settings", "build s", "vectors/s"],
    builds.map((b) => [b.system, b.settings, fmt(b.buildSeconds, 1), fmt(b.vectorsPerSecond)]),
  )
  const headline = summarise(points, 0.95)
  // Ingest beside the ceiling, when the data dir was loaded in this run: the
  // load is a durable in-process ingest (batches of 1,000, 2 in flight,
  // wait=true) and hnswlib's build is addPoint of the same vectors.
  const hnswBuild = builds.find((b) => b.system === "hnswlib-node")
  const ingest =
    hnswBuild === undefined
      ? undefined
      : {
          allidbPerSecond: load.entities / load.seconds,
          hnswlibPerSecond: hnswBuild.vectorsPerSecond,
          ratio: load.entities / load.seconds / hnswBuild.vectorsPerSecond,
          // Per CPU-second: steadier than wall time on a shared host (the load
          // and the build run at different moments of the run).
          ...(load.cpuSeconds === undefined || hnswlibBuildCpuSeconds === undefined
            ? {}
            : { ratioPerCpuSecond: load.entities / load.cpuSeconds / (d.n / hnswlibBuildCpuSeconds) }),
          loadedThisRun,
          loadedAt: load.date,
        }
  if (ingest !== undefined) {
    const perCpu = ingest.ratioPerCpuSecond === undefined ? "" : `; per CPU-second ${fmt(ingest.ratioPerCpuSecond, 2)}×`
    log(
      `ingest: AlliDB in-process durable load ${fmt(ingest.allidbPerSecond)} entities/s ${loadedThisRun ? "(this run)" : `(cached, loaded ${load.date})`} ÷ hnswlib addPoint ${fmt(ingest.hnswlibPerSecond)} vectors/s = ${fmt(ingest.ratio, 2)}×${perCpu} — target ≥ 0.8×`,
    )
  }
  return { spec: o.spec, ingest, truth: { count: truth.count, seconds: truth.seconds, cached: truth.cached }, builds, points, headline, peers: peerVersions() }
}

/** At recall ≥ target: each system's best QPS, and AlliDB in-process ÷ hnswlib at equal ef. */
export const summarise = (points: ReadonlyArray<Point>, target: number) => {
  const modes = [...new Set(points.map((p) => `${p.system}|${p.mode}`))]
  const rows = modes.map((m) => {
    const [system, mode] = m.split("|") as [string, string]
    const p = atRecall(points, system, mode, target)
    return { system, mode, ef: p?.ef, recall: p?.recall, qps: p?.qps, p50: p?.p50, p99: p?.p99, meetsTarget: (p?.recall ?? 0) >= target }
  })
  const ours = atRecall(points, "AlliDB", "in-process", target)
  const same = ours === undefined ? undefined : points.find((p) => p.system === "hnswlib-node" && p.ef === ours.ef)
  const ratioSameEf = ours !== undefined && same !== undefined ? ours.qps / same.qps : undefined
  const hnsw = atRecall(points, "hnswlib-node", "in-process", target)
  const ratioAtTarget = ours !== undefined && hnsw !== undefined ? ours.qps / hnsw.qps : undefined
  // One sweep point is one noisy pair; the median of the per-ef ratios over
  // the whole sweep (same ef = same recall for the same library) is steadier.
  const perEf = points
    .filter((p) => p.system === "AlliDB" && p.mode === "in-process")
    .flatMap((p) => {
      const h = points.find((x) => x.system === "hnswlib-node" && x.ef === p.ef)
      return h === undefined ? [] : [p.qps / h.qps]
    })
  const ratioMedianOverSweep = perEf.length === 0 ? undefined : median(perEf)
  // Round by round at the headline ef: both points of a round were measured
  // moments apart (see the sweep's order), so their ratio shares the load.
  const perRound =
    ours === undefined || same === undefined
      ? []
      : ours.qpsRounds.flatMap((q, r) => (same.qpsRounds[r] === undefined ? [] : [q / same.qpsRounds[r]!]))
  const ratioPairedRounds = perRound.length === 0 ? undefined : median(perRound)
  table(
    `at recall@10 ≥ ${target}: best QPS per system`,
    ["system", "mode", "ef", "recall@10", "QPS", "p50 ms", "p99 ms"],
    rows.map((r) => [r.system, r.mode, String(r.ef), fmt(r.recall ?? Number.NaN, 3) + (r.meetsTarget ? "" : " (below)"), fmt(r.qps ?? Number.NaN), fmt(r.p50 ?? Number.NaN, 2), fmt(r.p99 ?? Number.NaN, 2)]),
  )
  log(
    `AlliDB in-process ÷ raw hnswlib-node: ${fmt(ratioAtTarget ?? Number.NaN, 2)}× at recall ≥ ${target}; ${fmt(ratioSameEf ?? Number.NaN, 2)}× at the same ef (${ours?.ef}), median of per-round ratios ${fmt(ratioPairedRounds ?? Number.NaN, 2)}×; median over the ef sweep ${fmt(ratioMedianOverSweep ?? Number.NaN, 2)}× — target ≥ 0.9×`,
  )
  return { target, rows, ratioAtTarget, ratioSameEf, ratioPairedRounds, ratioMedianOverSweep }
}

export const queryOptionsFromArgs = (): QueryOptions => ({
  spec: {
    n: numbers("n", quick ? "10k" : "100k")[0]!,
    dim: Number(option("dim", "128")),
    queries: Number(option("queries", quick ? "300" : "500")),
    seed: Number(option("seed", "42")),
  },
  efs: numbers("efs", quick ? "10,16,32,64,128" : DEFAULT_EFS),
  rounds: Number(option("rounds", "3")),
  concurrency: numbers("concurrency", "1,4,16"),
  peers: option("peers", "hnswlib,usearch,lancedb").split(",").filter((s) => s !== ""),
  http: !flag("no-http"),
})

if (isMain(import.meta.url)) {
  const o = queryOptionsFromArgs()
  const started = Date.now()
  const result = await runQuery(o)
  writeResult(`query-${o.spec.dim}`, { ...result, seconds: (Date.now() - started) / 1000 })
}
