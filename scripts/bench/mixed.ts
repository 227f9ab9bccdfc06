/**
 * `npm run bench -- mixed [--quick] [--n 100k] [--seconds 60] [--clients 4]`
 *
 * A RAG-like mix against allidbd over HTTP for a fixed time, on a private
 * copy of a loaded data set: 80% hybrid queries (kNN + 2-hop expansion,
 * unified score, entities returned), 15% upserts (a new entity with a vector
 * from the same mixture, a chunk and edges into the existing graph, wait=true
 * so it is queryable on ack), 5% deletes of existing entities. The operation
 * sequence comes from a seeded generator, so two runs issue the same mix.
 * Prints throughput and latency percentiles per operation kind.
 */
import * as Fs from "node:fs"
import { copyDataDir, ensureBuilt, httpDelete, httpQuery, httpUpsert, loadedDataDir, startServer } from "./_allidb.js"
import { type Dataset, entityJson, generate, label, queryOf, type Spec, toArray } from "./_data.js"
import { fmt, isMain, log, now, numbers, option, percentile, quick, rng, table, writeResult } from "./_lib.js"

export interface MixedOptions {
  readonly spec: Spec
  readonly seconds: number
  readonly clients: number
  readonly seed: number
}

type Kind = "query" | "upsert" | "delete"

/** A new entity: a stored vector plus small noise, edges into the loaded graph. */
const newEntity = (d: Dataset, j: number, random: () => number) => {
  const base = entityJson(d, Math.floor(random() * d.n))
  return {
    ...base,
    id: `new${j}`,
    vector: base.vector.map((x) => x + (random() - 0.5) * 0.2),
    edges: base.edges.slice(0, 4),
  }
}

export const runMixed = async (o: MixedOptions) => {
  ensureBuilt()
  const d = generate(o.spec)
  const dir = copyDataDir(await loadedDataDir(d))
  const server = await startServer(dir)
  const random = rng(o.seed)
  const lat: Record<Kind, Array<number>> = { query: [], upsert: [], delete: [] }
  const errors: Record<Kind, number> = { query: 0, upsert: 0, delete: 0 }
  let created = 0
  const deleted = new Set<number>()
  const deadline = now() + o.seconds * 1000
  const rssBefore = server.rss()
  log(`mixed 80/15/5 on ${label(d)} for ${o.seconds} s with ${o.clients} HTTP clients…`)
  const t0 = now()
  const client = async () => {
    while (now() < deadline) {
      const u = random()
      const kind: Kind = u < 0.8 ? "query" : u < 0.95 ? "upsert" : "delete"
      const t = now()
      try {
        if (kind === "query") {
          const q = Math.floor(random() * d.queries)
          await httpQuery(server.url, { vector: toArray(queryOf(d, q)), k: 10, ef: 64, expand: { hops: 2, factor: 2 } })
        } else if (kind === "upsert") {
          await httpUpsert(server.url, [newEntity(d, created++, random)])
        } else {
          let victim = Math.floor(random() * d.n)
          while (deleted.has(victim)) victim = (victim + 1) % d.n
          deleted.add(victim)
          await httpDelete(server.url, `e${victim}`)
        }
        lat[kind].push(now() - t)
      } catch (e) {
        errors[kind]++
        if (errors[kind] <= 3) log(`  ${kind} failed: ${String(e).slice(0, 200)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: o.clients }, client))
  const seconds = (now() - t0) / 1000
  const rssAfter = server.rss()
  await server.stop()
  Fs.rmSync(dir, { recursive: true, force: true })
  const total = lat.query.length + lat.upsert.length + lat.delete.length
  const rows = (["query", "upsert", "delete"] as const).map((k) => ({
    kind: k,
    count: lat[k].length,
    errors: errors[k],
    perSecond: lat[k].length / seconds,
    p50: percentile(lat[k], 50),
    p95: percentile(lat[k], 95),
    p99: percentile(lat[k], 99),
    max: percentile(lat[k], 100),
  }))
  table(
    `mixed 80% hybrid query / 15% upsert / 5% delete, ${label(d)}, ${o.clients} clients, ${fmt(seconds, 0)} s: ${fmt(total / seconds)} ops/s`,
    ["operation", "count", "errors", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
    rows.map((r) => [r.kind, fmt(r.count), fmt(r.errors), fmt(r.perSecond, 1), fmt(r.p50, 1), fmt(r.p95, 1), fmt(r.p99, 1), fmt(r.max, 1)]),
  )
  return { spec: o.spec, clients: o.clients, seconds, opsPerSecond: total / seconds, rows, rssBeforeMiB: rssBefore / 2 ** 20, rssAfterMiB: rssAfter / 2 ** 20 }
}

export const mixedOptionsFromArgs = (): MixedOptions => ({
  spec: {
    n: numbers("n", quick ? "10k" : "100k")[0]!,
    dim: Number(option("dim", "128")),
    queries: Number(option("queries", "200")),
    seed: Number(option("seed", "42")),
  },
  seconds: Number(option("seconds", quick ? "20" : "60")),
  clients: Number(option("clients", "4")),
  seed: Number(option("mix-seed", "7")),
})

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runMixed(mixedOptionsFromArgs())
  writeResult("mixed", { ...result, wallSeconds: (Date.now() - started) / 1000 })
}
