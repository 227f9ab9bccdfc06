/**
 * Query and traversal requests and their results, shared by the executor,
 * the coordinator and every API surface.
 */
import * as Schema from "effect/Schema"
import { Entity, Metadata, MetadataValue, VectorEmbedding } from "./Entity.js"
import { EntityId, Relation } from "./Ids.js"

export const MAX_K = 10_000
export const MAX_HOPS = 5

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeNumber = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0) || "must be a finite number ≥ 0"),
)

export const Direction = Schema.Literal("out", "in", "both")
export type Direction = typeof Direction.Type

/** Graph expansion: a bounded BFS from each ANN hit. */
export class Expand extends Schema.Class<Expand>("@allidb/core/Expand")({
  hops: Schema.Int.pipe(Schema.between(0, MAX_HOPS)),
  /** ANN candidates = k × factor. */
  factor: Schema.optionalWith(Schema.Number.pipe(Schema.between(1, 100)), { default: () => 2 }),
  relations: Schema.optional(Schema.Array(Relation)),
  direction: Schema.optionalWith(Direction, { default: () => "out" as const }),
  /** At most this many neighbours are followed from one node. */
  fanout: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000))),
}) {}

/** A numeric range; any subset of the bounds. */
export const RangeCondition = Schema.Struct({
  gt: Schema.optional(Schema.Number),
  gte: Schema.optional(Schema.Number),
  lt: Schema.optional(Schema.Number),
  lte: Schema.optional(Schema.Number),
})
export const InCondition = Schema.Struct({ in: Schema.Array(MetadataValue) })
export const EqCondition = Schema.Struct({ eq: MetadataValue })

/** A metadata condition: a bare value means equality. */
export const MetadataCondition = Schema.Union(MetadataValue, EqCondition, InCondition, RangeCondition)
export type MetadataCondition = typeof MetadataCondition.Type

/** All conditions must hold (AND). */
export class QueryFilter extends Schema.Class<QueryFilter>("@allidb/core/QueryFilter")({
  type: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: MetadataCondition })),
}) {}

/** Weights of the unified score; any omitted weight keeps its default. */
export class ScoreWeights extends Schema.Class<ScoreWeights>("@allidb/core/ScoreWeights")({
  vector: Schema.optional(NonNegativeNumber),
  graph: Schema.optional(NonNegativeNumber),
  importance: Schema.optional(NonNegativeNumber),
  recency: Schema.optional(NonNegativeNumber),
}) {}

export const DEFAULT_WEIGHTS = { vector: 0.5, graph: 0.3, importance: 0.15, recency: 0.05 } as const

export class QueryRequest extends Schema.Class<QueryRequest>("@allidb/core/QueryRequest")({
  vector: VectorEmbedding,
  k: PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_K)),
  ef: Schema.optional(PositiveInt.pipe(Schema.lessThanOrEqualTo(100_000))),
  expand: Schema.optional(Expand),
  filter: Schema.optional(QueryFilter),
  weights: Schema.optional(ScoreWeights),
  includeVectors: Schema.optional(Schema.Boolean).pipe(Schema.fromKey("include_vectors")),
  /** Include the entity in each result (default true). */
  includeEntities: Schema.optional(Schema.Boolean).pipe(Schema.fromKey("include_entities")),
  explain: Schema.optional(Schema.Boolean),
}) {}

/** One hop of a graph path. */
export class PathStep extends Schema.Class<PathStep>("@allidb/core/PathStep")({
  from: EntityId,
  to: EntityId,
  relation: Relation,
  weight: Schema.Number,
  direction: Schema.Literal("out", "in"),
}) {}

export class ScoreExplain extends Schema.Class<ScoreExplain>("@allidb/core/ScoreExplain")({
  similarity: Schema.Number,
  graph: Schema.Number,
  importance: Schema.Number,
  recency: Schema.Number,
  weights: Schema.Struct({
    vector: Schema.Number,
    graph: Schema.Number,
    importance: Schema.Number,
    recency: Schema.Number,
  }),
  /** The ANN hit the entity was reached from (itself for a direct hit). */
  origin: EntityId,
  path: Schema.Array(PathStep),
}) {}

export class QueryResult extends Schema.Class<QueryResult>("@allidb/core/QueryResult")({
  id: EntityId,
  score: Schema.Number,
  entity: Schema.optional(Entity),
  explain: Schema.optional(ScoreExplain),
}) {}

export class TraverseRequest extends Schema.Class<TraverseRequest>("@allidb/core/TraverseRequest")({
  from: Schema.Array(EntityId).pipe(Schema.minItems(1), Schema.maxItems(1000)),
  hops: Schema.Int.pipe(Schema.between(1, MAX_HOPS)),
  relations: Schema.optional(Schema.Array(Relation)),
  direction: Schema.optionalWith(Direction, { default: () => "out" as const }),
  limit: Schema.optional(PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_K))),
  includeVectors: Schema.optional(Schema.Boolean).pipe(Schema.fromKey("include_vectors")),
}) {}

export class TraverseResult extends Schema.Class<TraverseResult>("@allidb/core/TraverseResult")({
  id: EntityId,
  depth: Schema.Int,
  /** Product of edge weights along the path. */
  weight: Schema.Number,
  path: Schema.Array(PathStep),
  entity: Schema.optional(Entity),
}) {}

export class ScanRequest extends Schema.Class<ScanRequest>("@allidb/core/ScanRequest")({
  start: Schema.optional(Schema.String),
  end: Schema.optional(Schema.String),
  limit: Schema.optional(PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_K))),
  pageToken: Schema.optional(Schema.String).pipe(Schema.fromKey("page_token")),
}) {}

export class ScanPage extends Schema.Class<ScanPage>("@allidb/core/ScanPage")({
  entities: Schema.Array(Entity),
  nextPageToken: Schema.optional(Schema.String).pipe(Schema.fromKey("next_page_token")),
}) {}

export { Metadata }
