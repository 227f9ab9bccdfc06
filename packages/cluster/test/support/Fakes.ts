/**
 * Small in-memory fakes of the StorageEngine, UnifiedIndex and QueryExecutor
 * contracts, enough to exercise the coordinator and the API surfaces without
 * the real engine: brute-force cosine search and BFS over out/in edges.
 * `index.hold` stops the index from catching up, to observe `wait`.
 */
import {
  DimensionMismatch,
  Entity,
  type GraphEdge,
  PathStep,
  QueryResult,
  type EntityId,
  type QueryRequest,
  type TenantId,
  TenantViolation,
  TraverseResult,
  type TraverseRequest,
} from "@allidb/core"
import { QueryExecutor, UnifiedIndex } from "@allidb/index"
import { StorageEngine } from "@allidb/storage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"

export interface FakeState {
  readonly rows: Map<TenantId, Map<string, Entity>>
  readonly writes: Array<{ readonly caller: TenantId; readonly mutations: ReadonlyArray<StorageEngine.Mutation> }>
  readonly dimensions: Map<TenantId, number>
  readonly awaited: Array<number>
  seq: number
  /** While true the index does not advance past the seq it had. */
  hold: boolean
  readonly applied: SubscriptionRef.SubscriptionRef<number>
}

export const makeState: Effect.Effect<FakeState> = Effect.map(SubscriptionRef.make(0), (applied) => ({
  rows: new Map(),
  writes: [],
  dimensions: new Map(),
  awaited: [],
  seq: 0,
  hold: false,
  applied,
}))

const tenantRows = (state: FakeState, tenant: TenantId): Map<string, Entity> => {
  let rows = state.rows.get(tenant)
  if (rows === undefined) {
    rows = new Map()
    state.rows.set(tenant, rows)
  }
  return rows
}

const withEdges = (entity: Entity, edges: ReadonlyArray<GraphEdge>): Entity => {
  const { edges: _old, ...rest } = entity
  return new Entity(edges.length === 0 ? rest : { ...rest, edges })
}

const apply = (state: FakeState, mutation: StorageEngine.Mutation, now: number) => {
  const rows = tenantRows(state, mutation.tenant)
  switch (mutation._tag) {
    case "PutEntity": {
      const old = rows.get(mutation.entity.id)
      rows.set(
        mutation.entity.id,
        new Entity({
          ...mutation.entity,
          createdAt: mutation.entity.createdAt ?? old?.createdAt ?? now,
          updatedAt: now,
        }),
      )
      return
    }
    case "DeleteEntity":
      rows.delete(mutation.id)
      return
    case "PutEdge": {
      const row = rows.get(mutation.from) ?? new Entity({ id: mutation.from })
      const others = (row.edges ?? []).filter(
        (e) => !(e.to === mutation.edge.to && e.relation === mutation.edge.relation),
      )
      rows.set(mutation.from, withEdges(row, [...others, mutation.edge]))
      return
    }
    case "DeleteEdge": {
      const row = rows.get(mutation.from)
      if (row === undefined) return
      rows.set(
        mutation.from,
        withEdges(
          row,
          (row.edges ?? []).filter((e) => !(e.to === mutation.to && e.relation === mutation.relation)),
        ),
      )
      return
    }
  }
}

const guard = (caller: TenantId, tenant: TenantId, operation: string) =>
  caller === tenant ? Effect.void : Effect.fail(new TenantViolation({ expected: caller, actual: tenant, operation }))

export const storage = (state: FakeState): StorageEngine.StorageEngineShape => ({
  write: (caller, mutations) =>
    Effect.gen(function* () {
      for (const m of mutations) yield* guard(caller, m.tenant, "write")
      const now = Date.now()
      for (const m of mutations) apply(state, m, now)
      state.writes.push({ caller, mutations })
      state.seq += 1
      const seq = state.seq
      if (!state.hold) yield* SubscriptionRef.set(state.applied, seq)
      return { seq }
    }),
  get: (caller, tenant, id) => Effect.as(guard(caller, tenant, "get"), state.rows.get(tenant)?.get(id)),
  getMany: (caller, tenant, ids) =>
    Effect.as(
      guard(caller, tenant, "getMany"),
      ids.map((id) => state.rows.get(tenant)?.get(id)),
    ),
  scan: (caller, tenant, options) =>
    Effect.gen(function* () {
      yield* guard(caller, tenant, "scan")
      const start = options.pageToken ?? options.start
      const ids = [...tenantRows(state, tenant).keys()]
        .sort()
        .filter((id) => (start === undefined || id >= start) && (options.end === undefined || id < options.end))
      const page = ids.slice(0, options.limit)
      const next = ids[options.limit]
      const entities = page.map((id) => tenantRows(state, tenant).get(id)!)
      return next === undefined ? { entities } : { entities, nextPageToken: next }
    }),
  tenants: Effect.sync(() => [...state.rows.keys()]),
  changedSince: () => Stream.empty,
  lastSeq: Effect.sync(() => state.seq),
  subscribe: Queue.unbounded<StorageEngine.CommitEvent>(),
  tableChanges: Queue.unbounded<{ readonly tenants: ReadonlyArray<TenantId> }>(),
})

export const index = (state: FakeState): UnifiedIndex.UnifiedIndexShape => ({
  ensureDimension: (tenant, dimension, field) =>
    Effect.suspend(() => {
      const fixed = state.dimensions.get(tenant)
      if (fixed === undefined) {
        state.dimensions.set(tenant, dimension)
        return Effect.void
      }
      return fixed === dimension
        ? Effect.void
        : Effect.fail(new DimensionMismatch({ field, expected: fixed, actual: dimension }))
    }),
  dimension: (tenant) => Effect.sync(() => state.dimensions.get(tenant)),
  appliedSeq: SubscriptionRef.get(state.applied),
  awaitSeq: (seq) =>
    Effect.zipRight(
      Effect.sync(() => state.awaited.push(seq)),
      state.applied.changes.pipe(
        Stream.takeUntil((applied) => applied >= seq),
        Stream.runDrain,
      ),
    ),
  stats: Effect.succeed([]),
  snapshot: Effect.void,
})

/** Releases a held index: it catches up to the newest write. */
export const release = (state: FakeState) =>
  Effect.suspend(() => {
    state.hold = false
    return SubscriptionRef.set(state.applied, state.seq)
  })

const cosine = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!
    na += a[i]! * a[i]!
    nb += b[i]! * b[i]!
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb)
}

const neighbours = (rows: Map<string, Entity>, id: string, direction: "out" | "in" | "both") => {
  const out: Array<{ to: string; relation: string; weight: number; direction: "out" | "in" }> = []
  if (direction !== "in") {
    for (const e of rows.get(id)?.edges ?? []) out.push({ to: e.to, relation: e.relation, weight: e.weight, direction: "out" })
  }
  if (direction !== "out") {
    for (const [from, row] of rows) {
      for (const e of row.edges ?? []) if (e.to === id) out.push({ to: from, relation: e.relation, weight: e.weight, direction: "in" })
    }
  }
  return out
}

const bfs = (state: FakeState, tenant: TenantId, request: TraverseRequest): Array<TraverseResult> => {
  const rows = tenantRows(state, tenant)
  const seen = new Set<string>(request.from)
  const results: Array<TraverseResult> = []
  let frontier: Array<{ id: string; weight: number; path: Array<PathStep> }> = request.from.map((id) => ({
    id,
    weight: 1,
    path: [],
  }))
  for (let depth = 1; depth <= request.hops; depth++) {
    const next: typeof frontier = []
    for (const node of frontier) {
      for (const n of neighbours(rows, node.id, request.direction)) {
        if (request.relations !== undefined && !request.relations.includes(n.relation as never)) continue
        if (seen.has(n.to)) continue
        seen.add(n.to)
        const step = new PathStep({
          from: node.id as EntityId,
          to: n.to as EntityId,
          relation: n.relation as never,
          weight: n.weight,
          direction: n.direction,
        })
        const reached = { id: n.to, weight: node.weight * n.weight, path: [...node.path, step] }
        next.push(reached)
        const entity = rows.get(n.to)
        results.push(
          new TraverseResult({
            id: n.to as EntityId,
            depth,
            weight: reached.weight,
            path: reached.path,
            ...(entity === undefined ? {} : { entity }),
          }),
        )
      }
    }
    frontier = next
  }
  return request.limit === undefined ? results : results.slice(0, request.limit)
}

export const executor = (state: FakeState): QueryExecutor.QueryExecutorShape => ({
  query: (tenant: TenantId, request: QueryRequest) =>
    Effect.sync(() => {
      const hits = [...tenantRows(state, tenant).values()]
        .filter((e) => e.vector !== undefined && e.vector.length === request.vector.length)
        .map((e) => ({ e, score: cosine(e.vector!, request.vector) }))
        .filter(({ e }) => request.filter?.type === undefined || e.type === request.filter.type)
        .sort((a, b) => b.score - a.score || (a.e.id < b.e.id ? -1 : 1))
        .slice(0, request.k)
      return hits.map(
        ({ e, score }) =>
          new QueryResult({
            id: e.id,
            score,
            ...(request.includeEntities === false ? {} : { entity: e }),
          }),
      )
    }),
  traverse: (tenant, request) => Effect.sync(() => bfs(state, tenant, request)),
})

/** StorageEngine + UnifiedIndex + QueryExecutor over one shared state. */
export const layer = (state: FakeState) =>
  Layer.mergeAll(
    Layer.succeed(StorageEngine.StorageEngine, storage(state)),
    Layer.succeed(UnifiedIndex.UnifiedIndex, index(state)),
    Layer.succeed(QueryExecutor.QueryExecutor, executor(state)),
  )
