/**
 * The unified score: w_vec·similarity + w_graph·path weight +
 * w_imp·importance + w_rec·recency, and the ranking order (score descending,
 * then id ascending so ties are deterministic). Pure functions only.
 *
 * Similarity from an hnswlib distance:
 * - cosine: hnswlib returns 1 − cos(θ), so similarity = 1 − distance ∈ [−1, 1];
 * - l2: hnswlib returns the SQUARED Euclidean distance d², similarity = 1 / (1 + d²) ∈ (0, 1];
 * - ip: hnswlib returns 1 − ⟨q, v⟩, similarity = the raw inner product (unbounded).
 */
import { DEFAULT_WEIGHTS, type ScoreWeights } from "@allidb/core"
import type { Metric } from "./UnifiedIndex.js"

export interface Weights {
  readonly vector: number
  readonly graph: number
  readonly importance: number
  readonly recency: number
}

const DEFAULTS: Weights = {
  vector: DEFAULT_WEIGHTS.vector,
  graph: DEFAULT_WEIGHTS.graph,
  importance: DEFAULT_WEIGHTS.importance,
  recency: DEFAULT_WEIGHTS.recency,
}

/** Per-request weights over the defaults; an omitted weight keeps its default. */
export const resolveWeights = (weights: ScoreWeights | undefined): Weights =>
  weights === undefined ? DEFAULTS : {
  vector: weights?.vector ?? DEFAULT_WEIGHTS.vector,
  graph: weights?.graph ?? DEFAULT_WEIGHTS.graph,
  importance: weights?.importance ?? DEFAULT_WEIGHTS.importance,
  recency: weights?.recency ?? DEFAULT_WEIGHTS.recency,
}

export const similarity = (metric: Metric, distance: number): number => {
  switch (metric) {
    case "cosine":
    case "ip":
      return 1 - distance
    case "l2":
      return 1 / (1 + Math.max(0, distance))
  }
}

/** Missing importance counts as the neutral 0.5. */
export const importanceOf = (importance: number | undefined): number => importance ?? 0.5

/**
 * Exponential decay of age by the half-life: 1 for "now" (or a future
 * timestamp from a skewed clock), 0.5 one half-life ago. An entity without
 * `updatedAt` has no known age and scores 0.
 */
export const recency = (updatedAt: number | undefined, nowMillis: number, halfLifeMs: number): number => {
  if (updatedAt === undefined) return 0
  if (halfLifeMs <= 0) return 0
  const age = Math.max(0, nowMillis - updatedAt)
  return 2 ** (-age / halfLifeMs)
}

export interface Components {
  readonly similarity: number
  readonly graph: number
  readonly importance: number
  readonly recency: number
}

export const score = (w: Weights, c: Components): number =>
  scoreOf(w, c.similarity, c.graph, c.importance, c.recency)

/** `score` from the components as arguments (the query's hot loop allocates no components object). */
export const scoreOf = (w: Weights, similarity: number, graph: number, importance: number, recency: number): number =>
  w.vector * similarity + w.graph * graph + w.importance * importance + w.recency * recency

/** Path weight of an expanded entity: product of edge weights, each hop decayed. */
export const pathWeight = (edgeWeights: ReadonlyArray<number>, hopDecay: number): number => {
  let w = 1
  for (const e of edgeWeights) w *= e * hopDecay
  return w
}

export interface Ranked {
  readonly id: string
  readonly score: number
}

/** Score descending, then id ascending (code-unit order, stable across runs). */
export const compareRanked = (a: Ranked, b: Ranked): number =>
  a.score > b.score ? -1 : a.score < b.score ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0

/**
 * Sorts `items` in place in ranking order. A query ranks a few dozen
 * candidates; an insertion sort over them costs less than Array.prototype.sort
 * with a comparator callback. The order is total (ids are distinct), so the
 * result is the same whichever algorithm runs.
 */
export const sortRanked = <A extends Ranked>(items: Array<A>): Array<A> => {
  if (items.length > 32) return items.sort(compareRanked)
  for (let i = 1; i < items.length; i++) {
    const item = items[i]!
    let j = i - 1
    while (j >= 0 && compareRanked(items[j]!, item) > 0) {
      items[j + 1] = items[j]!
      j--
    }
    items[j + 1] = item
  }
  return items
}

/** The best `k` of `items` in ranking order. */
export const topK = <A extends Ranked>(items: ReadonlyArray<A>, k: number): Array<A> =>
  [...items].sort(compareRanked).slice(0, Math.max(0, k))
