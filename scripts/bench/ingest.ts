/**
 * `npm run bench -- ingest [--quick] [--n 100k] [--dim 128] [--batch 500] [--inflight 2] [--repeats N]
 *   [--paths a,b] [--once a,b]` (paths in --once run in the first round only)
 *
 * Durable batch upserts of entities with vectors, a text chunk and their
 * out-edges, timed until the last one is queryable (a kNN query for the last
 * entity's vector returns it), through:
 * - the node Layer in this process (Coordinator.upsert, wait=true),
 * - HTTP POST /v1/entities into an allidbd child process (wait=true, and
 *   wait=false followed by polling until queryable),
 * - the typed RPC client (`@allidb/client` connect) into allidbd,
 * beside raw hnswlib-node addPoint of the same vectors (M=16, efConstruction=200,
 * no durability): the ceiling. Request bodies are built before the clock
 * starts. Each path starts from an empty data dir (sync-mode always).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { connect } from "@allidb/client"
import {
  dataDirPath,
  type EntityJson,
  ensureBuilt,
  entitiesOf,
  httpQuery,
  knnRequest,
  markLoaded,
  openInProcess,
  startServer,
} from "./_allidb.js"
import { type Dataset, entityId, generate, label, type Spec, toArray, vectorOf } from "./_data.js"
import { fmt, isMain, log, median, now, numbers, option, quick, repeat, sleep, table, writeResult } from "./_lib.js"
import { hnswlibSearcher } from "./_peers.js"

export interface IngestOptions {
  readonly spec: Spec
  readonly batch: number
  readonly inflight: number
  readonly repeats: number
  readonly paths: ReadonlyArray<string>
  /** Paths run in the first round only (long ones that are not in the headline). */
  readonly once: ReadonlyArray<string>
}

interface Run {
  readonly path: string
  readonly seconds: number
  readonly entitiesPerSecond: number
}

const freshDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-ingest-"))

/** Sends pre-built batches with `inflight` in flight. */
const send = async (batches: ReadonlyArray<unknown>, inflight: number, f: (b: never) => Promise<void>) => {
  let next = 0
  const worker = async () => {
    for (;;) {
      const i = next++
      if (i >= batches.length) return
      await f(batches[i] as never)
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker))
}

const batchesOf = (d: Dataset, size: number): Array<Array<EntityJson>> => {
  const out: Array<Array<EntityJson>> = []
  for (let s = 0; s < d.n; s += size) out.push(entitiesOf(d, s, Math.min(d.n, s + size)))
  return out
}

/** Polls until a kNN query for the last entity's vector returns it. */
const untilQueryable = async (query: (v: ReadonlyArray<number>) => Promise<ReadonlyArray<{ readonly id: string }>>, d: Dataset) => {
  const last = entityId(d.n - 1)
  const v = toArray(vectorOf(d, d.n - 1))
  for (;;) {
    const rs = await query(v)
    if (rs.some((r) => r.id === last)) return
    await sleep(5)
  }
}

export const runIngest = async (o: IngestOptions) => {
  ensureBuilt()
  const d = generate(o.spec)
  const batches = batchesOf(d, o.batch)
  const bodies = (wait: boolean) => batches.map((entities) => JSON.stringify({ entities, wait }))
  const runs: Array<Run> = []
  const record = (path: string, seconds: number) => {
    runs.push({ path, seconds, entitiesPerSecond: d.n / seconds })
    log(`  ${path}: ${fmt(seconds, 1)} s, ${fmt(d.n / seconds)} entities/s`)
  }
  const paths: Record<string, () => Promise<number>> = {
    "hnswlib-node addPoint": async () => hnswlibSearcher(d).buildSeconds,
    "AlliDB in-process": async () => {
      // When the data set is not cached yet, this load becomes the cached
      // data dir the query workloads open (it is the same load), saving a reload.
      const cache = dataDirPath(d)
      const keep = !Fs.existsSync(Path.join(cache, ".complete"))
      const dir = keep ? cache : freshDir()
      if (keep) {
        Fs.rmSync(cache, { recursive: true, force: true })
        Fs.mkdirSync(cache, { recursive: true })
      }
      const db = await openInProcess(dir)
      const t0 = now()
      await send(batches, o.inflight, (b: Array<EntityJson>) => db.upsert(b))
      await untilQueryable((v) => db.query(knnRequest(v, 64)), d)
      const s = (now() - t0) / 1000
      await db.close()
      if (keep) markLoaded(dir, d, s)
      else Fs.rmSync(dir, { recursive: true, force: true })
      return s
    },
    "AlliDB HTTP": async () => httpPath(true),
    "AlliDB HTTP wait=false": async () => httpPath(false),
    "AlliDB RPC client": async () => {
      const dir = freshDir()
      const server = await startServer(dir)
      const client = await connect({ url: server.url })
      const t0 = now()
      await send(batches, o.inflight, async (b: Array<EntityJson>) => {
        const r = await client.upsert(b as never)
        if (r.failed.length > 0) throw new Error(`refused: ${JSON.stringify(r.failed[0])}`)
      })
      await untilQueryable((v) => httpQuery(server.url, knnRequest(v, 64)), d)
      const s = (now() - t0) / 1000
      await client.close()
      await server.stop()
      Fs.rmSync(dir, { recursive: true, force: true })
      return s
    },
  }
  const httpPath = async (wait: boolean) => {
    const dir = freshDir()
    const server = await startServer(dir)
    const pre = bodies(wait)
    const t0 = now()
    await send(pre, o.inflight, async (body: string) => {
      const res = await fetch(`${server.url}/v1/entities`, { method: "POST", headers: { "content-type": "application/json" }, body })
      const text = await res.text()
      if (res.status !== 200 || text.includes('"failed":[{')) throw new Error(`upsert: ${res.status} ${text.slice(0, 300)}`)
    })
    await untilQueryable((v) => httpQuery(server.url, knnRequest(v, 64)), d)
    const s = (now() - t0) / 1000
    await server.stop()
    Fs.rmSync(dir, { recursive: true, force: true })
    return s
  }
  log(`ingest ${fmt(d.n)} entities (${label(d)}, batches of ${o.batch}, ${o.inflight} in flight, ${o.repeats} repeats)`)
  // Repeats interleave the paths, so drift in the machine's load hits all alike.
  await repeat(o.repeats, async (r) => {
    log(`round ${r + 1}/${o.repeats}`)
    for (const p of o.paths) {
      if (r > 0 && o.once.includes(p)) continue
      const f = paths[p]
      if (f === undefined) throw new Error(`unknown path ${p}; known: ${Object.keys(paths).join(", ")}`)
      record(p, await f())
    }
  })
  const summary = o.paths.map((p) => {
    const mine = runs.filter((r) => r.path === p)
    const rate = median(mine.map((r) => r.entitiesPerSecond))
    return { path: p, entitiesPerSecond: rate, rounds: mine.map((r) => Math.round(r.entitiesPerSecond)) }
  })
  const baseline = summary.find((s) => s.path === "hnswlib-node addPoint")?.entitiesPerSecond ?? Number.NaN
  table(
    `ingest ${label(d)} until queryable (median of ${o.repeats})`,
    ["path", "entities/s", "÷ hnswlib addPoint", "rounds"],
    summary.map((s) => [s.path, fmt(s.entitiesPerSecond), `${fmt(s.entitiesPerSecond / baseline, 2)}×`, s.rounds.join(", ")]),
  )
  const ours = summary.find((s) => s.path === "AlliDB in-process")?.entitiesPerSecond ?? Number.NaN
  log(`AlliDB in-process ingest ÷ raw hnswlib-node: ${fmt(ours / baseline, 2)}× (target ≥ 0.8×)`)
  return { spec: o.spec, batch: o.batch, inflight: o.inflight, runs, summary, ratio: ours / baseline }
}

export const ingestOptionsFromArgs = (): IngestOptions => ({
  spec: {
    n: numbers("n", quick ? "10k" : "100k")[0]!,
    dim: Number(option("dim", "128")),
    queries: 1,
    seed: Number(option("seed", "42")),
  },
  batch: Number(option("batch", "500")),
  inflight: Number(option("inflight", "2")),
  repeats: Number(option("repeats", quick ? "3" : "1")),
  paths: option("paths", "hnswlib-node addPoint,AlliDB in-process,AlliDB HTTP,AlliDB HTTP wait=false,AlliDB RPC client").split(","),
  once: option("once", "").split(",").filter((s) => s !== ""),
})

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runIngest(ingestOptionsFromArgs())
  writeResult("ingest", { ...result, seconds: (Date.now() - started) / 1000 })
}
