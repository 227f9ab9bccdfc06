/**
 * Test helpers for the storage engine: one "boot" of the engine stack on an
 * in-memory file system inside a scope the test controls, so a test can
 * `crash()` the file system and boot again.
 */
import { Entity, type EntityId, entityId, SeededRandom, type TenantId, tenantId } from "@allidb/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Disk from "../src/Disk.js"
import type * as StorageConfig from "../src/StorageConfig.js"
import * as StorageEngine from "../src/StorageEngine.js"
import * as TenantGuard from "../src/TenantGuard.js"

export type Config = Partial<StorageConfig.StorageConfigShape>

export interface Boot {
  readonly engine: StorageEngine.Engine
  readonly guard: TenantGuard.TenantGuardShape
  readonly context: Context.Context<StorageEngine.StorageEngineAdmin | TenantGuard.TenantGuard>
}

/** Builds the whole stack on `fs` inside `scope` (closing the scope stops it). */
export const boot = (fs: Disk.MemoryFileSystem, scope: Scope.Scope, config: Config = {}) =>
  Effect.map(
    Layer.buildWithScope(
      StorageEngine.layerFrom({ dataDir: "/data", ...config }, { disk: Disk.layerMemoryFrom(fs) }),
      scope,
    ),
    (context): Boot => ({
      engine: Context.get(context, StorageEngine.StorageEngineAdmin),
      guard: Context.get(context, TenantGuard.TenantGuard),
      context,
    }),
  )

/** Small memtables and segments so tests cross flushes, rotations and compactions quickly. */
export const smallConfig: Config = {
  memtableBytes: 16 * 1024,
  walSegmentBytes: 8 * 1024,
  blockBytes: 1024,
  compactionMinThreshold: 2,
  compactionMaxThreshold: 4,
  compactionMbPerSec: 0,
}

export const T: TenantId = tenantId("acme")
export const OTHER: TenantId = tenantId("globex")

export const id = (n: number): EntityId => entityId(`e${String(n).padStart(4, "0")}`)

export const entity = (n: number, value: string, extra: Partial<ConstructorParameters<typeof Entity>[0]> = {}) =>
  new Entity({ id: id(n), type: "doc", metadata: { v: value }, ...extra })

export const put = (tenant: TenantId, e: Entity): StorageEngine.Mutation => ({ _tag: "PutEntity", tenant, entity: e })
export const del = (tenant: TenantId, n: number): StorageEngine.Mutation => ({ _tag: "DeleteEntity", tenant, id: id(n) })

/** A small deterministic PRNG (mulberry32) so a failing seed replays exactly. */
export const rng = SeededRandom.mulberry32
