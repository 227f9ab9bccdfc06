/**
 * AlliDB's own binding of hnswlib (`native/hnsw.cc`, built by `npm ci` from
 * the hnswlib headers hnswlib-node ships): the same index, file format and
 * results as hnswlib-node's HierarchicalNSW, with vectors passed as
 * Float32Array memory and search results written into caller-owned typed
 * arrays. hnswlib-node converts a vector element by element through N-API
 * (about 80 ns per dimension: ~10 µs of a 128-d query, ~60 µs at 768-d) and
 * allocates two arrays and an object per search; here a search allocates
 * nothing on the JavaScript heap. See docs/INDEX.md "Native binding".
 */
import { createRequire } from "node:module"

export type Space = "l2" | "ip" | "cosine"

export interface Hnsw {
  /** A fresh empty index (hnswlib's HierarchicalNSW constructor). */
  initIndex(maxElements: number, m: number, efConstruction: number, randomSeed: number, allowReplaceDeleted: boolean): void
  /** Replaces the index with the one in `path` (hnswlib's format), read on libuv's pool. */
  readIndex(path: string, allowReplaceDeleted: boolean): Promise<void>
  /** Writes the index to `path` on libuv's pool; the index must not change until it settles. */
  writeIndex(path: string): Promise<void>
  resizeIndex(maxElements: number): void
  /** Inserts `vector` (length = dimension) at `label`, or replaces the vector of a label already present. */
  addPoint(vector: Float32Array, label: number, replaceDeleted?: boolean): void
  markDelete(label: number): void
  setEf(ef: number): void
  /**
   * The `k` nearest labels (nearest first) into `labels` and their distances
   * into `distances` (both at least `k` long); returns how many were found.
   * `filter`, when given, is asked about every candidate label.
   */
  search(
    query: Float32Array,
    k: number,
    labels: Uint32Array,
    distances: Float32Array,
    filter?: (label: number) => boolean,
  ): number
  getCurrentCount(): number
  getMaxElements(): number
  getNumDimensions(): number
}

interface Addon {
  readonly Hnsw: new (space: Space, dimension: number) => Hnsw
}

const addon = createRequire(import.meta.url)("../build/Release/allidb_hnsw.node") as Addon

/** A new, uninitialised index: call `initIndex` or `readIndex` before anything else. */
export const make = (space: Space, dimension: number): Hnsw => new addon.Hnsw(space, dimension)
