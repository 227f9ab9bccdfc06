/**
 * The libraries users pick instead of AlliDB, run in the same process on the
 * same vectors and queries: raw hnswlib-node (the ceiling for our index — the
 * same library with the same M / efConstruction), usearch and LanceDB embedded.
 * usearch and LanceDB live in scripts/bench/peers (own package.json + lock),
 * installed on first use so the root `npm ci` stays lean.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import hnswlib from "hnswlib-node"
import { type Dataset, K, toArray, vectorOf } from "./_data.js"
import { BENCH_DIR, log, now } from "./_lib.js"

export const M = 16
export const EF_CONSTRUCTION = 200
const PEERS = Path.join(BENCH_DIR, "peers")

/** Installs scripts/bench/peers once (npm ci when the lock exists). */
export const ensurePeers = (): void => {
  if (Fs.existsSync(Path.join(PEERS, "node_modules", ".package-lock.json"))) return
  const lock = Fs.existsSync(Path.join(PEERS, "package-lock.json"))
  log(`installing benchmark peers (${lock ? "npm ci" : "npm install"} --prefix scripts/bench/peers)…`)
  const r = spawnSync("npm", [lock ? "ci" : "install", "--prefix", PEERS, "--no-audit", "--no-fund"], { stdio: "inherit" })
  if (r.status !== 0) throw new Error("installing scripts/bench/peers failed")
}

// LanceDB recognises only the CommonJS build of apache-arrow, so both are loaded with require.
const requirePeer = createRequire(Path.join(PEERS, "package.json"))

export const peerVersions = (): Record<string, string> => {
  // Read package.json files directly: some packages do not export ./package.json.
  const version = (dir: string) => {
    try {
      return (JSON.parse(Fs.readFileSync(Path.join(dir, "package.json"), "utf8")) as { version: string }).version
    } catch {
      return "not installed"
    }
  }
  const peer = (name: string) => version(Path.join(PEERS, "node_modules", name))
  return {
    "hnswlib-node": version(Path.join(BENCH_DIR, "..", "..", "node_modules", "hnswlib-node")),
    "@lancedb/lancedb": peer("@lancedb/lancedb"),
    "apache-arrow": peer("apache-arrow"),
    usearch: peer("usearch"),
    vega: peer("vega"),
    "vega-lite": peer("vega-lite"),
  }
}


// --- the slices of the peers' APIs used here -------------------------------------
interface UsearchIndex {
  add(keys: BigUint64Array, vectors: Float32Array, threads: number): void
  search(q: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array }
  save(path: string): void
  load(path: string): void
}
interface UsearchModule {
  Index: new (config: {
    dimensions: number
    metric: string
    connectivity: number
    expansion_add: number
    expansion_search: number
  }) => UsearchIndex
}
interface LanceQuery {
  distanceType(t: string): LanceQuery
  limit(k: number): LanceQuery
  nprobes(n: number): LanceQuery
  ef(ef: number): LanceQuery
  refineFactor(r: number): LanceQuery
  select(columns: Array<string>): LanceQuery
  toArray(): Promise<Array<{ id: number }>>
}
interface LanceTable {
  add(data: unknown): Promise<unknown>
  createIndex(column: string, options: { config: unknown }): Promise<void>
  vectorSearch(v: Float32Array): LanceQuery
  close(): void
}
interface LanceModule {
  connect(dir: string): Promise<{ createTable(name: string, data: unknown): Promise<LanceTable>; close(): void }>
  Index: { hnswSq(options: Record<string, unknown>): unknown }
}
type ArrowCtor = new (...args: Array<unknown>) => { readonly type?: unknown }
interface ArrowModule {
  Schema: new (fields: Array<unknown>) => { fields: Array<{ type: unknown }> }
  Field: new (name: string, type: unknown, nullable: boolean) => unknown
  Int32: ArrowCtor
  Float32: ArrowCtor
  FixedSizeList: new (size: number, child: unknown) => unknown
  Struct: new (fields: Array<unknown>) => unknown
  makeData: (props: Record<string, unknown>) => unknown
  RecordBatch: new (schema: unknown, data: unknown) => unknown
  Table: new (schema: unknown, batches: Array<unknown>) => unknown
}

/** A built index that answers top-10 (entity indexes) at a given ef. */
export interface Searcher {
  readonly name: string
  readonly settings: string
  readonly buildSeconds: number
  /** Sets the search breadth; returns false when the system has no such knob at that value. */
  readonly setEf: (ef: number) => Promise<void> | void
  readonly search: (q: Float32Array) => Promise<ArrayLike<number>> | ArrayLike<number>
  readonly close: () => Promise<void> | void
}

export const hnswlibSearcher = (d: Dataset): Searcher => {
  const index = new hnswlib.HierarchicalNSW("cosine", d.dim)
  index.initIndex({ maxElements: d.n, m: M, efConstruction: EF_CONSTRUCTION, randomSeed: 100 })
  const t0 = now()
  for (let i = 0; i < d.n; i++) index.addPoint(toArray(vectorOf(d, i)), i)
  const buildSeconds = (now() - t0) / 1000
  return {
    name: "hnswlib-node",
    settings: `HNSW cosine M=${M} efConstruction=${EF_CONSTRUCTION}, addPoint one at a time (single thread)`,
    buildSeconds,
    setEf: (ef) => index.setEf(Math.max(ef, K)),
    search: (q) => index.searchKnn(toArray(q), K).neighbors,
    close: () => undefined,
  }
}

export const usearchSearcher = (d: Dataset): Searcher => {
  const usearch = requirePeer("usearch") as UsearchModule
  const make = (ef: number) =>
    new usearch.Index({
      dimensions: d.dim,
      metric: "cos",
      connectivity: M,
      expansion_add: EF_CONSTRUCTION,
      expansion_search: ef,
    })
  const index = make(64)
  const keys = new BigUint64Array(d.n)
  for (let i = 0; i < d.n; i++) keys[i] = BigInt(i)
  // One add() call for the whole set: it builds on usearch's own threads and
  // blocks the event loop for the whole build.
  const t0 = now()
  index.add(keys, d.vectors.subarray(0, d.n * d.dim), 0)
  const buildSeconds = (now() - t0) / 1000
  // expansion_search is fixed at construction: the ef sweep reopens the saved index.
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-usearch-"))
  const file = Path.join(dir, "index.usearch")
  index.save(file)
  let current = index
  return {
    name: "usearch",
    settings: `HNSW cos f32 connectivity=${M} expansion_add=${EF_CONSTRUCTION}, one batch add() on ${Os.availableParallelism()} threads; search single-threaded`,
    buildSeconds,
    setEf: (ef) => {
      current = make(Math.max(ef, K))
      current.load(file)
    },
    search: (q) => {
      const r = current.search(q, K, 1)
      return Array.from(r.keys, (k) => Number(k))
    },
    close: () => Fs.rmSync(dir, { recursive: true, force: true }),
  }
}

export interface LanceOptions {
  readonly m?: number
  readonly refineFactor?: number
}

/**
 * LanceDB embedded with IVF_HNSW_SQ (one partition, so it is one HNSW graph
 * over scalar-quantised vectors, M and efConstruction as ours) and a refine
 * step on the raw vectors: plain IVF_PQ reaches low recall on 128-d data.
 */
export const lanceSearcher = async (d: Dataset, options: LanceOptions = {}): Promise<Searcher> => {
  // Typed loosely on purpose: the peers package sits outside the root's module
  // resolution, so its .d.ts files are not visible to the root TypeScript.
  const lancedb = requirePeer("@lancedb/lancedb") as LanceModule
  const arrow = requirePeer("apache-arrow") as ArrowModule
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-lance-"))
  const db = await lancedb.connect(dir)
  const refine = options.refineFactor ?? 2
  const schema = new arrow.Schema([
    new arrow.Field("id", new arrow.Int32(), false),
    new arrow.Field("vector", new arrow.FixedSizeList(d.dim, new arrow.Field("item", new arrow.Float32(), true)), false),
  ])
  const t0 = now()
  const batchRows = 50_000
  let table: LanceTable | undefined
  for (let start = 0; start < d.n; start += batchRows) {
    const end = Math.min(d.n, start + batchRows)
    const ids = Int32Array.from({ length: end - start }, (_, j) => start + j)
    const values = d.vectors.slice(start * d.dim, end * d.dim)
    const child = arrow.makeData({ type: new arrow.Float32(), length: values.length, data: values })
    const list = arrow.makeData({
      type: schema.fields[1]!.type,
      length: end - start,
      nullCount: 0,
      child,
    })
    const idData = arrow.makeData({ type: new arrow.Int32(), length: ids.length, data: ids })
    const batch = new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: end - start, children: [idData, list] }))
    const at = new arrow.Table(schema, [batch])
    if (table === undefined) table = await db.createTable("vectors", at)
    else await table.add(at)
  }
  const loadSeconds = (now() - t0) / 1000
  const t1 = now()
  await table!.createIndex("vector", {
    config: lancedb.Index.hnswSq({ distanceType: "cosine", m: options.m ?? M, efConstruction: EF_CONSTRUCTION, numPartitions: 1 }),
  })
  const buildSeconds = loadSeconds + (now() - t1) / 1000
  let ef = 64
  return {
    name: "LanceDB",
    settings: `IVF_HNSW_SQ cosine, 1 partition, m=${options.m ?? M}, efConstruction=${EF_CONSTRUCTION}, refine_factor=${refine}; build = load ${loadSeconds.toFixed(1)} s + index`,
    buildSeconds,
    // LanceDB asks for k × refine_factor candidates, and wants ef ≥ that.
    setEf: (value) => {
      ef = Math.max(value, K * refine)
    },
    search: async (q) => {
      const rows = await table!
        .vectorSearch(q)
        .distanceType("cosine")
        .limit(K)
        .nprobes(1)
        .ef(ef)
        .refineFactor(refine)
        .select(["id", "_distance"])
        .toArray()
      return rows.map((r) => r.id)
    },
    close: async () => {
      table?.close()
      db.close()
      Fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
