/**
 * ANN → graph expansion → filters → unified score → top k, and plain graph
 * traversal. Entities for results are fetched through the StorageEngine.
 *
 * CONTRACT (used by packages/cluster's Coordinator): keep these signatures;
 * add to them only.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import {
  type Corruption,
  DeadlineExceeded,
  DimensionMismatch,
  Entity,
  type EntityId,
  type InvalidInput,
  PathStep,
  type QueryRequest,
  QueryResult,
  ScoreExplain,
  type StorageFailure,
  type TenantId,
  type TenantViolation,
  type TraverseRequest,
  TraverseResult,
} from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
import { Slice } from "./EventLoop.js"
import * as Filter from "./Filter.js"
import * as Graph from "./Graph.js"
import * as Metrics from "./Metrics.js"
import * as Scorer from "./Scorer.js"
import type { Hit, TenantIndex } from "./TenantIndex.js"
import { Tenants } from "./UnifiedIndex.js"

export type QueryError =
  | InvalidInput
  | DimensionMismatch
  | DeadlineExceeded
  | StorageFailure
  | Corruption
  | TenantViolation

export interface QueryExecutorShape {
  readonly query: (tenant: TenantId, request: QueryRequest) => Effect.Effect<ReadonlyArray<QueryResult>, QueryError>
  readonly traverse: (
    tenant: TenantId,
    request: TraverseRequest,
  ) => Effect.Effect<ReadonlyArray<TraverseResult>, QueryError>
}

export class QueryExecutor extends Context.Tag("@allidb/index/QueryExecutor")<QueryExecutor, QueryExecutorShape>() {}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

/** Edges relaxed between checks of the time slice (and so of interruption). */
const EXPANSION_BUDGET = 2048
/** Default number of traversal results when the request names no limit. */
export const DEFAULT_TRAVERSE_LIMIT = 100

interface Candidate extends Scorer.Ranked {
  readonly id: EntityId
  readonly components: Scorer.Components
  readonly origin: string
  readonly path: ReadonlyArray<Graph.Step>
}

const timedStage = <A, E, R>(stage: Metrics.Stage, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const started = performance.now()
    return effect.pipe(
      Effect.tap(() => Metric.update(Metrics.stageSeconds(stage), (performance.now() - started) / 1000)),
      Effect.withSpan(`QueryExecutor.${stage}`),
    )
  })

/** Runs an expansion to completion in slices, yielding the event loop (and so letting a deadline interrupt it). */
const runExpansion = (expansion: Graph.Expansion, sliceMs: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    const slice = new Slice(sliceMs)
    while (!expansion.run(EXPANSION_BUDGET)) {
      if (slice.due) yield* slice.yieldIfDue
    }
  })

const stripVector = (entity: Entity, includeVectors: boolean): Entity => {
  if (includeVectors || entity.vector === undefined) return entity
  const { vector: _vector, ...rest } = entity
  return new Entity(rest, true)
}

const toPathSteps = (path: ReadonlyArray<Graph.Step>): Array<PathStep> =>
  path.map(
    (s) =>
      new PathStep(
        { from: s.from as EntityId, to: s.to as EntityId, relation: s.relation as PathStep["relation"], weight: s.weight, direction: s.direction },
        true,
      ),
  )

export const make: Effect.Effect<QueryExecutorShape, never, Tenants | StorageEngine.StorageEngine> = Effect.gen(
  function* () {
    const tenants = yield* Tenants
    const storage = yield* StorageEngine.StorageEngine
    const config = tenants.config

    const fetchEntities = (tenant: TenantId, ids: ReadonlyArray<EntityId>) =>
      timedStage("fetch", storage.getMany(tenant, tenant, ids))

    const withDeadline =
      (operation: string) =>
      <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | DeadlineExceeded> =>
        effect.pipe(
        Effect.timeoutFail({
          duration: Duration.millis(config.queryTimeoutMs),
          onTimeout: () => new DeadlineExceeded({ timeoutMs: config.queryTimeoutMs, operation }),
        }),
      )

    /** ANN, with the filter applied during the search or, when it matches few vectors, by an exact scan. */
    const nearest = (index: TenantIndex, request: QueryRequest, filter: Filter.CompiledFilter | undefined, n: number) =>
      Effect.gen(function* () {
        const ef = Math.max(request.ef ?? config.efSearch, n)
        if (filter === undefined) return yield* timedStage("ann", Effect.sync(() => index.searchKnn(request.vector, n, ef)))
        const selective = yield* timedStage(
          "filter",
          Effect.sync(() => index.selectiveLabels(filter, config.exactScanThreshold)),
        )
        if (selective !== undefined) {
          return yield* timedStage("ann", Effect.sync(() => index.exactScan(request.vector, selective, n)))
        }
        return yield* timedStage(
          "ann",
          Effect.sync(() => index.searchKnn(request.vector, n, ef, (label) => index.matchesLabel(filter, label))),
        )
      })

    const query = (tenant: TenantId, request: QueryRequest) =>
      Effect.gen(function* () {
        const index = tenants.get(tenant)
        if (index === undefined) return []
        if (index.dimension !== undefined && request.vector.length !== index.dimension) {
          return yield* new DimensionMismatch({
            field: "vector",
            expected: index.dimension,
            actual: request.vector.length,
          })
        }
        const weights = Scorer.resolveWeights(request.weights)
        const filter = Filter.compile(request.filter)
        const expand = request.expand !== undefined && request.expand.hops > 0 ? request.expand : undefined
        const candidates = Math.ceil(request.k * (expand?.factor ?? 1))
        // Labels are converted to ids inside the synchronous search: nothing
        // below holds a label across a yield.
        const hits: ReadonlyArray<Hit> = yield* nearest(index, request, filter, candidates)

        const direct = new Map<string, Hit>()
        for (const hit of hits) direct.set(hit.id, hit)
        let reached: ReadonlyMap<string, Graph.Reached> = new Map()
        if (expand !== undefined && hits.length > 0) {
          const expansion = new Graph.Expansion(
            index.graph,
            hits.map((h) => h.id),
            {
              hops: expand.hops,
              direction: expand.direction,
              relations: expand.relations,
              fanout: expand.fanout ?? config.expandFanout,
              hopDecay: config.expandHopDecay,
              prefer: "weight",
              exists: index.exists,
            },
          )
          yield* timedStage("expand", runExpansion(expansion, config.sliceMs))
          reached = expansion.result
        }

        const now = yield* Clock.currentTimeMillis
        const ranked = yield* timedStage(
          "score",
          Effect.gen(function* () {
            const slice = new Slice(config.sliceMs)
            const scored: Array<Candidate> = []
            const add = (id: string, similarity: number, graph: number, origin: string, path: ReadonlyArray<Graph.Step>) => {
              const attrs = index.attrs.get(id)
              if (attrs === undefined) return
              const components: Scorer.Components = {
                similarity,
                graph,
                importance: Scorer.importanceOf(attrs.importance),
                recency: Scorer.recency(attrs.updatedAt, now, config.recencyHalfLifeMs),
              }
              scored.push({ id: id as EntityId, score: Scorer.score(weights, components), components, origin, path })
            }
            for (const hit of hits) add(hit.id, Scorer.similarity(index.metric, hit.distance), 1, hit.id, [])
            if (reached.size > 0) {
              let queryNorm = 0
              for (const x of request.vector) queryNorm += x * x
              queryNorm = Math.sqrt(queryNorm)
              for (const r of reached.values()) {
                if (direct.has(r.id)) continue
                const attrs = index.attrs.get(r.id)
                if (attrs === undefined) continue
                if (filter !== undefined && !filter.matches(attrs)) continue
                // An expanded entity scores its own similarity when it has a vector.
                const similarity =
                  attrs.label >= 0
                    ? Scorer.similarity(index.metric, index.distanceTo(request.vector, queryNorm, attrs.label))
                    : 0
                add(r.id, similarity, r.weight, r.origin, r.path)
                if (slice.due) yield* slice.yieldIfDue
              }
            }
            return Scorer.topK(scored, request.k)
          }),
        )

        const entities =
          request.includeEntities === false
            ? undefined
            : yield* fetchEntities(
                tenant,
                ranked.map((r) => r.id),
              )
        const includeVectors = request.includeVectors === true
        const results: Array<QueryResult> = []
        for (let i = 0; i < ranked.length; i++) {
          const r = ranked[i]!
          let entity: Entity | undefined
          if (entities !== undefined) {
            entity = entities[i]
            // Deleted between the search and the fetch: the row is gone, so is the result.
            if (entity === undefined) continue
            entity = stripVector(entity, includeVectors)
          }
          const explain =
            request.explain === true
              ? new ScoreExplain(
                  {
                    ...r.components,
                    weights: { ...weights },
                    origin: r.origin as EntityId,
                    path: toPathSteps(r.path),
                  },
                  true,
                )
              : undefined
          results.push(
            new QueryResult(
              {
                id: r.id,
                score: r.score,
                ...(entity !== undefined ? { entity } : {}),
                ...(explain !== undefined ? { explain } : {}),
              },
              true,
            ),
          )
        }
        return results
      }).pipe(withDeadline("query"), Effect.withSpan("QueryExecutor.query", { attributes: { tenant } }))

    const traverse = (tenant: TenantId, request: TraverseRequest) =>
      Effect.gen(function* () {
        const index = tenants.get(tenant)
        if (index === undefined) return []
        const expansion = new Graph.Expansion(index.graph, request.from, {
          hops: request.hops,
          direction: request.direction,
          relations: request.relations,
          fanout: Number.POSITIVE_INFINITY,
          hopDecay: 1,
          prefer: "depth",
          exists: index.exists,
        })
        yield* timedStage("traverse", runExpansion(expansion, config.sliceMs))
        const reached = [...expansion.result.values()]
          .sort(
            (a, b) =>
              a.depth - b.depth || b.weight - a.weight || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
          )
          .slice(0, request.limit ?? DEFAULT_TRAVERSE_LIMIT)
        const entities = yield* fetchEntities(
          tenant,
          reached.map((r) => r.id as EntityId),
        )
        const includeVectors = request.includeVectors === true
        const results: Array<TraverseResult> = []
        for (let i = 0; i < reached.length; i++) {
          const r = reached[i]!
          const entity = entities[i]
          if (entity === undefined) continue
          results.push(
            new TraverseResult(
              {
                id: r.id as EntityId,
                depth: r.depth,
                weight: r.weight,
                path: toPathSteps(r.path),
                entity: stripVector(entity, includeVectors),
              },
              true,
            ),
          )
        }
        return results
      }).pipe(withDeadline("traverse"), Effect.withSpan("QueryExecutor.traverse", { attributes: { tenant } }))

    const shape: QueryExecutorShape = { query, traverse }
    return shape
  },
)

export const layer: Layer.Layer<QueryExecutor, never, Tenants | StorageEngine.StorageEngine> = Layer.effect(
  QueryExecutor,
  make,
)
