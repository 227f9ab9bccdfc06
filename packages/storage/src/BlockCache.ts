/**
 * A byte-bounded LRU of decoded SSTable data blocks, shared by every table of
 * a store. Keys are (table id, block offset); table ids are never reused, so
 * a block of a removed table can only linger until it ages out, never be
 * served for another table. Hits and misses feed the storage metrics.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Metrics from "./Metrics.js"
import type { DataBlock } from "./SSTableFormat.js"

export class BlockCache {
  // A Map iterates in insertion order: re-inserting on a hit makes the first
  // entry the least recently used one.
  private readonly entries = new Map<string, DataBlock>()
  private bytes = 0
  hits = 0
  misses = 0

  constructor(readonly capacityBytes: number) {}

  get size(): number {
    return this.bytes
  }

  get count(): number {
    return this.entries.size
  }

  get(tableId: number, offset: number): DataBlock | undefined {
    const key = `${tableId}:${offset}`
    const block = this.entries.get(key)
    if (block === undefined) {
      this.misses++
      return undefined
    }
    this.hits++
    this.entries.delete(key)
    this.entries.set(key, block)
    return block
  }

  /** A hit without touching the counters (the caller counts); refreshes recency. */
  peek(tableId: number, offset: number): DataBlock | undefined {
    const key = `${tableId}:${offset}`
    const block = this.entries.get(key)
    if (block !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, block)
    }
    return block
  }

  set(tableId: number, offset: number, block: DataBlock): void {
    if (block.byteSize > this.capacityBytes) return
    const key = `${tableId}:${offset}`
    const old = this.entries.get(key)
    if (old !== undefined) {
      this.bytes -= old.byteSize
      this.entries.delete(key)
    }
    this.entries.set(key, block)
    this.bytes += block.byteSize
    for (const [k, b] of this.entries) {
      if (this.bytes <= this.capacityBytes) break
      this.entries.delete(k)
      this.bytes -= b.byteSize
    }
  }

  /** Drops every block of a table (after compaction removed it). */
  dropTable(tableId: number): void {
    const prefix = `${tableId}:`
    for (const [k, b] of this.entries) {
      if (k.startsWith(prefix)) {
        this.entries.delete(k)
        this.bytes -= b.byteSize
      }
    }
  }
}

/** Looks a block up, counting the hit or miss in the storage metrics. */
export const lookup = (cache: BlockCache, tableId: number, offset: number): Effect.Effect<DataBlock | undefined> =>
  Effect.suspend(() => {
    const block = cache.get(tableId, offset)
    return Effect.as(Metric.increment(block === undefined ? Metrics.blockCacheMisses : Metrics.blockCacheHits), block)
  })
