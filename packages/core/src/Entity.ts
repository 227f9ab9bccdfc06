/**
 * The data model: an entity carries an embedding, metadata, text chunks and
 * outgoing weighted edges. These schemas are the domain types every surface
 * (HTTP, gRPC, RPC, embedded) decodes into; the encoded side is the native
 * JSON shape (snake_case).
 */
import * as Schema from "effect/Schema"
import { ChunkId, EntityId, Relation, TenantId } from "./Ids.js"

/** Largest accepted vector dimension. */
export const MAX_DIMENSION = 16_384

const FiniteNumber = Schema.Number.pipe(
  Schema.filter((n) => Number.isFinite(n) || "must be a finite number (not NaN or ±Infinity)"),
)

/**
 * A dense embedding: 1..MAX_DIMENSION finite numbers. One pass over the
 * array instead of a refinement per element: decoding sits on every write
 * and query, and a per-element filter cost more than the ANN search itself.
 * A bad component is still reported at its own path (`vector[3]`).
 */
const ArrayOfAny = Schema.declare((u: unknown): u is ReadonlyArray<number> => Array.isArray(u), {
  identifier: "NumberArray",
  description: "an array of numbers",
  jsonSchema: { type: "array", items: { type: "number" } },
  arbitrary: () => (fc) => fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 16 }),
})

export const VectorEmbedding = ArrayOfAny.pipe(
  Schema.filter((v): true | string | Schema.FilterIssue => {
    if (v.length === 0) return "vector must not be empty"
    if (v.length > MAX_DIMENSION) return `vector dimension ${v.length} exceeds the maximum of ${MAX_DIMENSION}`
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i]
      if (typeof x !== "number") return { path: [i], message: `Expected number, actual ${JSON.stringify(x) ?? typeof x}` }
      if (!Number.isFinite(x)) return { path: [i], message: "must be a finite number (not NaN or ±Infinity)" }
    }
    return true
  }),
)

export type VectorEmbedding = typeof VectorEmbedding.Type

/** A number in [0, 1]. */
export const UnitInterval = FiniteNumber.pipe(
  Schema.filter((n) => (n >= 0 && n <= 1) || "must be between 0 and 1"),
)

export const MetadataValue = Schema.Union(Schema.String, FiniteNumber, Schema.Boolean)
export type MetadataValue = typeof MetadataValue.Type

export const Metadata = Schema.Record({ key: Schema.String, value: MetadataValue })
export type Metadata = typeof Metadata.Type

/** Chunk metadata is string → string, as in the AlliDB wire format. */
export const ChunkMetadata = Schema.Record({ key: Schema.String, value: Schema.String })
export type ChunkMetadata = typeof ChunkMetadata.Type

export class TextChunk extends Schema.Class<TextChunk>("@allidb/core/TextChunk")({
  id: ChunkId,
  text: Schema.String,
  metadata: Schema.optional(ChunkMetadata),
}) {}

/** An outgoing edge; the source is the entity that holds it. Weight defaults to 1. */
export class GraphEdge extends Schema.Class<GraphEdge>("@allidb/core/GraphEdge")({
  to: EntityId,
  relation: Relation,
  weight: Schema.optionalWith(UnitInterval, { default: () => 1 }),
  metadata: Schema.optional(ChunkMetadata),
}) {}

export const EntityType = Schema.String.pipe(
  Schema.filter((s) => Buffer.byteLength(s, "utf8") <= 256 || "type must be at most 256 bytes"),
)

/**
 * An entity. Timestamps are milliseconds since the Unix epoch; they are set by
 * the server when absent. `vector_version` is the embedding's version (the
 * AlliDB wire format keeps versions; the newest one is indexed).
 */
export class Entity extends Schema.Class<Entity>("@allidb/core/Entity")({
  id: EntityId,
  type: Schema.optional(EntityType),
  vector: Schema.optional(VectorEmbedding),
  vectorVersion: Schema.optional(Schema.Int.pipe(Schema.nonNegative())).pipe(Schema.fromKey("vector_version")),
  metadata: Schema.optional(Metadata),
  importance: Schema.optional(UnitInterval),
  chunks: Schema.optional(Schema.Array(TextChunk)),
  edges: Schema.optional(Schema.Array(GraphEdge)),
  createdAt: Schema.optional(Schema.Number).pipe(Schema.fromKey("created_at")),
  updatedAt: Schema.optional(Schema.Number).pipe(Schema.fromKey("updated_at")),
}) {}

/** A directed edge named by both ends, used by the edge write/delete calls. */
export class EdgeRef extends Schema.Class<EdgeRef>("@allidb/core/EdgeRef")({
  from: EntityId,
  to: EntityId,
  relation: Relation,
}) {}

export class EdgeWrite extends Schema.Class<EdgeWrite>("@allidb/core/EdgeWrite")({
  from: EntityId,
  to: EntityId,
  relation: Relation,
  weight: Schema.optionalWith(UnitInterval, { default: () => 1 }),
  metadata: Schema.optional(ChunkMetadata),
}) {}

/** How many replicas must answer. On one node every level is satisfied locally. */
export const ConsistencyLevel = Schema.Literal("ONE", "QUORUM", "ALL")
export type ConsistencyLevel = typeof ConsistencyLevel.Type

export { TenantId }
