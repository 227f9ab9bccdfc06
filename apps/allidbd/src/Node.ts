/**
 * A whole AlliDB node as one Layer: storage engine, index, query executor and
 * the (single-node) coordinator, with no listeners. `allidbd` builds exactly
 * this layer and puts its HTTP/gRPC surfaces on top; another Effect program
 * can provide it and call the Coordinator directly (see examples/embedded.ts).
 */
import { Hlc } from "@allidb/core"
import type { Corruption, StorageFailure, TenantViolation } from "@allidb/core"
import { type Coordinator, LocalCoordinator } from "@allidb/cluster"
import { IndexConfig, QueryExecutor, UnifiedIndex } from "@allidb/index"
import { StorageEngine, type TenantGuard } from "@allidb/storage"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Config from "./Config.js"

export type NodeConfig = Config.NodeConfig

/** The defaults of every setting, with the given overrides: what an embedder passes to `layer`. */
export const config = (overrides: Partial<NodeConfig> & { readonly dataDir: string }): NodeConfig => ({
  ...Either.getOrThrow(Config.load([], {})),
  ...overrides,
})

const MiB = 1024 * 1024

export const storageSettings = (c: NodeConfig) => ({
  dataDir: c.dataDir,
  syncMode: c.syncMode,
  walSalvage: c.walSalvage,
  memtableBytes: Math.round(c.memtableMb * MiB),
  blockCacheBytes: Math.round(c.blockCacheMb * MiB),
  compactionMinThreshold: c.compactionMinThreshold,
  compactionMaxThreshold: c.compactionMaxThreshold,
  compactionMbPerSec: c.compactionMbPerS,
  tombstoneGraceMs: c.tombstoneGraceMs,
  failHard: c.failHard,
})

export const indexSettings = (c: NodeConfig) => ({
  dataDir: c.dataDir,
  defaultMetric: c.metric,
  m: c.hnswM,
  efConstruction: c.efConstruction,
  efSearch: c.efSearch,
  snapshotIntervalMs: c.snapshotIntervalMs,
})

export type NodeServices =
  | Coordinator.Coordinator
  | StorageEngine.StorageEngine
  | UnifiedIndex.UnifiedIndex
  | QueryExecutor.QueryExecutor
  | TenantGuard.TenantGuard

/**
 * Storage → index → query executor → coordinator. Building it opens the data
 * dir (manifest, WAL replay) and loads or rebuilds the index; closing its
 * scope snapshots the index, flushes nothing unsafe and closes every file.
 */
export const layer = (c: NodeConfig): Layer.Layer<NodeServices, StorageFailure | Corruption | TenantViolation> => {
  const storage = StorageEngine.layerFrom(storageSettings(c)).pipe(Layer.provide(Hlc.layer(c.nodeId)))
  const index = UnifiedIndex.layer.pipe(Layer.provide(IndexConfig.layer(indexSettings(c))))
  const query = QueryExecutor.layer
  const coordinator = LocalCoordinator.layer
  return coordinator.pipe(
    Layer.provideMerge(query),
    Layer.provideMerge(index),
    Layer.provideMerge(storage),
  )
}
