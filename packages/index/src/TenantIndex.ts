/**
 * The in-memory index of one tenant: an hnswlib HierarchicalNSW over the
 * vectors, the label ↔ id maps, a float32 mirror of the vectors (exact scans,
 * unchanged-vector detection, snapshots), per-entity attributes for filtering
 * and scoring, posting sets for filter selectivity, and the graph adjacency.
 *
 * Labels are ours: a deleted entity's label is marked deleted in hnswlib and
 * kept on a free list; the next new vector takes it and `addPoint` on that
 * label replaces the slot in place (hnswlib unmarks it and rewires it). That
 * reuses slots like `replaceDeleted` does, but keeps labels dense so every
 * per-label array stays compact and which slot is reused stays deterministic.
 *
 * Everything here is synchronous and single-threaded; the service decides
 * when it runs (time slices) and under which lock.
 *
 * `applyRange` applies a run of rows with their native inserts made back to
 * back after the run's own JavaScript work, timed once per run: hnswlib's
 * insert walks a graph far larger than the caches, and JavaScript between two
 * inserts evicts part of what the next one reuses (a 100k profile put the
 * native insert ~43 µs above raw addPoint's; how much grouping wins back is
 * within this shared machine's noise — the clock reads and per-row objects it
 * removed are the measured gain). Nothing can observe the difference: the
 * deferred inserts are made before the call returns, in the order sequential
 * application would make them (a release flushes them first).
 */
import type { Entity, Metadata } from "@allidb/core"
import type * as Filter from "./Filter.js"
import { metadataKey, typeKey } from "./Filter.js"
import { Adjacency } from "./Graph.js"
import * as NativeHnsw from "./NativeHnsw.js"
import type { Metric } from "./UnifiedIndex.js"

export interface Attributes {
  readonly type: string | undefined
  readonly metadata: Metadata | undefined
  readonly importance: number | undefined
  readonly updatedAt: number | undefined
  /** HNSW label, or -1 when the entity has no (indexable) vector. */
  readonly label: number
}

export interface HnswParams {
  readonly m: number
  readonly efConstruction: number
  readonly randomSeed: number
  readonly initialCapacity: number
  readonly growthFactor: number
}

/** What applying one row did to the vector index. */
export type ApplyOutcome = "inserted" | "unchanged" | "removed" | "skipped" | "none"

/** What `applyRange` did, added to by each call (one object per apply loop, not one per row). */
export interface ApplyCounts {
  inserted: number
  skipped: number
}

export interface Hit {
  readonly id: string
  readonly distance: number
}

/** The native search result: labels and their distances, nearest first. */
export interface LabelHits {
  readonly neighbors: ArrayLike<number>
  readonly distances: ArrayLike<number>
}

/** The empty edge list, shared: most rows have no edges. */
const NO_EDGES: ReadonlyArray<never> = []
const NO_HITS: LabelHits = { neighbors: [], distances: [] }

/**
 * Numbers per label in `scoring`: importance, updatedAt, and whether each is
 * set (1) or not (0) — a flag rather than a NaN sentinel, so any stored value
 * scores exactly as its attributes would.
 */
const SCORING_STRIDE = 4

export class TenantIndex {
  private native: NativeHnsw.Hnsw | undefined = undefined
  /** The ef last handed to hnswlib's setEf (-1: unknown), so a query only pays the native call when ef changes. */
  private currentEf = -1
  capacity = 0
  nextLabel = 0
  labelToId: Array<string | undefined> = []
  freeLabels: Array<number> = []
  /** Raw vectors by label (float32, as hnswlib stores them before normalising). */
  vectors: Float32Array = new Float32Array(0)
  norms: Float32Array = new Float32Array(0)
  /**
   * Importance and updatedAt by label (see SCORING_STRIDE), mirrored from
   * `attrs`: scoring an ANN hit reads one cache line here instead of a Map
   * entry and an attributes object, both cold after the search has swept
   * the caches (measured: ~0.3 µs a hit at 100k).
   */
  scoring: Float64Array = new Float64Array(0)
  readonly attrs = new Map<string, Attributes>()
  readonly graph = new Adjacency()
  /** Labels by posting key (Filter's typeKey / metadataKey): what filters look up. */
  readonly postings = new Map<string, Set<number>>()
  /** The same sets by type, and by metadata field then value (see postingSet). */
  private readonly typeSets = new Map<string | number | boolean, Set<number>>()
  private readonly metadataSets = new Map<string, Map<string | number | boolean, Set<number>>>()
  liveVectors = 0
  /** Milliseconds spent inside hnswlib's addPoint (the rest of applying a row is the index's own overhead). */
  addPointMs = 0
  /** Native inserts made (with `addPointMs`, the average cost of one). */
  addPointCount = 0
  /** Native inserts deferred to the end of the current range (see `applyRange`), as parallel lists. */
  private readonly pendingLabels: Array<number> = []
  private readonly pendingVectors: Array<Float32Array> = []
  /** The same labels as a set: a label inserted twice in one range flushes the first insert (its mirror slot is reused). */
  private readonly pendingSet = new Set<number>()
  /** The query as float32 for the native search, and its result arrays (reused: a search allocates nothing). */
  private queryScratch = new Float32Array(0)
  private resultLabels = new Uint32Array(16)
  private resultDistances = new Float32Array(16)

  constructor(
    readonly tenant: string,
    readonly metric: Metric,
    readonly params: HnswParams,
    public dimension: number | undefined,
  ) {}

  get hnsw(): NativeHnsw.Hnsw | undefined {
    return this.native
  }

  set hnsw(hnsw: NativeHnsw.Hnsw | undefined) {
    this.native = hnsw
    this.currentEf = -1
  }

  /** Fixes the dimension if unset; true when `dimension` is (now) the tenant's. */
  fixDimension(dimension: number): boolean {
    if (this.dimension === undefined) this.dimension = dimension
    return this.dimension === dimension
  }

  get edges(): number {
    return this.graph.edges
  }

  exists = (id: string): boolean => this.attrs.has(id)

  /** Applies the merged row as storage holds it now (`undefined` = deleted). */
  applyRow(id: string, entity: Entity | undefined): ApplyOutcome {
    const outcome = this.applyRowDeferred(id, entity)
    this.flushInserts()
    return outcome
  }

  /**
   * Applies rows `from` until `to` (exclusive) of `ids` / `entities` (the
   * merged rows as storage holds them, `undefined` = deleted), as `applyRow`
   * would one by one, and adds what they did to `counts`.
   */
  applyRange(
    ids: ReadonlyArray<string>,
    entities: ReadonlyArray<Entity | undefined>,
    from: number,
    to: number,
    counts: ApplyCounts,
  ): void {
    for (let i = from; i < to; i++) {
      const outcome = this.applyRowDeferred(ids[i]!, entities[i])
      if (outcome === "inserted") counts.inserted++
      else if (outcome === "skipped") counts.skipped++
    }
    this.flushInserts()
  }

  /** `applyRow` with its native insert (if any) left in the pending lists. */
  private applyRowDeferred(id: string, entity: Entity | undefined): ApplyOutcome {
    const old = this.attrs.get(id)
    if (old !== undefined) this.unpost(old)
    if (entity === undefined) {
      if (old === undefined) return "none"
      if (old.label >= 0) this.releaseLabel(old.label)
      this.attrs.delete(id)
      this.graph.setOutEdges(id, NO_EDGES)
      return old.label >= 0 ? "removed" : "none"
    }
    let label = old?.label ?? -1
    let outcome: ApplyOutcome = "none"
    const vector = entity.vector
    if (vector !== undefined && vector.length > 0) {
      this.fixDimension(vector.length)
      if (vector.length !== this.dimension) {
        // Storage holds a vector the tenant cannot index (ensureDimension is the
        // gate on the write path; this only happens with replicated/imported data).
        if (label >= 0) this.releaseLabel(label)
        label = -1
        outcome = "skipped"
      } else if (label >= 0 && this.sameVector(label, vector)) {
        outcome = "unchanged"
      } else {
        if (label < 0) label = this.allocateLabel()
        this.insertVector(label, id, vector)
        outcome = "inserted"
      }
    } else if (label >= 0) {
      this.releaseLabel(label)
      label = -1
      outcome = "removed"
    }
    const attrs: Attributes = {
      type: entity.type,
      metadata: entity.metadata,
      importance: entity.importance,
      updatedAt: entity.updatedAt,
      label,
    }
    this.attrs.set(id, attrs)
    if (label >= 0) this.setScoring(label, attrs)
    this.post(attrs)
    // setOutEdges copies what it keeps; a row without edges (the common case)
    // and no previous edges costs one map lookup.
    this.graph.setOutEdges(id, entity.edges ?? NO_EDGES)
    return outcome
  }

  /**
   * The posting set of a type or a metadata pair, found through two-level
   * maps keyed by the values themselves: building and hashing the string key
   * (`postings`' key, which filters look up) on every row cost more than the
   * rest of posting it. `create`: make (and register) a missing set.
   */
  private postingSet(field: string | undefined, value: string | number | boolean, create: boolean): Set<number> | undefined {
    let byValue = field === undefined ? this.typeSets : this.metadataSets.get(field)
    if (byValue === undefined) {
      if (!create) return undefined
      byValue = new Map()
      this.metadataSets.set(field!, byValue)
    }
    let set = byValue.get(value)
    if (set === undefined && create) {
      set = new Set()
      byValue.set(value, set)
      this.postings.set(field === undefined ? typeKey(value as string) : metadataKey(field, value), set)
    }
    return set
  }

  private dropPostingSet(field: string | undefined, value: string | number | boolean): void {
    const byValue = field === undefined ? this.typeSets : this.metadataSets.get(field)
    byValue?.delete(value)
    if (field !== undefined && byValue?.size === 0) this.metadataSets.delete(field)
    this.postings.delete(field === undefined ? typeKey(value as string) : metadataKey(field, value))
  }

  private post(attrs: Attributes): void {
    if (attrs.label < 0) return
    if (attrs.type !== undefined) this.postingSet(undefined, attrs.type, true)!.add(attrs.label)
    const metadata = attrs.metadata
    if (metadata !== undefined) {
      // for…in, not Object.keys: no array per row (metadata is a plain record, own keys only).
      for (const field in metadata) this.postingSet(field, metadata[field]!, true)!.add(attrs.label)
    }
  }

  private unpost(attrs: Attributes): void {
    if (attrs.label < 0) return
    const remove = (field: string | undefined, value: string | number | boolean) => {
      const set = this.postingSet(field, value, false)
      if (set !== undefined) {
        set.delete(attrs.label)
        if (set.size === 0) this.dropPostingSet(field, value)
      }
    }
    if (attrs.type !== undefined) remove(undefined, attrs.type)
    const metadata = attrs.metadata
    if (metadata !== undefined) for (const field of Object.keys(metadata)) remove(field, metadata[field]!)
  }

  private setScoring(label: number, attrs: Attributes): void {
    const s = this.scoring
    const base = label * SCORING_STRIDE
    s[base] = attrs.importance ?? 0
    s[base + 1] = attrs.updatedAt ?? 0
    s[base + 2] = attrs.importance === undefined ? 0 : 1
    s[base + 3] = attrs.updatedAt === undefined ? 0 : 1
  }

  /** The importance of the entity at a live label, as its attributes hold it. */
  importanceAt(label: number): number | undefined {
    const base = label * SCORING_STRIDE
    return this.scoring[base + 2] === 1 ? this.scoring[base]! : undefined
  }

  /** The updatedAt of the entity at a live label, as its attributes hold it. */
  updatedAtAt(label: number): number | undefined {
    const base = label * SCORING_STRIDE
    return this.scoring[base + 3] === 1 ? this.scoring[base + 1]! : undefined
  }

  /** Sizes the per-label scoring mirror to `capacity` and fills it from the attributes (after a snapshot load). */
  rebuildScoring(): void {
    this.scoring = new Float64Array(this.capacity * SCORING_STRIDE)
    for (const attrs of this.attrs.values()) if (attrs.label >= 0) this.setScoring(attrs.label, attrs)
  }

  /** Rebuilds the posting sets from the attributes (after a snapshot load). */
  rebuildPostings(): void {
    this.postings.clear()
    this.typeSets.clear()
    this.metadataSets.clear()
    for (const attrs of this.attrs.values()) this.post(attrs)
  }

  private sameVector(label: number, vector: ReadonlyArray<number>): boolean {
    const d = this.dimension!
    const base = label * d
    for (let i = 0; i < d; i++) if (this.vectors[base + i] !== Math.fround(vector[i]!)) return false
    return true
  }

  private ensureHnsw(): NativeHnsw.Hnsw {
    if (this.hnsw !== undefined) return this.hnsw
    const d = this.dimension!
    const hnsw = NativeHnsw.make(this.metric, d)
    const capacity = Math.max(1, this.params.initialCapacity)
    hnsw.initIndex(capacity, this.params.m, this.params.efConstruction, this.params.randomSeed, false)
    this.hnsw = hnsw
    this.capacity = capacity
    this.vectors = new Float32Array(capacity * d)
    this.norms = new Float32Array(capacity)
    this.scoring = new Float64Array(capacity * SCORING_STRIDE)
    return hnsw
  }

  private allocateLabel(): number {
    const free = this.freeLabels.pop()
    if (free !== undefined) return free
    const hnsw = this.ensureHnsw()
    const label = this.nextLabel++
    if (label >= this.capacity) {
      const grown = Math.max(label + 1, Math.ceil(this.capacity * Math.max(1.1, this.params.growthFactor)))
      hnsw.resizeIndex(grown)
      const d = this.dimension!
      const vectors = new Float32Array(grown * d)
      vectors.set(this.vectors)
      const norms = new Float32Array(grown)
      norms.set(this.norms)
      const scoring = new Float64Array(grown * SCORING_STRIDE)
      scoring.set(this.scoring)
      this.vectors = vectors
      this.norms = norms
      this.scoring = scoring
      this.capacity = grown
    }
    return label
  }

  /** The bookkeeping of inserting `vector` at `label`; the native insert waits in the pending lists. */
  private insertVector(label: number, id: string, vector: ReadonlyArray<number>): void {
    this.ensureHnsw()
    // The pending insert reads the label's mirror slot, which this one rewrites.
    if (this.pendingSet.has(label)) this.flushInserts()
    const wasLive = this.labelToId[label] !== undefined
    const d = this.dimension!
    const base = label * d
    const mirror = this.vectors
    // The native insert takes the mirror's float32 slot as it is (no copy, no per-element conversion).
    this.pendingLabels.push(label)
    this.pendingVectors.push(mirror.subarray(base, base + d))
    this.pendingSet.add(label)
    let norm = 0
    for (let i = 0; i < d; i++) {
      // The Float32Array store rounds like hnswlib's float; read it back for the norm.
      mirror[base + i] = vector[i]!
      const x = mirror[base + i]!
      norm += x * x
    }
    this.norms[label] = Math.sqrt(norm)
    this.labelToId[label] = id
    if (!wasLive) this.liveVectors++
  }

  /**
   * Makes the pending native inserts, back to back. A free label is still
   * marked deleted in hnswlib: addPoint on it unmarks the slot and rewires it
   * to the new vector (update in place).
   */
  private flushInserts(): void {
    const labels = this.pendingLabels
    const count = labels.length
    if (count === 0) return
    const vectors = this.pendingVectors
    const hnsw = this.hnsw!
    const started = performance.now()
    try {
      for (let i = 0; i < count; i++) hnsw.addPoint(vectors[i]!, labels[i]!)
    } finally {
      // Emptied even if hnswlib throws (a defect): a later flush must not repeat inserts.
      labels.length = 0
      vectors.length = 0
      this.pendingSet.clear()
      this.addPointMs += performance.now() - started
      this.addPointCount += count
    }
  }

  private releaseLabel(label: number): void {
    // Native operations keep the order sequential application gives them.
    this.flushInserts()
    this.hnsw!.markDelete(label)
    this.labelToId[label] = undefined
    this.freeLabels.push(label)
    this.liveVectors--
  }

  /** Approximate k nearest, optionally restricted by a label predicate (hnswlib's filter callback). */
  searchKnn(query: ReadonlyArray<number>, k: number, ef: number, filter?: (label: number) => boolean): Array<Hit> {
    return this.hitsOf(this.searchLabels(query, k, ef, filter))
  }

  /**
   * `searchKnn` as hnswlib answers it, labels and distances (the query path
   * turns labels into ids itself, without a hit object each). Labels may be
   * stale only across a yield; callers resolve them before yielding. The
   * arrays are views of buffers the next search reuses.
   */
  searchLabels(query: ReadonlyArray<number>, k: number, ef: number, filter?: (label: number) => boolean): LabelHits {
    const hnsw = this.hnsw
    if (hnsw === undefined || this.liveVectors === 0 || k <= 0) return NO_HITS
    const n = Math.min(k, this.liveVectors, this.capacity)
    const searchEf = Math.max(ef, n)
    if (searchEf !== this.currentEf) {
      hnsw.setEf(searchEf)
      this.currentEf = searchEf
    }
    const d = query.length
    if (this.queryScratch.length !== d) this.queryScratch = new Float32Array(d)
    const q = this.queryScratch
    for (let i = 0; i < d; i++) q[i] = query[i]!
    if (this.resultLabels.length < n) {
      this.resultLabels = new Uint32Array(n)
      this.resultDistances = new Float32Array(n)
    }
    const found = hnsw.search(q, n, this.resultLabels, this.resultDistances, filter)
    return { neighbors: this.resultLabels.subarray(0, found), distances: this.resultDistances.subarray(0, found) }
  }

  private hitsOf(result: LabelHits): Array<Hit> {
    const { distances, neighbors } = result
    const hits: Array<Hit> = []
    for (let i = 0; i < neighbors.length; i++) {
      const id = this.labelToId[neighbors[i]!]
      if (id !== undefined) hits.push({ id, distance: distances[i]! })
    }
    return hits
  }

  /** hnswlib's distance for this metric, computed from the mirror (cosine: 1 − cos, l2: squared, ip: 1 − dot). */
  distanceTo(query: ReadonlyArray<number>, queryNorm: number, label: number): number {
    const d = this.dimension!
    const base = label * d
    const v = this.vectors
    if (this.metric === "l2") {
      let sum = 0
      for (let i = 0; i < d; i++) {
        const diff = query[i]! - v[base + i]!
        sum += diff * diff
      }
      return sum
    }
    let dot = 0
    for (let i = 0; i < d; i++) dot += query[i]! * v[base + i]!
    if (this.metric === "ip") return 1 - dot
    const denominator = queryNorm * this.norms[label]!
    return denominator === 0 ? 1 : 1 - dot / denominator
  }

  /** Exact k nearest among `labels`. */
  exactScan(query: ReadonlyArray<number>, labels: ReadonlyArray<number>, k: number): Array<Hit> {
    return this.hitsOf(this.exactScanLabels(query, labels, k))
  }

  /** `exactScan` as labels and distances: nearest first, ties by id. */
  exactScanLabels(query: ReadonlyArray<number>, labels: ReadonlyArray<number>, k: number): LabelHits {
    if (this.hnsw === undefined) return NO_HITS
    let queryNorm = 0
    for (const x of query) queryNorm += x * x
    queryNorm = Math.sqrt(queryNorm)
    const scored: Array<{ readonly label: number; readonly id: string; readonly distance: number }> = []
    for (const label of labels) {
      const id = this.labelToId[label]
      if (id !== undefined) scored.push({ label, id, distance: this.distanceTo(query, queryNorm, label) })
    }
    scored.sort((a, b) => a.distance - b.distance || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    const top = scored.slice(0, k)
    return { neighbors: top.map((h) => h.label), distances: top.map((h) => h.distance) }
  }

  matchesLabel(filter: Filter.CompiledFilter, label: number): boolean {
    const id = this.labelToId[label]
    if (id === undefined) return false
    const attrs = this.attrs.get(id)
    return attrs !== undefined && filter.matches(attrs)
  }

  /**
   * The labels matching `filter` when there are at most `threshold` of them
   * (answer those by an exact scan), else undefined (use filtered ANN). Uses
   * the smallest posting group to bound the work; with ranges only, scans
   * the labels and gives up as soon as the threshold is passed.
   */
  selectiveLabels(filter: Filter.CompiledFilter, threshold: number): Array<number> | undefined {
    let best: ReadonlyArray<string> | undefined
    let bestSize = Number.POSITIVE_INFINITY
    for (const group of filter.postingGroups) {
      let size = 0
      for (const key of group) size += this.postings.get(key)?.size ?? 0
      if (size < bestSize) {
        best = group
        bestSize = size
      }
    }
    const matching: Array<number> = []
    if (best !== undefined) {
      if (bestSize > threshold) return undefined
      const seen = new Set<number>()
      for (const key of best) {
        for (const label of this.postings.get(key) ?? []) {
          if (!seen.has(label) && this.matchesLabel(filter, label)) matching.push(label)
          seen.add(label)
        }
      }
      return matching
    }
    for (let label = 0; label < this.nextLabel; label++) {
      if (this.matchesLabel(filter, label)) {
        matching.push(label)
        if (matching.length > threshold) return undefined
      }
    }
    return matching
  }
}
