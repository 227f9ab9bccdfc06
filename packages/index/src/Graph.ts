/**
 * In-memory graph of one tenant: outgoing edges as stored in each row, and
 * the derived incoming edges (never stored twice). `Expansion` is a bounded,
 * resumable walk from a set of origins: `run(budget)` relaxes at most `budget`
 * edges and returns whether it finished, so callers can yield between slices
 * and be interrupted. Pure data structures; no effects.
 */
import type { Direction } from "@allidb/core"

export interface Edge {
  readonly to: string
  readonly relation: string
  readonly weight: number
}

export interface Neighbour {
  readonly id: string
  readonly relation: string
  readonly weight: number
  readonly direction: "out" | "in"
}

export interface Step {
  readonly from: string
  readonly to: string
  readonly relation: string
  readonly weight: number
  readonly direction: "out" | "in"
}

const inKey = (from: string, relation: string): string => `${from}\u0000${relation}`

/**
 * Copies of `edges` from `from`, one per (relation, to) — the storage row has
 * one cell per pair, and the last occurrence wins as a Map's set would — in
 * the order each pair first appears.
 */
const uniqueEdges = (from: string, edges: ReadonlyArray<Edge>): Array<StoredEdge> => {
  const copy = (e: Edge): StoredEdge => ({ to: e.to, relation: e.relation, weight: e.weight, from, inPos: -1 })
  if (edges.length > SMALL_EDGE_LIST) {
    const unique = new Map<string, StoredEdge>()
    for (const e of edges) unique.set(inKey(e.to, e.relation), copy(e))
    return [...unique.values()]
  }
  const list: Array<StoredEdge> = []
  outer: for (const e of edges) {
    for (let j = 0; j < list.length; j++) {
      const seen = list[j]!
      if (seen.to === e.to && seen.relation === e.relation) {
        list[j] = copy(e)
        continue outer
      }
    }
    list.push(copy(e))
  }
  return list
}

const byWeightThenId = (a: Neighbour, b: Neighbour): number =>
  b.weight - a.weight ||
  (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) ||
  (a.relation < b.relation ? -1 : a.relation > b.relation ? 1 : 0) ||
  (a.direction < b.direction ? -1 : a.direction > b.direction ? 1 : 0)

/**
 * One stored edge, shared by its source's out list and its target's incoming
 * list; `inPos` is its index in that incoming list, so removing it is a swap
 * with the last one (no Map and no composite string key per edge: building a
 * row's adjacency was the largest part of the index's own work per row).
 */
interface StoredEdge extends Edge {
  readonly from: string
  inPos: number
}

/** Up to this many edges, duplicates are found by comparing pairs (no Map per row). */
const SMALL_EDGE_LIST = 16

export class Adjacency {
  private readonly out = new Map<string, ReadonlyArray<StoredEdge>>()
  /** Incoming edges by target; order is arbitrary (neighbours() sorts). */
  private readonly incoming = new Map<string, Array<StoredEdge>>()
  private edgeCount = 0

  get edges(): number {
    return this.edgeCount
  }

  outEdges(id: string): ReadonlyArray<Edge> {
    return this.out.get(id) ?? []
  }

  /** Replaces the outgoing edges of `from` (a row re-read from storage carries all of them). */
  setOutEdges(from: string, edges: ReadonlyArray<Edge>): void {
    const previous = this.out.get(from)
    if (previous !== undefined) {
      for (const e of previous) this.removeIncoming(e)
      this.edgeCount -= previous.length
      this.out.delete(from)
    }
    if (edges.length === 0) return
    const list = uniqueEdges(from, edges)
    this.out.set(from, list)
    this.edgeCount += list.length
    for (const e of list) {
      const into = this.incoming.get(e.to)
      if (into === undefined) {
        e.inPos = 0
        this.incoming.set(e.to, [e])
      } else {
        e.inPos = into.length
        into.push(e)
      }
    }
  }

  private removeIncoming(e: StoredEdge): void {
    const into = this.incoming.get(e.to)
    // A broken invariant (an out edge missing from its target's list) would
    // silently corrupt expansion; fail loudly instead.
    if (into === undefined || into[e.inPos] !== e) throw new Error(`adjacency out of step at ${e.from} → ${e.to}`)
    const last = into.pop()!
    if (last !== e) {
      last.inPos = e.inPos
      into[e.inPos] = last
    }
    if (into.length === 0) this.incoming.delete(e.to)
  }

  /** Neighbours in the given direction(s), highest weight first, then id: the fan-out keeps the strongest. */
  neighbours(id: string, direction: Direction, relations: ReadonlySet<string> | undefined): Array<Neighbour> {
    const result: Array<Neighbour> = []
    if (direction !== "in") {
      for (const e of this.out.get(id) ?? []) {
        if (relations === undefined || relations.has(e.relation)) {
          result.push({ id: e.to, relation: e.relation, weight: e.weight, direction: "out" })
        }
      }
    }
    if (direction !== "out") {
      const into = this.incoming.get(id)
      if (into !== undefined) {
        for (const e of into) {
          if (relations === undefined || relations.has(e.relation)) {
            result.push({ id: e.from, relation: e.relation, weight: e.weight, direction: "in" })
          }
        }
      }
    }
    return result.sort(byWeightThenId)
  }

  /** Every (from, edges) pair, for snapshots. */
  entries(): IterableIterator<[string, ReadonlyArray<Edge>]> {
    return this.out.entries()
  }
}

export interface ExpansionOptions {
  readonly hops: number
  readonly direction: Direction
  readonly relations?: ReadonlyArray<string> | undefined
  /** Neighbours followed per node (strongest first). */
  readonly fanout: number
  /** Factor applied per hop on top of the edge weight. */
  readonly hopDecay: number
  /**
   * "weight": a node keeps its highest-weight path within `hops` (query
   * expansion). "depth": a node keeps its shortest path, the highest weight
   * among equally short ones (traversal).
   */
  readonly prefer: "weight" | "depth"
  /** Only existing entities are reached or walked through. */
  readonly exists: (id: string) => boolean
}

export interface Reached {
  readonly id: string
  readonly origin: string
  readonly depth: number
  readonly weight: number
  readonly path: ReadonlyArray<Step>
}

const better = (prefer: "weight" | "depth", a: Reached, b: Reached | undefined): boolean => {
  if (b === undefined) return true
  if (prefer === "depth") {
    if (a.depth !== b.depth) return a.depth < b.depth
    if (a.weight !== b.weight) return a.weight > b.weight
  } else {
    if (a.weight !== b.weight) return a.weight > b.weight
    if (a.depth !== b.depth) return a.depth < b.depth
  }
  return a.origin < b.origin
}

/**
 * Walks from each origin separately (an entity's path names the hit it was
 * reached from) and keeps, over all origins, the best path per entity.
 * Origins themselves are never in the result.
 */
export class Expansion {
  private readonly relations: ReadonlySet<string> | undefined
  private readonly originSet: ReadonlySet<string>
  private readonly best = new Map<string, Reached>()
  private originIndex = 0
  private local = new Map<string, Reached>()
  private frontier: Array<Reached> = []
  private frontierPos = 0
  private next = new Map<string, Reached>()
  private level = 0

  constructor(
    private readonly graph: Adjacency,
    private readonly origins: ReadonlyArray<string>,
    private readonly options: ExpansionOptions,
  ) {
    this.relations = options.relations === undefined ? undefined : new Set(options.relations)
    this.originSet = new Set(origins)
    this.startOrigin()
  }

  private startOrigin(): void {
    this.local = new Map()
    this.next = new Map()
    this.level = 0
    this.frontierPos = 0
    const origin = this.origins[this.originIndex]
    this.frontier =
      origin === undefined || !this.options.exists(origin)
        ? []
        : [{ id: origin, origin, depth: 0, weight: 1, path: [] }]
  }

  /** Relaxes up to `budget` edges; true once every origin is done. */
  run(budget: number): boolean {
    let spent = 0
    const { hops, direction, fanout, hopDecay, prefer, exists } = this.options
    while (this.originIndex < this.origins.length) {
      while (this.level < hops && this.frontier.length > 0) {
        while (this.frontierPos < this.frontier.length) {
          if (spent >= budget) return false
          const node = this.frontier[this.frontierPos++]!
          const neighbours = this.graph.neighbours(node.id, direction, this.relations)
          const limit = Math.min(fanout, neighbours.length)
          for (let i = 0; i < limit; i++) {
            const n = neighbours[i]!
            spent++
            if (n.id === node.origin || !exists(n.id)) continue
            const candidate: Reached = {
              id: n.id,
              origin: node.origin,
              depth: node.depth + 1,
              weight: node.weight * n.weight * hopDecay,
              path: [
                ...node.path,
                // Walk order: `from` is where this hop starts; `direction` says whether the edge was followed forwards.
                {
                  from: node.id,
                  to: n.id,
                  relation: n.relation,
                  weight: n.weight,
                  direction: n.direction,
                },
              ],
            }
            if (better(prefer, candidate, this.local.get(n.id))) {
              this.local.set(n.id, candidate)
              this.next.set(n.id, candidate)
            }
          }
        }
        this.frontier = [...this.next.values()]
        this.next = new Map()
        this.frontierPos = 0
        this.level++
      }
      for (const r of this.local.values()) {
        if (!this.originSet.has(r.id) && better(prefer, r, this.best.get(r.id))) this.best.set(r.id, r)
      }
      this.originIndex++
      this.startOrigin()
    }
    return true
  }

  get result(): ReadonlyMap<string, Reached> {
    return this.best
  }
}
