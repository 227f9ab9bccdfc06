/**
 * `npm run bench -- plot [--png] [--quick]`
 *
 * Renders the plots of docs/BENCHMARKS.md from the newest result files in
 * scripts/bench/results/ (Vega-Lite compiled to Vega, rendered headless to
 * SVG): recall-vs-QPS curves (AlliDB and peers), latency percentiles by
 * concurrency, scale curves, ingest rates, restart times.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { BENCH_DIR, flag, log, RESULTS_DIR, ROOT } from "./_lib.js"
import { ensurePeers } from "./_peers.js"

ensurePeers()
// vega and vega-lite are ESM-only: a helper inside the peers package imports them.
const { toSvg, toPng } = (await import(pathToFileURL(Path.join(BENCH_DIR, "peers", "render.mjs")).href)) as {
  toSvg: (spec: unknown) => Promise<string>
  toPng: (svg: string) => Promise<Uint8Array>
}
const png = flag("png")

// By default the plots of docs/ from full runs (a quick result stands in,
// marked, where no full one exists); --quick plots the quick results into
// scripts/bench/results/plots/ and leaves docs/ alone.
const onlyQuick = flag("quick")
const OUT = onlyQuick ? Path.join(RESULTS_DIR, "plots") : Path.join(ROOT, "docs", "bench")
Fs.mkdirSync(OUT, { recursive: true })

type Json = Record<string, unknown>
const read = (file: string): Json | undefined =>
  Fs.existsSync(file) ? (JSON.parse(Fs.readFileSync(file, "utf8")) as Json) : undefined
const latest = (name: string): Json | undefined => {
  const quickOne = read(Path.join(RESULTS_DIR, `${name}-quick-latest.json`))
  if (onlyQuick) return quickOne === undefined ? undefined : { ...quickOne, quickRun: true }
  const full = read(Path.join(RESULTS_DIR, `${name}-latest.json`))
  return full ?? (quickOne === undefined ? undefined : { ...quickOne, quickRun: true })
}
/** Every dated result of a benchmark, oldest first (full runs; quick ones when there is none or with --quick). */
const history = (name: string): Array<Json> => {
  if (!Fs.existsSync(RESULTS_DIR)) return []
  const files = (prefix: string) =>
    Fs.readdirSync(RESULTS_DIR)
      .filter((f) => f.startsWith(prefix) && f.endsWith(".json"))
      .sort()
      .map((f) => JSON.parse(Fs.readFileSync(Path.join(RESULTS_DIR, f), "utf8")) as Json)
  const full = onlyQuick ? [] : files(`${name}-2`)
  return full.length > 0 ? full : files(`${name}-quick-2`).map((r) => ({ ...r, quickRun: true }))
}

const render = async (file: string, spec: Json) => {
  const full = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: 520,
    height: 300,
    background: "white",
    config: { font: "sans-serif", axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11, labelLimit: 400 } },
    ...spec,
  }
  const svg = await toSvg(full)
  Fs.writeFileSync(Path.join(OUT, file), svg)
  log(`wrote ${Path.relative(ROOT, Path.join(OUT, file))}`)
  // PNGs are optional (not committed): --png writes them beside the results.
  if (png) Fs.writeFileSync(Path.join(RESULTS_DIR, file.replace(/\.svg$/, ".png")), await toPng(svg))
}

const subtitle = (r: Json) => {
  const m = r.machine as { nproc: number; node: string; commit: string }
  return `${r.quickRun === true ? "quick run · " : ""}${String(r.date).slice(0, 10)} · ${m.nproc} cores · node ${m.node} · commit ${m.commit}`
}

interface Point {
  system: string
  mode: string
  ef: number
  recall: number
  qps: number
  p50: number
  p99: number
  concurrency: number
}

const recallQps = async (name: string, file: string) => {
  const r = latest(name)
  if (r === undefined) return
  const spec = r.spec as { n: number; dim: number }
  const points = (r.points as Array<Point>).map((p) => ({ ...p, series: `${p.system} ${p.mode}` }))
  await render(file, {
    title: { text: `kNN top-10, ${spec.n.toLocaleString("en-US")} × ${spec.dim}: recall@10 vs QPS (ef sweep)`, subtitle: subtitle(r) },
    data: { values: points },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "recall", type: "quantitative", title: "recall@10", scale: { zero: false } },
      y: { field: "qps", type: "quantitative", title: "queries per second (log)", scale: { type: "log" } },
      color: { field: "series", type: "nominal", title: "system" },
      order: { field: "ef", type: "quantitative" },
      tooltip: [{ field: "series" }, { field: "ef" }, { field: "recall" }, { field: "qps" }],
    },
  })
}

const latencyByConcurrency = async () => {
  const r = latest("query-128")
  if (r === undefined) return
  const points = (r.points as Array<Point>).filter((p) => p.system === "AlliDB" && p.mode.startsWith("HTTP"))
  if (points.length === 0) return
  const ef = points.some((p) => p.ef === 64) ? 64 : points[0]!.ef
  const values = points
    .filter((p) => p.ef === ef)
    .flatMap((p) => [
      { clients: p.concurrency, percentile: "p50", ms: p.p50 },
      { clients: p.concurrency, percentile: "p99", ms: p.p99 },
    ])
  await render("latency-by-concurrency.svg", {
    title: { text: `AlliDB over HTTP: kNN latency by concurrent clients (ef ${ef})`, subtitle: subtitle(r) },
    data: { values },
    mark: "bar",
    encoding: {
      x: { field: "clients", type: "ordinal", title: "concurrent HTTP clients" },
      xOffset: { field: "percentile" },
      y: { field: "ms", type: "quantitative", title: "latency (ms)" },
      color: { field: "percentile", type: "nominal" },
    },
  })
}

const mixed = async () => {
  const r = latest("mixed")
  if (r === undefined) return
  const rows = r.rows as Array<{ kind: string; p50: number; p95: number; p99: number }>
  const values = rows.flatMap((x) => [
    { op: x.kind, percentile: "p50", ms: x.p50 },
    { op: x.kind, percentile: "p95", ms: x.p95 },
    { op: x.kind, percentile: "p99", ms: x.p99 },
  ])
  await render("mixed-latency.svg", {
    title: { text: `Mixed RAG workload (80/15/5), ${Math.round(r.opsPerSecond as number)} ops/s: latency per operation`, subtitle: subtitle(r) },
    data: { values },
    mark: "bar",
    encoding: {
      x: { field: "op", type: "nominal", title: "operation" },
      xOffset: { field: "percentile" },
      y: { field: "ms", type: "quantitative", title: "latency (ms)" },
      color: { field: "percentile", type: "nominal" },
    },
  })
}

const scale = async () => {
  // Newest figure per size across scale runs (a 1M run may be separate).
  const byN = new Map<number, Json & { n: number }>()
  let last: Json | undefined
  for (const r of history("scale")) {
    for (const row of r.rows as Array<Json & { n: number }>) byN.set(row.n, row)
    last = r
  }
  if (last === undefined) return
  const rows = [...byN.values()].sort((a, b) => a.n - b.n)
  const qps = rows.flatMap((x) => [
    { n: x.n, system: "AlliDB in-process", qps: x.allidbQps },
    { n: x.n, system: "hnswlib-node", qps: x.hnswlibQps },
  ])
  await render("scale-qps.svg", {
    title: { text: "kNN QPS at recall@10 ≥ 0.95 by data size (× 128)", subtitle: subtitle(last) },
    data: { values: qps },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "n", type: "quantitative", title: "entities (log)", scale: { type: "log" } },
      y: { field: "qps", type: "quantitative", title: "queries per second (log)", scale: { type: "log" } },
      color: { field: "system", type: "nominal" },
    },
  })
  // Only sizes whose load and hnswlib build ran in the same run.
  const sameRun = rows.filter((x) => x.ingestSameRun === true)
  if (sameRun.length === 0) {
    Fs.rmSync(Path.join(OUT, "scale-ingest.svg"), { force: true })
    return
  }
  const ingest = sameRun.flatMap((x) => [
    { n: x.n, system: "AlliDB in-process ingest (durable)", rate: x.allidbIngestPerSecond },
    { n: x.n, system: "hnswlib-node addPoint", rate: x.hnswlibBuildPerSecond },
  ])
  await render("scale-ingest.svg", {
    title: { text: "Ingest rate by data size (× 128)", subtitle: subtitle(last) },
    data: { values: ingest },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "n", type: "quantitative", title: "entities (log)", scale: { type: "log" } },
      y: { field: "rate", type: "quantitative", title: "entities per second" },
      color: { field: "system", type: "nominal" },
    },
  })
}

const ingest = async () => {
  const r = latest("ingest")
  if (r === undefined) return
  await render("ingest.svg", {
    title: { text: `Ingest until queryable, ${(r.spec as { n: number }).n.toLocaleString("en-US")} × 128`, subtitle: subtitle(r) },
    data: { values: r.summary },
    mark: "bar",
    encoding: {
      y: { field: "path", type: "nominal", title: null, sort: "-x" },
      x: { field: "entitiesPerSecond", type: "quantitative", title: "entities per second (median)" },
    },
  })
}

const restart = async () => {
  const r = latest("restart")
  if (r === undefined) return
  const values = (r.rows as Array<{ n: number; snapshotMs: number; rebuildMs: number }>).flatMap((x) => [
    { n: x.n.toLocaleString("en-US"), start: "from snapshot", seconds: x.snapshotMs / 1000 },
    { n: x.n.toLocaleString("en-US"), start: "rebuild", seconds: x.rebuildMs / 1000 },
  ])
  await render("restart.svg", {
    title: { text: "allidbd start → ready", subtitle: subtitle(r) },
    data: { values },
    mark: "bar",
    encoding: {
      x: { field: "n", type: "ordinal", title: "entities", sort: null },
      xOffset: { field: "start" },
      y: { field: "seconds", type: "quantitative", title: "seconds to ready" },
      color: { field: "start", type: "nominal" },
    },
  })
}

const hybrid = async () => {
  const r = latest("hybrid")
  if (r === undefined) return
  const values = (r.rows as Array<{ shape: string; mode: string; ef: number; recall: number; qps: number }>).map((x) => ({
    ...x,
    series: `${x.shape} · ${x.mode}`,
  }))
  await render("hybrid.svg", {
    // QPS by ef: the filtered queries sit at recall 1.0 at every ef, so a recall axis would stack them.
    title: { text: "Hybrid queries: QPS by ef (recall in the table)", subtitle: subtitle(r) },
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "ef", type: "quantitative", title: "ef (log)", scale: { type: "log" } },
      y: { field: "qps", type: "quantitative", title: "queries per second (log)", scale: { type: "log" } },
      color: { field: "series", type: "nominal", title: "query · mode" },
      order: { field: "ef", type: "quantitative" },
    },
  })
}

await recallQps("query-128", "recall-qps-128.svg")
await recallQps("query-768", "recall-qps-768.svg")
await latencyByConcurrency()
await mixed()
await scale()
await ingest()
await restart()
await hybrid()
