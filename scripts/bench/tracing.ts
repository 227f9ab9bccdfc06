/**
 * `npm run bench -- tracing [--n 20k] [--dim 64] [--rounds 5] [--seconds 10]
 *   [--concurrency 4] [--ef 64] [--quick]`
 *
 * The cost of span export on the HTTP query path: the built allidbd serves the
 * same loaded data dir with tracing export off (no OTEL_* variables) and on
 * (OTEL_EXPORTER_OTLP_ENDPOINT pointing at scripts/otlp-sink.mjs, a separate
 * process answering 200), alternating off/on (order flipped every round) so
 * drift in the machine's load hits both alike. Each run warms up, then drives POST /v1/query
 * (top-10 kNN) with a fixed number of concurrent clients for a fixed time.
 * Prints per-round and median QPS of both, their ratio, the server's CPU per
 * query, and how many spans the sink received per query (so a run where export
 * silently dropped spans shows).
 *
 * Then, in this process, the CPU cost of the spans themselves: a request-shaped
 * span tree (request span → Coordinator.query → QueryExecutor.query, the spans
 * a traced query makes) run N times under Effect's built-in tracer and under
 * the OTLP export layer the server uses (Tracing.layerExport, to the same
 * sink, every span exported); the difference per request is what export adds,
 * measured without the noise of a second process.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Tracing } from "@allidb/observability"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Os from "node:os"
import { ensureBuilt, httpQuery, knnRequest, loadAll, openInProcess, startServer } from "./_allidb.js"
import { type Dataset, generate, label, queryOf, toArray } from "./_data.js"
import { fmt, isMain, log, median, now, numbers, option, percentile, quick, ROOT, table, writeResult } from "./_lib.js"

interface Sink {
  readonly url: string
  readonly stats: () => Promise<{ readonly requests: number; readonly bytes: number; readonly spans: number }>
  readonly stop: () => void
}

const startSink = (): Promise<Sink> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [Path.join(ROOT, "scripts", "otlp-sink.mjs"), "--port", "0"], {
      stdio: ["ignore", "pipe", "inherit"],
    })
    child.once("exit", (code) => reject(new Error(`otlp-sink exited with ${code}`)))
    let partial = ""
    child.stdout!.on("data", (b: Buffer) => {
      partial += b.toString()
      const line = partial.split("\n")[0]
      if (!partial.includes("\n") || line === undefined) return
      const url = (JSON.parse(line) as { listening: string }).listening
      resolve({
        url,
        stats: async () => (await (await fetch(`${url}/stats`)).json()) as Awaited<ReturnType<Sink["stats"]>>,
        stop: () => child.kill("SIGTERM"),
      })
    })
  })

/**
 * A private data dir loaded in-process for this run (not the shared cache
 * under .bench-cache, which other workloads rewrite), removed at the end.
 */
const loadPrivateDataDir = async (d: Dataset): Promise<string> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-tracing-"))
  log(`loading ${fmt(d.n)} entities in-process into ${dir}…`)
  const db = await openInProcess(dir)
  const seconds = await loadAll((b) => db.upsert(b), d, 1000, 2, false)
  await db.close()
  log(`  loaded in ${fmt(seconds, 1)} s`)
  return dir
}

/** Every OTEL_* variable is removed for "off", so nothing from the caller's shell turns export on. */
const setTracingEnv = (endpoint: string | undefined): void => {
  for (const name of Object.keys(process.env)) if (name.startsWith("OTEL_")) delete process.env[name]
  if (endpoint !== undefined) {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint
    process.env.OTEL_SERVICE_NAME = "allidb-bench"
  }
}

/**
 * CPU seconds (user + system) the process has used, from /proc (Linux). On a
 * shared machine QPS swings with other load; the server's CPU per query is
 * the steadier measure of what export costs.
 */
const cpuSecondsOf = (pid: number): number => {
  try {
    const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    // utime and stime are fields 14 and 15 of the line, in clock ticks (USER_HZ, 100 on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return Number.NaN
  }
}

interface LoopResult {
  readonly queries: number
  readonly qps: number
  readonly p50: number
  readonly p99: number
}

/** `concurrency` clients each sending one query after another until `seconds` have passed. */
const queryLoop = async (
  url: string,
  vectors: ReadonlyArray<ReadonlyArray<number>>,
  ef: number,
  concurrency: number,
  seconds: number,
): Promise<LoopResult> => {
  const latencies: Array<number> = []
  let next = 0
  const started = now()
  const end = started + seconds * 1000
  const worker = async () => {
    while (now() < end) {
      const q = vectors[next++ % vectors.length]!
      const t0 = now()
      const results = await httpQuery(url, knnRequest(q, ef))
      if (results.length === 0) throw new Error("a query answered no results")
      latencies.push(now() - t0)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (now() - started) / 1000
  return { queries: latencies.length, qps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

/** The spans of one traced query, with the attributes they carry in the server. */
const requestShapedSpans = (i: number) =>
  Effect.void.pipe(
    Effect.withSpan("QueryExecutor.query", {
      attributes: { tenant: "default", "ann.ms": 0.1, "score.ms": 0.02 },
      captureStackTrace: false,
    }),
    Effect.withSpan("Coordinator.query", { attributes: { tenant: "default", k: 10 } }),
    Tracing.withRequestSpan({ surface: "http", route: "/v1/query", requestId: `bench-${i}`, requestBytes: 700, method: "POST" }),
  )

/**
 * CPU µs per request-shaped span tree under `layer` (built and closed inside the
 * measurement, so the final flush is counted). The loop yields to the event loop
 * every 16 requests so the batch processor exports as it would between requests.
 */
const spanCostMicros = (layer: Layer.Layer<never>, requests: number): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function* () {
      for (let i = 0; i < 2_000; i++) yield* requestShapedSpans(i)
      const before = process.cpuUsage()
      yield* Effect.gen(function* () {
        for (let i = 0; i < requests; i++) {
          yield* requestShapedSpans(i)
          if (i % 16 === 15) yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
      }).pipe(Effect.provide(layer))
      const used = process.cpuUsage(before)
      return (used.user + used.system) / requests
    }),
  )

export const runTracing = async (o: {
  readonly n: number
  readonly dim: number
  readonly rounds: number
  readonly seconds: number
  readonly warmupSeconds: number
  readonly concurrency: number
  readonly ef: number
}) => {
  ensureBuilt()
  const d = generate({ n: o.n, dim: o.dim, queries: 200, seed: 42 })
  const vectors = Array.from({ length: d.queries }, (_, i) => toArray(queryOf(d, i)))
  const dir = await loadPrivateDataDir(d)
  const sink = await startSink()
  log(`load average before the runs: ${Os.loadavg().map((x) => fmt(x, 2)).join(", ")} on ${Os.cpus().length} CPUs`)
  log(
    `tracing export off vs on: ${label(d)}, HTTP POST /v1/query top-10 (ef ${o.ef}), ${o.concurrency} clients, ` +
      `${o.seconds} s per run after ${o.warmupSeconds} s warm-up, ${o.rounds} rounds; sink ${sink.url}`,
  )
  const runs: Array<
    { readonly round: number; readonly mode: "off" | "on"; readonly cpuMsPerQuery: number; readonly spansPerQuery?: number } & LoopResult
  > = []
  try {
    for (let round = 0; round < o.rounds; round++) {
      // The order flips every round, so neither mode always follows the other's shutdown.
      for (const mode of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
        setTracingEnv(mode === "on" ? sink.url : undefined)
        const server = await startServer(dir)
        try {
          const before = await sink.stats()
          const warmup = await queryLoop(server.url, vectors, o.ef, o.concurrency, o.warmupSeconds)
          const cpuBefore = cpuSecondsOf(server.pid)
          const result = await queryLoop(server.url, vectors, o.ef, o.concurrency, o.seconds)
          const cpuMsPerQuery = ((cpuSecondsOf(server.pid) - cpuBefore) * 1000) / result.queries
          // The batch processor exports on a timer: give it a moment so the count covers the run.
          if (mode === "on") await new Promise((r) => setTimeout(r, 6_000))
          const after = await sink.stats()
          // Counted over warm-up and run: spans of the warm-up may leave with the run's first batch.
          const spansPerQuery = mode === "on" ? (after.spans - before.spans) / (warmup.queries + result.queries) : undefined
          if (mode === "off" && after.spans !== before.spans) throw new Error("spans were exported with tracing off")
          runs.push({ round, mode, ...result, cpuMsPerQuery, ...(spansPerQuery !== undefined ? { spansPerQuery } : {}) })
          log(
            `  round ${round + 1} ${mode.padEnd(3)}: ${fmt(result.qps)} QPS (p50 ${fmt(result.p50, 2)} ms, p99 ${fmt(result.p99, 2)} ms), ` +
              `server CPU ${fmt(cpuMsPerQuery * 1000)} µs/query` +
              (spansPerQuery !== undefined ? `, ${fmt(spansPerQuery, 2)} spans exported per query` : ""),
          )
        } finally {
          await server.stop()
        }
      }
    }
  } finally {
    sink.stop()
    setTracingEnv(undefined)
    Fs.rmSync(dir, { recursive: true, force: true })
  }
  const qpsOf = (mode: "off" | "on") => median(runs.filter((r) => r.mode === mode).map((r) => r.qps))
  const off = qpsOf("off")
  const on = qpsOf("on")
  const ratio = on / off
  // Each round's on ÷ off pairs two runs seconds apart: drift in the machine's load cancels.
  const pairedRatios = Array.from({ length: o.rounds }, (_, round) => {
    const of = (mode: "off" | "on") => runs.find((r) => r.round === round && r.mode === mode)!
    return { qps: of("on").qps / of("off").qps, cpu: of("on").cpuMsPerQuery / of("off").cpuMsPerQuery }
  })
  const pairedQps = median(pairedRatios.map((r) => r.qps))
  const pairedCpu = median(pairedRatios.map((r) => r.cpu))
  table(
    `Tracing export on vs off — ${label(d)}, HTTP /v1/query, ${o.concurrency} clients (median of ${o.rounds} rounds)`,
    ["tracing", "QPS (median)", "QPS per round", "p50 ms (median)", "p99 ms (median)", "server CPU µs/query (median)", "spans / query"],
    (["off", "on"] as const).map((mode) => {
      const mine = runs.filter((r) => r.mode === mode)
      return [
        mode === "off" ? "off (no OTEL_*)" : "on (OTLP/HTTP JSON to a local sink)",
        fmt(qpsOf(mode)),
        mine.map((r) => fmt(r.qps)).join(", "),
        fmt(median(mine.map((r) => r.p50)), 2),
        fmt(median(mine.map((r) => r.p99)), 2),
        fmt(median(mine.map((r) => r.cpuMsPerQuery * 1000))),
        mode === "on" ? fmt(median(mine.map((r) => r.spansPerQuery ?? 0)), 2) : "0",
      ]
    }),
  )
  // In-process span cost, alternating built-in / export for every round like the servers.
  const spanSink = await startSink()
  const spanRequests = 20_000
  const exportLayer = Tracing.layerExport({ tracesUrl: `${spanSink.url}/v1/traces`, serviceName: "allidb-bench" }, { nodeId: "bench" })
  const spanRuns: Array<{ readonly builtIn: number; readonly exported: number }> = []
  try {
    for (let round = 0; round < o.rounds; round++) {
      const before = await spanSink.stats()
      const builtIn = await spanCostMicros(Layer.empty, spanRequests)
      const exported = await spanCostMicros(exportLayer, spanRequests)
      const received = (await spanSink.stats()).spans - before.spans
      spanRuns.push({ builtIn, exported })
      log(
        `  spans in-process, round ${round + 1}: built-in tracer ${fmt(builtIn, 1)} µs/request, ` +
          `OTLP export ${fmt(exported, 1)} µs/request (${fmt(received / spanRequests, 2)} spans exported per request)`,
      )
    }
  } finally {
    spanSink.stop()
  }
  const builtInMicros = median(spanRuns.map((r) => r.builtIn))
  const exportedMicros = median(spanRuns.map((r) => r.exported))

  const cpuOf = (mode: "off" | "on") => median(runs.filter((r) => r.mode === mode).map((r) => r.cpuMsPerQuery))
  const cpuRatio = cpuOf("on") / cpuOf("off")
  log(`\nQPS on ÷ off: ${fmt(ratio, 3)} (${fmt((1 - ratio) * 100, 1)}% fewer QPS with export on) — target: under 10%`)
  log(
    `per round (paired) QPS on ÷ off: ${pairedRatios.map((r) => fmt(r.qps, 3)).join(", ")} — median ${fmt(pairedQps, 3)}; ` +
      `CPU per query on ÷ off: ${pairedRatios.map((r) => fmt(r.cpu, 3)).join(", ")} — median ${fmt(pairedCpu, 3)}`,
  )
  log(`server CPU per query on ÷ off: ${fmt(cpuRatio, 3)} (${fmt((cpuRatio - 1) * 100, 1)}% more CPU per query with export on)`)
  log(
    `spans of one query, in-process: ${fmt(builtInMicros, 1)} µs (built-in tracer) → ${fmt(exportedMicros, 1)} µs (OTLP export): ` +
      `export adds ${fmt(exportedMicros - builtInMicros, 1)} µs of CPU per query; the server spent ${fmt(cpuOf("off") * 1000)} µs per query with export off`,
  )
  log(`load average during the run: ${Os.loadavg().map((x) => fmt(x, 2)).join(", ")} on ${Os.cpus().length} CPUs`)
  return {
    spec: { n: d.n, dim: d.dim },
    concurrency: o.concurrency,
    ef: o.ef,
    seconds: o.seconds,
    runs,
    offQps: off,
    onQps: on,
    ratio,
    cpuRatio,
    pairedRatios,
    pairedQps,
    pairedCpu,
    spanMicros: { builtIn: builtInMicros, exported: exportedMicros, runs: spanRuns },
  }
}

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runTracing({
    n: numbers("n", "20k")[0]!,
    dim: Number(option("dim", "64")),
    // Five pairs by default: on a shared machine single pairs swing by ±30%; the paired median needs several.
    rounds: Number(option("rounds", quick ? "1" : "5")),
    seconds: Number(option("seconds", quick ? "3" : "10")),
    warmupSeconds: Number(option("warmup", quick ? "1" : "2")),
    concurrency: Number(option("concurrency", "4")),
    ef: Number(option("ef", "64")),
  })
  writeResult("tracing", { ...result, seconds: (Date.now() - started) / 1000 })
}
