/**
 * Builds the real UnifiedIndex + QueryExecutor over the in-memory fake
 * storage, and seeded data generators shared by the tests and the benchmark.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
import {
  Entity,
  type EntityId,
  type GraphEdge,
  type Metadata,
  QueryRequest,
  type TenantId,
  TraverseRequest,
  SeededRandom,
} from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
import * as IndexConfig from "../src/IndexConfig.js"
import * as QueryExecutor from "../src/QueryExecutor.js"
import * as UnifiedIndex from "../src/UnifiedIndex.js"
import * as FakeStorage from "./FakeStorage.js"

export const T = "t1" as TenantId

export interface Harness {
  readonly storage: FakeStorage.FakeStorage
  readonly index: UnifiedIndex.UnifiedIndexShape
  readonly executor: QueryExecutor.QueryExecutorShape
  readonly tenants: UnifiedIndex.TenantsShape
  /** Writes entities (one batch) and waits until the index reflects them. */
  readonly put: (entities: ReadonlyArray<Entity>, tenant?: TenantId) => Effect.Effect<number>
  readonly write: (mutations: ReadonlyArray<StorageEngine.Mutation>) => Effect.Effect<number>
}

export const make = (options: {
  readonly dataDir: string
  readonly state?: FakeStorage.FakeState
  readonly config?: Partial<IndexConfig.IndexConfigShape>
}): Effect.Effect<Harness, never, Scope.Scope> =>
  Effect.gen(function* () {
    const storage = yield* FakeStorage.make(options.state)
    const base = Layer.merge(
      Layer.succeed(StorageEngine.StorageEngine, storage),
      IndexConfig.layer({ snapshotIntervalMs: 0, ...options.config, dataDir: options.dataDir }),
    )
    const context = yield* Layer.build(
      QueryExecutor.layer.pipe(Layer.provideMerge(UnifiedIndex.layer), Layer.provideMerge(base)),
    ).pipe(Effect.orDie)
    const index = Context.get(context, UnifiedIndex.UnifiedIndex)
    const write = (mutations: ReadonlyArray<StorageEngine.Mutation>) =>
      Effect.gen(function* () {
        const { seq } = yield* Effect.orDie(storage.write(T, mutations))
        yield* index.awaitSeq(seq)
        return seq
      })
    return {
      storage,
      index,
      executor: Context.get(context, QueryExecutor.QueryExecutor),
      tenants: Context.get(context, UnifiedIndex.Tenants),
      write,
      put: (entities, tenant = T) => write(entities.map((entity) => ({ _tag: "PutEntity", tenant, entity }))),
    }
  })

/** mulberry32: a small seeded PRNG so data sets replay exactly. */
export const rng = SeededRandom.mulberry32

export const gaussian = (random: () => number) => () => {
  const u = Math.max(random(), 1e-12)
  const v = random()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** A seeded Gaussian mixture: `clusters` centres in [-1, 1]^dim, points spread by `spread`. */
export const clustered = (options: {
  readonly seed: number
  readonly count: number
  readonly dim: number
  readonly clusters: number
  readonly spread: number
}): Array<Array<number>> => {
  const random = rng(options.seed)
  const normal = gaussian(random)
  const centres = Array.from({ length: options.clusters }, () =>
    Array.from({ length: options.dim }, () => random() * 2 - 1),
  )
  return Array.from({ length: options.count }, () => {
    const c = centres[Math.floor(random() * options.clusters)]!
    return c.map((x) => x + normal() * options.spread)
  })
}

export const entity = (
  id: string,
  fields: {
    readonly vector?: ReadonlyArray<number>
    readonly type?: string
    readonly metadata?: Metadata
    readonly importance?: number
    readonly updatedAt?: number
    readonly edges?: ReadonlyArray<GraphEdge>
  } = {},
): Entity => new Entity({ id: id as EntityId, ...fields } as ConstructorParameters<typeof Entity>[0])

/** Exact k nearest by cosine distance (the ground truth). */
export const bruteForceCosine = (
  vectors: ReadonlyArray<ReadonlyArray<number>>,
  query: ReadonlyArray<number>,
  k: number,
  include: (i: number) => boolean = () => true,
): Array<number> => {
  const qn = Math.hypot(...query)
  const scored: Array<[number, number]> = []
  for (let i = 0; i < vectors.length; i++) {
    if (!include(i)) continue
    const v = vectors[i]!
    let dot = 0
    let n = 0
    for (let j = 0; j < v.length; j++) {
      dot += v[j]! * query[j]!
      n += v[j]! * v[j]!
    }
    scored.push([1 - dot / (Math.sqrt(n) * qn), i])
  }
  scored.sort((a, b) => a[0] - b[0])
  return scored.slice(0, k).map(([, i]) => i)
}

export const recallAt = (truth: ReadonlyArray<string>, got: ReadonlyArray<string>): number => {
  const set = new Set(got)
  let hit = 0
  for (const t of truth) if (set.has(t)) hit++
  return truth.length === 0 ? 1 : hit / truth.length
}

/** A QueryRequest from its wire shape (snake_case), decoded so nested defaults apply. */
export const request = (encoded: Record<string, unknown>): QueryRequest =>
  Schema.decodeUnknownSync(QueryRequest)(encoded)

export const traverseRequest = (encoded: Record<string, unknown>): TraverseRequest =>
  Schema.decodeUnknownSync(TraverseRequest)(encoded)
