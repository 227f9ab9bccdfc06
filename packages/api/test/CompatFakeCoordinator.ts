/**
 * An in-memory Coordinator for the compatible REST and gRPC tests: per-tenant
 * entity maps, brute-force cosine query, id-ordered scan with page tokens, a
 * fixed dimension per tenant, and a call log. `slowQuery` makes queries hang
 * until interrupted, recording the interruption, to test deadlines.
 */
import { Coordinator } from "@allidb/cluster"
import type { EdgeWrite, EntityId, QueryRequest, TenantId } from "@allidb/core"
import { DimensionMismatch, Entity, GraphEdge, QueryResult, ScanPage } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

export interface Call {
  readonly op: "upsert" | "putEdges" | "query" | "scan" | "get" | "remove" | "removeEdges" | "traverse"
  readonly tenant: TenantId
  readonly consistency: string | undefined
  readonly request?: QueryRequest
}

export interface FakeOptions {
  /** Fixed vector dimension of every tenant (else the first vector fixes it). */
  readonly dimension?: number
  readonly slowQuery?: boolean
}

const cosine = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i]
    na += a[i] * a[i]
    nb += b[i] * b[i]
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb)
}

export const CompatFakeCoordinator = {
  make: (options: FakeOptions = {}) => {
    const tenants = new Map<string, Map<string, Entity>>()
    const dimensions = new Map<string, number>()
    const edgeLog = new Map<string, Array<EdgeWrite>>()
    const calls: Array<Call> = []
    const state = { queryInterrupted: 0, queryStarted: 0 }
    const rows = (tenant: string) => {
      let m = tenants.get(tenant)
      if (m === undefined) {
        m = new Map()
        tenants.set(tenant, m)
      }
      return m
    }
    const shape: Coordinator.CoordinatorShape = {
      upsert: (tenant, entities, opts) =>
        Effect.sync(() => {
          calls.push({ op: "upsert", tenant, consistency: opts?.consistency })
          const ids: Array<EntityId> = []
          const failed: Array<{ id: string; error: DimensionMismatch }> = []
          for (const [i, entity] of entities.entries()) {
            if (entity.vector !== undefined) {
              const dim = options.dimension ?? dimensions.get(tenant) ?? entity.vector.length
              if (entity.vector.length !== dim) {
                failed.push({
                  id: entity.id,
                  error: new DimensionMismatch({ field: `entities[${i}].vector`, expected: dim, actual: entity.vector.length }),
                })
                continue
              }
              dimensions.set(tenant, dim)
            }
            const now = 1_700_000_000_000
            rows(tenant).set(
              entity.id,
              new Entity({ ...entity, createdAt: entity.createdAt ?? now, updatedAt: entity.updatedAt ?? now }),
            )
            ids.push(entity.id)
          }
          return { ids, failed }
        }),
      get: () => Effect.dieMessage("not used by the compatible surfaces"),
      remove: () => Effect.dieMessage("not used by the compatible surfaces"),
      removeEdges: () => Effect.dieMessage("not used by the compatible surfaces"),
      traverse: () => Effect.dieMessage("not used by the compatible surfaces"),
      putEdges: (tenant, edges, opts) =>
        Effect.sync(() => {
          calls.push({ op: "putEdges", tenant, consistency: opts?.consistency })
          const log = edgeLog.get(tenant) ?? []
          log.push(...edges)
          edgeLog.set(tenant, log)
          for (const edge of edges) {
            const source = rows(tenant).get(edge.from) ?? new Entity({ id: edge.from })
            const kept = (source.edges ?? []).filter((e) => !(e.to === edge.to && e.relation === edge.relation))
            rows(tenant).set(
              edge.from,
              new Entity({ ...source, edges: [...kept, new GraphEdge({ to: edge.to, relation: edge.relation, weight: edge.weight })] }),
            )
          }
        }),
      query: (tenant, request, opts) => {
        calls.push({ op: "query", tenant, consistency: opts?.consistency, request })
        if (options.slowQuery) {
          return Effect.sync(() => {
            state.queryStarted++
          }).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                state.queryInterrupted++
              }),
            ),
          )
        }
        return Effect.sync(() => {
          const scored = [...rows(tenant).values()]
            .filter((e) => e.vector !== undefined && e.vector.length === request.vector.length)
            .map(
              (e) =>
                new QueryResult({
                  id: e.id,
                  score: cosine(e.vector ?? [], request.vector),
                  // Like the real executor: vectors only when asked for.
                  entity: request.includeVectors === true ? e : new Entity({ ...e, vector: undefined }),
                }),
            )
          scored.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
          return scored.slice(0, request.k)
        })
      },
      scan: (tenant, request, opts) =>
        Effect.sync(() => {
          calls.push({ op: "scan", tenant, consistency: opts?.consistency })
          const limit = request.limit ?? 100
          const after = request.pageToken
          const ids = [...rows(tenant).keys()]
            .sort()
            .filter(
              (id) =>
                (request.start === undefined || id >= request.start) &&
                (request.end === undefined || id < request.end) &&
                (after === undefined || id > after),
            )
          const page = ids.slice(0, limit)
          const more = ids.length > limit
          return new ScanPage({
            entities: page.map((id) => rows(tenant).get(id) as Entity),
            ...(more ? { nextPageToken: page[page.length - 1] } : {}),
          })
        }),
    }
    return {
      calls,
      state,
      shape,
      layer: Layer.succeed(Coordinator.Coordinator, shape),
      entity: (tenant: string, id: string) => rows(tenant).get(id),
      edges: (tenant: string) => edgeLog.get(tenant) ?? [],
    }
  },
}
