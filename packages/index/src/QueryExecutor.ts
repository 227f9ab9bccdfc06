/**
 * ANN → graph expansion → filters → unified score → top k, and plain graph
 * traversal. Entities for results are fetched through the StorageEngine.
 *
 * CONTRACT (used by packages/cluster's Coordinator): keep these signatures;
 * add to them only.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
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
import type { LabelHits, TenantIndex } from "./TenantIndex.js"
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
//
// Cost model. A plain query is one native searchKnn (~0.1 ms) plus scoring of
// k × factor hits: microseconds. Forking a timeout fiber, a span per stage and
// an Effect per step would cost more than the work, so the synchronous stages
// (filter selectivity, ANN, scoring) run in one block that records its stage
// timings as metrics and as attributes of the query span, and checks the
// deadline by elapsed time (a native call cannot be interrupted anyway). The
// stages that can take long or wait — expansion and the storage fetch — are
// Effects with their own spans, yield the event loop in slices and run under
// the remaining deadline, so a timeout interrupts them.

/** Edges relaxed between checks of the time slice (and so of interruption). */
const EXPANSION_BUDGET = 2048
/** Default number of traversal results when the request names no limit. */
export const DEFAULT_TRAVERSE_LIMIT = 100

/** A scored entity: its score components inline (one object per candidate, the hot path makes ten a query). */
interface Candidate extends Scorer.Ranked, Scorer.Components {
  readonly id: EntityId
  readonly origin: string
  readonly path: ReadonlyArray<Graph.Step>
}

/** The path of a direct ANN hit, shared. */
const NO_PATH: ReadonlyArray<Graph.Step> = []

const stageMetrics = {
  ann: Metrics.stageSeconds("ann"),
  expand: Metrics.stageSeconds("expand"),
  filter: Metrics.stageSeconds("filter"),
  score: Metrics.stageSeconds("score"),
  fetch: Metrics.stageSeconds("fetch"),
  traverse: Metrics.stageSeconds("traverse"),
} as const

const recordStage = (stage: Metrics.Stage, startedMs: number): number => {
  const now = performance.now()
  stageMetrics[stage].unsafeUpdate((now - startedMs) / 1000, [])
  return now
}

/**
 * Effect's built-in tracer. Its spans are never exported; creating one costs
 * about 25 µs of CPU on the reference host — a sixth of a raw searchKnn — so
 * query spans are only made when an exporting tracer (OTLP) is installed.
 */
const builtInTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/** Runs `f` inside a span named `name`, or without one under the built-in tracer (`span` is then undefined). */
const traced = <A, E, R>(
  name: string,
  attributes: Record<string, unknown>,
  f: (span: Tracer.Span | undefined) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === builtInTracer
      ? f(undefined)
      : Effect.useSpan(name, { captureStackTrace: false, attributes }, (span) => Effect.withParentSpan(f(span), span)),
  )

const timedStage = <A, E, R>(
  stage: Metrics.Stage,
  span: Tracer.Span | undefined,
  effect: Effect.Effect<A, E, R>,
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const started = performance.now()
    const timed = Effect.tap(effect, () => Effect.sync(() => recordStage(stage, started)))
    return span === undefined ? timed : Effect.withSpan(timed, `QueryExecutor.${stage}`, { captureStackTrace: false })
  })

/** Runs an expansion to completion in slices, yielding the event loop (and so letting a deadline interrupt it). */
const runExpansion = (expansion: Graph.Expansion, sliceMs: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    const slice = new Slice(sliceMs)
    while (!expansion.run(EXPANSION_BUDGET)) {
      if (slice.due) yield* slice.yieldIfDue
    }
  })

/** The entity without its vector (built like `makeResult`, without the class constructor's per-field work). */
const stripVector = (entity: Entity, includeVectors: boolean): Entity => {
  if (includeVectors || entity.vector === undefined) return entity
  const { vector: _vector, ...rest } = entity
  return Object.assign(Object.create(Entity.prototype) as Entity, rest)
}

const toPathSteps = (path: ReadonlyArray<Graph.Step>): Array<PathStep> =>
  path.map(
    (s) =>
      new PathStep(
        {
          from: s.from as EntityId,
          to: s.to as EntityId,
          relation: s.relation as PathStep["relation"],
          weight: s.weight,
          direction: s.direction,
        },
        true,
      ),
  )

/**
 * A QueryResult without the Schema class constructor: `new QueryResult(p, true)`
 * still merges defaults field by field, which profiled at ~10% of a cheap
 * query. The result is the same — an instance of the class with `p` as own
 * properties (the test checks it encodes like a constructed one).
 */
export const makeResult = (props: {
  readonly id: EntityId
  readonly score: number
  readonly entity?: Entity
  readonly explain?: ScoreExplain
}): QueryResult => Object.assign(Object.create(QueryResult.prototype) as QueryResult, props)

/** `makeResult` without the intermediate props object (the hot path of every query). */
const resultOf = (id: EntityId, score: number, entity: Entity | undefined, explain: ScoreExplain | undefined): QueryResult => {
  const result = Object.create(QueryResult.prototype) as { id: EntityId; score: number; entity?: Entity; explain?: ScoreExplain }
  result.id = id
  result.score = score
  if (entity !== undefined) result.entity = entity
  if (explain !== undefined) result.explain = explain
  return result as QueryResult
}

const vectorNorm = (v: ReadonlyArray<number>): number => {
  let sum = 0
  for (const x of v) sum += x * x
  return Math.sqrt(sum)
}

export const make: Effect.Effect<QueryExecutorShape, never, Tenants | StorageEngine.StorageEngine> = Effect.gen(
  function* () {
    const tenants = yield* Tenants
    const storage = yield* StorageEngine.StorageEngine
    const config = tenants.config
    const timeoutMs = config.queryTimeoutMs

    const deadlineExceeded = (operation: string) => new DeadlineExceeded({ timeoutMs, operation })

    /** Runs `effect` under what is left of the deadline that started at `startedMs`. */
    const withinDeadline = <A, E, R>(operation: string, startedMs: number, effect: Effect.Effect<A, E, R>) =>
      Effect.suspend(() => {
        const remaining = timeoutMs - (performance.now() - startedMs)
        if (remaining <= 0) return Effect.fail(deadlineExceeded(operation))
        return effect.pipe(
          Effect.timeoutFail({ duration: Duration.millis(remaining), onTimeout: () => deadlineExceeded(operation) }),
        )
      })

    /**
     * ANN, with the filter applied during the search or, when it matches few
     * vectors, by an exact scan. Synchronous; returns labels, valid until the
     * next yield. Records the filter and ann stages; returns when the ANN ended.
     */
    const nearest = (
      index: TenantIndex,
      request: QueryRequest,
      filter: Filter.CompiledFilter | undefined,
      n: number,
      started: number,
      timings: Record<string, number> | undefined,
    ): { readonly hits: LabelHits; readonly ended: number } => {
      const ef = Math.max(request.ef ?? config.efSearch, n)
      if (filter === undefined) {
        const hits = index.searchLabels(request.vector, n, ef)
        const ended = recordStage("ann", started)
        if (timings !== undefined) timings["ann.ms"] = ended - started
        return { hits, ended }
      }
      const selective = index.selectiveLabels(filter, config.exactScanThreshold)
      const afterFilter = recordStage("filter", started)
      if (timings !== undefined) {
        timings["filter.ms"] = afterFilter - started
        timings.exact = selective === undefined ? 0 : 1
      }
      const hits =
        selective !== undefined
          ? index.exactScanLabels(request.vector, selective, n)
          : index.searchLabels(request.vector, n, ef, (label) => index.matchesLabel(filter, label))
      const ended = recordStage("ann", afterFilter)
      if (timings !== undefined) timings["ann.ms"] = ended - afterFilter
      return { hits, ended }
    }

    const buildResults = (
      request: QueryRequest,
      weights: Scorer.Weights,
      ranked: ReadonlyArray<Candidate>,
      entities: ReadonlyArray<Entity | undefined> | undefined,
    ): Array<QueryResult> => {
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
                  similarity: r.similarity,
                  graph: r.graph,
                  importance: r.importance,
                  recency: r.recency,
                  weights: { ...weights },
                  origin: r.origin as EntityId,
                  path: toPathSteps(r.path),
                },
                true,
              )
            : undefined
        results.push(resultOf(r.id, r.score, entity, explain))
      }
      return results
    }

    // `traced` hands over the span object, so the synchronous stages set their
    // timings on it without extra Effect steps.
    /** A scored candidate from its components. */
    const candidate = (
      weights: Scorer.Weights,
      id: string,
      similarity: number,
      graph: number,
      importance: number,
      recency: number,
      origin: string,
      path: ReadonlyArray<Graph.Step>,
    ): Candidate => ({
      id: id as EntityId,
      score: Scorer.scoreOf(weights, similarity, graph, importance, recency),
      similarity,
      graph,
      importance,
      recency,
      origin,
      path,
    })

    /**
     * Expansion from the direct hits, scoring what it reaches into `scored`
     * (interruptible, in slices). Returns the milliseconds of the walk itself
     * (the expand stage), which the score stage leaves out.
     */
    const expandInto = (
      index: TenantIndex,
      request: QueryRequest,
      expand: NonNullable<QueryRequest["expand"]>,
      filter: Filter.CompiledFilter | undefined,
      hits: ReadonlyArray<Candidate>,
      weights: Scorer.Weights,
      now: number,
      span: Tracer.Span | undefined,
      scored: Array<Candidate>,
    ): Effect.Effect<number> =>
      Effect.gen(function* () {
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
        const walkStarted = performance.now()
        yield* timedStage("expand", span, runExpansion(expansion, config.sliceMs))
        const walkMs = performance.now() - walkStarted
        const direct = new Set<string>(hits.map((h) => h.id))
        const queryNorm = vectorNorm(request.vector)
        const slice = new Slice(config.sliceMs)
        for (const r of expansion.result.values()) {
          if (direct.has(r.id)) continue
          const attrs = index.attrs.get(r.id)
          if (attrs === undefined) continue
          if (filter !== undefined && !filter.matches(attrs)) continue
          // An expanded entity scores its own similarity when it has a vector.
          const similarity =
            attrs.label >= 0 ? Scorer.similarity(index.metric, index.distanceTo(request.vector, queryNorm, attrs.label)) : 0
          scored.push(
            candidate(
              weights,
              r.id,
              similarity,
              r.weight,
              Scorer.importanceOf(attrs.importance),
              Scorer.recency(attrs.updatedAt, now, config.recencyHalfLifeMs),
              r.origin,
              r.path,
            ),
          )
          if (slice.due) yield* slice.yieldIfDue
        }
        return walkMs
      })

    const runQuery = (
      tenant: TenantId,
      request: QueryRequest,
      now: number,
      span: Tracer.Span | undefined,
    ): Effect.Effect<ReadonlyArray<QueryResult>, QueryError> => {
      const started = performance.now()
      const index = tenants.get(tenant)
      if (index === undefined) return Effect.succeed([])
      if (index.dimension !== undefined && request.vector.length !== index.dimension) {
        return Effect.fail(new DimensionMismatch({ field: "vector", expected: index.dimension, actual: request.vector.length }))
      }
      const weights = Scorer.resolveWeights(request.weights)
      const filter = Filter.compile(request.filter)
      const expand = request.expand !== undefined && request.expand.hops > 0 ? request.expand : undefined
      const candidates = Math.ceil(request.k * (expand?.factor ?? 1))
      // Stage timings go to the span; without one they are only metrics.
      const timings: Record<string, number> | undefined = span === undefined ? undefined : {}
      // Labels become ids inside this synchronous block: nothing below holds
      // a label across a yield, when a write could reuse it.
      const { hits, ended: scoreStarted } = nearest(index, request, filter, candidates, started, timings)
      if (scoreStarted - started > timeoutMs) return Effect.fail(deadlineExceeded("query"))
      // Direct hits score from the per-label mirror of importance and
      // updatedAt. A zero weight's component only matters to `explain`
      // (0 × a finite component adds exactly 0), so its work is skipped.
      const { neighbors, distances } = hits
      const withRecency = weights.recency !== 0 || request.explain === true
      const withImportance = weights.importance !== 0 || request.explain === true
      const labelToId = index.labelToId
      const scored: Array<Candidate> = []
      for (let i = 0; i < neighbors.length; i++) {
        const label = neighbors[i]!
        const id = labelToId[label]
        if (id === undefined) continue
        scored.push(
          candidate(
            weights,
            id,
            Scorer.similarity(index.metric, distances[i]!),
            1,
            withImportance ? Scorer.importanceOf(index.importanceAt(label)) : 0,
            withRecency ? Scorer.recency(index.updatedAtAt(label), now, config.recencyHalfLifeMs) : 0,
            id,
            NO_PATH,
          ),
        )
      }
      let walkMs = 0

      const rank = (): ReadonlyArray<Candidate> => {
        Scorer.sortRanked(scored)
        if (scored.length > request.k) scored.length = request.k
        // The score stage: scoring and ranking, the expansion's own walk excluded.
        const scoreMs = performance.now() - scoreStarted - walkMs
        stageMetrics.score.unsafeUpdate(scoreMs / 1000, [])
        if (span !== undefined && timings !== undefined) {
          timings["score.ms"] = scoreMs
          for (const key of Object.keys(timings)) span.attribute(key, timings[key])
        }
        return scored
      }
      const finish = (ranked: ReadonlyArray<Candidate>) =>
        request.includeEntities === false
          ? Effect.succeed(buildResults(request, weights, ranked, undefined))
          : withinDeadline(
              "query",
              started,
              timedStage(
                "fetch",
                span,
                storage.getMany(
                  tenant,
                  tenant,
                  ranked.map((r) => r.id),
                ),
              ),
            ).pipe(Effect.map((entities) => buildResults(request, weights, ranked, entities)))

      // The common case stays synchronous up to the fetch.
      if (expand === undefined || scored.length === 0) return finish(rank())
      return withinDeadline(
        "query",
        started,
        Effect.map(expandInto(index, request, expand, filter, scored.slice(), weights, now, span, scored), (ms) => {
          walkMs = ms
          return rank()
        }),
      ).pipe(Effect.flatMap(finish))
    }

    // One runtime read gives the clock and the tracer; a span only exists under
    // an exporting tracer (see `builtInTracer`).
    const query = (tenant: TenantId, request: QueryRequest): Effect.Effect<ReadonlyArray<QueryResult>, QueryError> =>
      Effect.withFiberRuntime<ReadonlyArray<QueryResult>, QueryError>((fiber) => {
        const now = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
        if (fiber.currentTracer === builtInTracer) return runQuery(tenant, request, now, undefined)
        return Effect.useSpan("QueryExecutor.query", { captureStackTrace: false, attributes: { tenant } }, (span) =>
          Effect.withParentSpan(
            Effect.suspend(() => runQuery(tenant, request, now, span)),
            span,
          ),
        )
      })

    const traverse = (tenant: TenantId, request: TraverseRequest): Effect.Effect<ReadonlyArray<TraverseResult>, QueryError> =>
      traced("QueryExecutor.traverse", { tenant }, (span) => Effect.suspend(() => {
        const started = performance.now()
        const index = tenants.get(tenant)
        if (index === undefined) return Effect.succeed([])
        const expansion = new Graph.Expansion(index.graph, request.from, {
          hops: request.hops,
          direction: request.direction,
          relations: request.relations,
          fanout: Number.POSITIVE_INFINITY,
          hopDecay: 1,
          prefer: "depth",
          exists: index.exists,
        })
        return withinDeadline(
          "traverse",
          started,
          Effect.gen(function* () {
            yield* timedStage("traverse", span, runExpansion(expansion, config.sliceMs))
            const reached = [...expansion.result.values()]
              .sort((a, b) => a.depth - b.depth || b.weight - a.weight || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
              .slice(0, request.limit ?? DEFAULT_TRAVERSE_LIMIT)
            const entities = yield* timedStage(
              "fetch",
              span,
              storage.getMany(
                tenant,
                tenant,
                reached.map((r) => r.id as EntityId),
              ),
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
          }),
        )
      }))

    const shape: QueryExecutorShape = { query, traverse }
    return shape
  },
)

export const layer: Layer.Layer<QueryExecutor, never, Tenants | StorageEngine.StorageEngine> = Layer.effect(
  QueryExecutor,
  make,
)
