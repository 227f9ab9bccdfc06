/**
 * Deterministic benchmark data from a seed (no downloads):
 * - vectors: a Gaussian mixture of 100 clusters of unequal size, each cluster
 *   spread along its own 16-dimensional subspace plus small isotropic noise —
 *   closer to real embeddings (low intrinsic dimension, clustered) than uniform
 *   noise. Vector i depends only on the seed and i's position in one stream, so
 *   the 10k set is a prefix of the 100k set, which is a prefix of the 1M set.
 * - queries: fresh draws of the same mixture (another stream).
 * - graph: typed, weighted edges with a power-law out-degree (mean ≈ 4), half
 *   of them inside the source's cluster (topical neighbourhoods), half anywhere.
 * - metadata: `group` in 0..99 uniform, so `group = 7` selects ~1%.
 * - exact top-k (cosine) ground truth, plain and filtered, computed with a
 *   tight loop over Float32Arrays once and cached under .bench-cache/.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { CACHE_DIR, fmt, gaussian, log, now, rng } from "./_lib.js"

export const CLUSTERS = 100
const SUBSPACE = 16
export const FILTER_GROUP = 7
export const RELATIONS = ["cites", "mentions", "part_of", "related_to"] as const
const RELATION_CDF = [0.4, 0.7, 0.9, 1]
export const K = 10

export interface Spec {
  readonly n: number
  readonly dim: number
  readonly queries: number
  readonly seed: number
}

export interface Dataset extends Spec {
  /** n × dim, row-major. */
  readonly vectors: Float32Array
  /** queries × dim. */
  readonly queryVectors: Float32Array
  readonly cluster: Uint16Array
  readonly group: Uint8Array
  readonly importance: Float32Array
  /** CSR adjacency: edges of i are [edgeStart[i], edgeStart[i+1]). */
  readonly edgeStart: Uint32Array
  readonly edgeTo: Uint32Array
  readonly edgeRelation: Uint8Array
  readonly edgeWeight: Float32Array
}

export const key = (s: Spec): string => `n${s.n}-d${s.dim}-q${s.queries}-s${s.seed}`
/** The entities only (queries do not change what is stored). */
export const dataKey = (s: Spec): string => `n${s.n}-d${s.dim}-s${s.seed}`
export const label = (s: Spec): string => `${s.n >= 1e6 ? `${s.n / 1e6}M` : s.n >= 1e3 ? `${s.n / 1e3}k` : s.n} × ${s.dim}`
export const entityId = (i: number): string => `e${i}`
export const vectorOf = (d: Dataset, i: number): Float32Array => d.vectors.subarray(i * d.dim, (i + 1) * d.dim)
export const queryOf = (d: Dataset, q: number): Float32Array => d.queryVectors.subarray(q * d.dim, (q + 1) * d.dim)
export const toArray = (v: Float32Array): Array<number> => Array.from(v)

interface Mixture {
  readonly centres: Float32Array
  readonly bases: Float32Array
  readonly cdf: Float64Array
}

const mixture = (dim: number, seed: number): Mixture => {
  const random = rng(seed ^ 0x5eed)
  const normal = gaussian(random)
  const centres = new Float32Array(CLUSTERS * dim)
  for (let i = 0; i < centres.length; i++) centres[i] = normal()
  // Each cluster: a random 16-d basis scaled by its own spread.
  const bases = new Float32Array(CLUSTERS * SUBSPACE * dim)
  for (let c = 0; c < CLUSTERS; c++) {
    const spread = 0.6 + 0.5 * random()
    const scale = spread / Math.sqrt(SUBSPACE)
    for (let j = 0; j < SUBSPACE * dim; j++) bases[c * SUBSPACE * dim + j] = normal() * scale * Math.sqrt(dim / SUBSPACE)
  }
  // Unequal cluster sizes (Zipf-like, exponent 0.7).
  const w = Array.from({ length: CLUSTERS }, (_, c) => 1 / (c + 1) ** 0.7)
  const total = w.reduce((a, b) => a + b, 0)
  const cdf = new Float64Array(CLUSTERS)
  let acc = 0
  for (let c = 0; c < CLUSTERS; c++) {
    acc += w[c]! / total
    cdf[c] = acc
  }
  return { centres, bases, cdf }
}

const drawInto = (
  m: Mixture,
  dim: number,
  random: () => number,
  normal: () => number,
  out: Float32Array,
  offset: number,
): number => {
  const u = random()
  let c = 0
  while (c < CLUSTERS - 1 && m.cdf[c]! < u) c++
  const z = new Float64Array(SUBSPACE)
  for (let r = 0; r < SUBSPACE; r++) z[r] = normal()
  const cBase = c * dim
  const bBase = c * SUBSPACE * dim
  for (let j = 0; j < dim; j++) {
    let x = m.centres[cBase + j]! + 0.15 * normal()
    for (let r = 0; r < SUBSPACE; r++) x += z[r]! * m.bases[bBase + r * dim + j]!
    out[offset + j] = x
  }
  return c
}

export const generate = (spec: Spec): Dataset => {
  const t0 = now()
  const { n, dim, seed } = spec
  const m = mixture(dim, seed)
  const vectors = new Float32Array(n * dim)
  const cluster = new Uint16Array(n)
  {
    const random = rng(seed)
    const normal = gaussian(random)
    for (let i = 0; i < n; i++) cluster[i] = drawInto(m, dim, random, normal, vectors, i * dim)
  }
  const queryVectors = new Float32Array(spec.queries * dim)
  {
    const random = rng(seed + 1_000_003)
    const normal = gaussian(random)
    for (let q = 0; q < spec.queries; q++) drawInto(m, dim, random, normal, queryVectors, q * dim)
  }
  const meta = rng(seed + 7)
  const group = new Uint8Array(n)
  const importance = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    group[i] = Math.floor(meta() * 100)
    importance[i] = Math.round(meta() * 1000) / 1000
  }
  // Graph: Pareto out-degree (alpha 1.5, xm 1.65, floored, capped at 200) → mean ≈ 4.
  const members: Array<Array<number>> = Array.from({ length: CLUSTERS }, () => [])
  for (let i = 0; i < n; i++) members[cluster[i]!]!.push(i)
  const g = rng(seed * 31 + n)
  const degree = new Uint32Array(n)
  let total = 0
  for (let i = 0; i < n; i++) {
    const d = Math.min(200, Math.floor(1.65 / Math.max(g(), 1e-9) ** (1 / 1.5)))
    degree[i] = Math.max(0, d)
    total += degree[i]!
  }
  const edgeStart = new Uint32Array(n + 1)
  const edgeTo = new Uint32Array(total)
  const edgeRelation = new Uint8Array(total)
  const edgeWeight = new Float32Array(total)
  let e = 0
  for (let i = 0; i < n; i++) {
    edgeStart[i] = e
    const seen = new Set<number>([i])
    for (let k = 0; k < degree[i]!; k++) {
      const own = members[cluster[i]!]!
      let to = g() < 0.5 && own.length > 1 ? own[Math.floor(g() * own.length)]! : Math.floor(g() * n)
      if (seen.has(to)) to = (to + 1 + Math.floor(g() * (n - 1))) % n
      if (seen.has(to)) continue
      seen.add(to)
      const r = g()
      edgeTo[e] = to
      edgeRelation[e] = RELATION_CDF.findIndex((p) => r < p)
      edgeWeight[e] = Math.round((0.1 + 0.9 * g()) * 1000) / 1000
      e++
    }
  }
  edgeStart[n] = e
  const ds: Dataset = {
    ...spec,
    vectors,
    queryVectors,
    cluster,
    group,
    importance,
    edgeStart,
    edgeTo: edgeTo.subarray(0, e),
    edgeRelation: edgeRelation.subarray(0, e),
    edgeWeight: edgeWeight.subarray(0, e),
  }
  log(`data ${label(spec)}: generated in ${fmt((now() - t0) / 1000, 1)} s (${fmt(e)} edges, mean out-degree ${fmt(e / n, 2)})`)
  return ds
}

/** The entity as the native JSON API takes it (snake_case). */
export const entityJson = (d: Dataset, i: number) => {
  const edges = []
  for (let e = d.edgeStart[i]!; e < d.edgeStart[i + 1]!; e++) {
    edges.push({ to: entityId(d.edgeTo[e]!), relation: RELATIONS[d.edgeRelation[e]!]!, weight: d.edgeWeight[e]! })
  }
  return {
    id: entityId(i),
    type: "doc",
    vector: toArray(vectorOf(d, i)),
    metadata: { group: d.group[i]!, cluster: d.cluster[i]! },
    importance: d.importance[i]!,
    chunks: [{ id: "c0", text: `Passage ${i} of topic ${d.cluster[i]}: synthetic text standing in for a chunk of a document.` }],
    edges,
  }
}

// --- exact ground truth ------------------------------------------------------------

const normalised = (v: Float32Array, dim: number): Float32Array => {
  const out = new Float32Array(v.length)
  for (let i = 0; i < v.length; i += dim) {
    let s = 0
    for (let j = 0; j < dim; j++) s += v[i + j]! * v[i + j]!
    const inv = 1 / Math.sqrt(s || 1)
    for (let j = 0; j < dim; j++) out[i + j] = v[i + j]! * inv
  }
  return out
}

/** Exact cosine top-k for each query among rows passing `keep`, by brute force. */
const bruteForce = (d: Dataset, count: number, keep: ((i: number) => boolean) | undefined): Int32Array => {
  const dim = d.dim
  const base = normalised(d.vectors, dim)
  const qs = normalised(d.queryVectors.subarray(0, count * dim), dim)
  const out = new Int32Array(count * K).fill(-1)
  const bestSim = new Float64Array(K)
  const bestId = new Int32Array(K)
  const rows = keep === undefined ? undefined : Int32Array.from({ length: d.n }, (_, i) => i).filter(keep)
  const total = rows === undefined ? d.n : rows.length
  for (let q = 0; q < count; q++) {
    bestSim.fill(-Infinity)
    bestId.fill(-1)
    const qo = q * dim
    for (let r = 0; r < total; r++) {
      const i = rows === undefined ? r : rows[r]!
      const io = i * dim
      let s0 = 0
      let s1 = 0
      let s2 = 0
      let s3 = 0
      let j = 0
      for (; j + 3 < dim; j += 4) {
        s0 += base[io + j]! * qs[qo + j]!
        s1 += base[io + j + 1]! * qs[qo + j + 1]!
        s2 += base[io + j + 2]! * qs[qo + j + 2]!
        s3 += base[io + j + 3]! * qs[qo + j + 3]!
      }
      for (; j < dim; j++) s0 += base[io + j]! * qs[qo + j]!
      const s = s0 + s1 + s2 + s3
      if (s > bestSim[K - 1]!) {
        let p = K - 1
        while (p > 0 && bestSim[p - 1]! < s) {
          bestSim[p] = bestSim[p - 1]!
          bestId[p] = bestId[p - 1]!
          p--
        }
        bestSim[p] = s
        bestId[p] = i
      }
    }
    out.set(bestId, q * K)
  }
  return out
}

export interface Truth {
  /** count × K entity indexes, best first. */
  readonly ids: Int32Array
  readonly count: number
  readonly seconds: number
  readonly cached: boolean
}

const cached = (file: string, compute: () => Int32Array, count: number): Truth => {
  if (Fs.existsSync(file)) {
    const buf = Fs.readFileSync(file)
    const ids = new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice()
    if (ids.length === count * K) return { ids, count, seconds: 0, cached: true }
  }
  const t0 = now()
  const ids = compute()
  const seconds = (now() - t0) / 1000
  Fs.mkdirSync(Path.dirname(file), { recursive: true })
  Fs.writeFileSync(`${file}.tmp`, Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength))
  Fs.renameSync(`${file}.tmp`, file)
  return { ids, count, seconds, cached: false }
}

/**
 * Exact top-10 for the first `count` queries (all of them by default; at 1M a
 * subset, since brute force costs n × count × dim multiply-adds).
 */
export const groundTruth = (d: Dataset, count = d.queries): Truth => {
  const t = cached(Path.join(CACHE_DIR, "truth", `${key(d)}-k${K}-c${count}.i32`), () => bruteForce(d, count, undefined), count)
  log(
    `ground truth ${label(d)} for ${count} queries: ${t.cached ? "cached" : `computed in ${fmt(t.seconds, 1)} s (brute force, ${fmt((d.n * count * d.dim) / 1e9, 1)} G multiply-adds)`}`,
  )
  return t
}

/** Exact top-10 among the ~1% of entities with group = FILTER_GROUP. */
export const filteredTruth = (d: Dataset, count = d.queries): Truth =>
  cached(
    Path.join(CACHE_DIR, "truth", `${key(d)}-k${K}-c${count}-group${FILTER_GROUP}.i32`),
    () => bruteForce(d, count, (i) => d.group[i] === FILTER_GROUP),
    count,
  )

/** Mean recall@10 of `got` (entity indexes per query) against the truth. */
export const recallAt10 = (truth: Truth, got: ReadonlyArray<ArrayLike<number>>): number => {
  let hits = 0
  let possible = 0
  for (let q = 0; q < Math.min(truth.count, got.length); q++) {
    const want = new Set<number>()
    for (let j = 0; j < K; j++) {
      const id = truth.ids[q * K + j]!
      if (id >= 0) want.add(id)
    }
    const g = got[q]!
    for (let j = 0; j < Math.min(K, g.length); j++) if (want.has(g[j]!)) hits++
    possible += want.size
  }
  return hits / Math.max(1, possible)
}

export const indexOfId = (id: string): number => Number(id.slice(1))
