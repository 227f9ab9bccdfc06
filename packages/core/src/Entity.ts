/**
 * The data model: an entity carries an embedding, metadata, text chunks and
 * outgoing weighted edges. These schemas are the domain types every surface
 * (HTTP, gRPC, RPC, embedded) decodes into; the encoded side is the native
 * JSON shape (snake_case).
 */
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { ChunkId, EntityId, isValidId, Relation, TenantId } from "./Ids.js"
import { instanceOf, isFiniteNumber, isPlainObject, isVectorValue, utf8AtMost } from "./WireChecks.js"

/** Largest accepted vector dimension. */
export const MAX_DIMENSION = 16_384

/** Largest accepted `type`, in UTF-8 bytes. */
const MAX_TYPE_BYTES = 256

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
  Schema.filter((s) => utf8AtMost(s, MAX_TYPE_BYTES) || `type must be at most ${MAX_TYPE_BYTES} bytes`),
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

// ---------------------------------------------------------------------------
// Decoding and checking entities fast
// ---------------------------------------------------------------------------
//
// A batch upsert decodes every entity from its wire form and the coordinator
// checks the fields again; through the schema that is ~25 µs and ~4 µs an
// entity (vector, chunk, four edges), a tenth of an HNSW insert. The common
// shapes are checked here by hand with the schemas' own rules and built as
// the schema builds them; anything else — a key present but undefined, an
// object that is not plain, any value the fast path refuses — goes through
// the schema, so an invalid entity fails with exactly the schema's error.
// Entity.test.ts checks both paths against the schema on generated input.

/**
 * An instance of a Schema class from props that are already valid and hold
 * every default (e.g. decoded from storage), without the constructor's
 * per-field work: the same object `new C(props, true)` makes. Never for
 * input from outside the process.
 */
export const unsafeInstance: <C>(klass: { readonly prototype: C }, props: Omit<C, never>) => C = instanceOf

const isUnit = (u: unknown): u is number => isFiniteNumber(u) && u >= 0 && u <= 1
const isVector = (u: unknown): u is ReadonlyArray<number> => isVectorValue(u, MAX_DIMENSION)
/** EntityType's rule. */
const isEntityType = (u: unknown): u is string => typeof u === "string" && utf8AtMost(u, MAX_TYPE_BYTES)

/** A copy of a string → (string | finite number | boolean) record, or undefined when the fast path refuses it. */
const copyMetadata = (u: unknown): Metadata | undefined => {
  if (!isPlainObject(u)) return undefined
  const out: Record<string, string | number | boolean> = {}
  for (const key of Object.keys(u)) {
    const v = u[key]
    if (typeof v !== "string" && typeof v !== "boolean" && !isFiniteNumber(v)) return undefined
    out[key] = v
  }
  return out
}

/** A copy of a string → string record, or undefined. */
const copyChunkMetadata = (u: unknown): ChunkMetadata | undefined => {
  if (!isPlainObject(u)) return undefined
  const out: Record<string, string> = {}
  for (const key of Object.keys(u)) {
    const v = u[key]
    if (typeof v !== "string") return undefined
    out[key] = v
  }
  return out
}

/** True when every key of `u` that is present holds a defined value (else the schema decides what undefined means). */
const noUndefined = (u: Record<string, unknown>): boolean => {
  for (const key in u) if (u[key] === undefined) return false
  return true
}

const fastChunk = (u: unknown): TextChunk | undefined => {
  if (!isPlainObject(u) || !noUndefined(u)) return undefined
  const { id, text } = u
  if (!isValidId(id) || typeof text !== "string") return undefined
  if (!("metadata" in u)) return instanceOf(TextChunk, { id, text })
  const metadata = copyChunkMetadata(u.metadata)
  return metadata === undefined ? undefined : instanceOf(TextChunk, { id, text, metadata })
}

const fastEdge = (u: unknown): GraphEdge | undefined => {
  if (!isPlainObject(u) || !noUndefined(u)) return undefined
  const { to, relation } = u
  if (!isValidId(to) || !isValidId(relation)) return undefined
  const weight = "weight" in u ? u.weight : 1
  if (!isUnit(weight)) return undefined
  if (!("metadata" in u)) return instanceOf(GraphEdge, { to, relation, weight })
  const metadata = copyChunkMetadata(u.metadata)
  return metadata === undefined ? undefined : instanceOf(GraphEdge, { to, relation, weight, metadata })
}

const fastArray = <A>(u: unknown, item: (u: unknown) => A | undefined): Array<A> | undefined => {
  if (!Array.isArray(u)) return undefined
  const out: Array<A> = []
  for (let i = 0; i < u.length; i++) {
    const a = item(u[i])
    if (a === undefined) return undefined
    out.push(a)
  }
  return out
}

/** The entity when the fast path accepts `u` (wire form), else undefined. */
const fastEntity = (u: unknown): Entity | undefined => {
  if (!isPlainObject(u) || !noUndefined(u)) return undefined
  const id = u.id
  if (!isValidId(id)) return undefined
  const props: Record<string, unknown> = { id }
  if ("type" in u) {
    if (!isEntityType(u.type)) return undefined
    props.type = u.type
  }
  if ("vector" in u) {
    if (!isVector(u.vector)) return undefined
    props.vector = u.vector
  }
  if ("vector_version" in u) {
    const version = u.vector_version
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0) return undefined
    props.vectorVersion = version
  }
  if ("metadata" in u) {
    const metadata = copyMetadata(u.metadata)
    if (metadata === undefined) return undefined
    props.metadata = metadata
  }
  if ("importance" in u) {
    if (!isUnit(u.importance)) return undefined
    props.importance = u.importance
  }
  if ("chunks" in u) {
    const chunks = fastArray(u.chunks, fastChunk)
    if (chunks === undefined) return undefined
    props.chunks = chunks
  }
  if ("edges" in u) {
    const edges = fastArray(u.edges, fastEdge)
    if (edges === undefined) return undefined
    props.edges = edges
  }
  if ("created_at" in u) {
    if (typeof u.created_at !== "number") return undefined
    props.createdAt = u.created_at
  }
  if ("updated_at" in u) {
    if (typeof u.updated_at !== "number") return undefined
    props.updatedAt = u.updated_at
  }
  return instanceOf(Entity, props)
}

const decodeEntitySlow = Schema.decodeUnknownSync(Entity)
const decodeEntitiesSlow = Schema.decodeUnknownSync(Schema.Array(Entity))

/**
 * `Schema.decodeUnknownSync(Entity)`: same result and same errors (throws
 * the schema's ParseError), several times faster for the common shapes. Use
 * it where entities arrive in their wire (JSON) form.
 */
export const decodeEntity = (u: unknown): Entity => fastEntity(u) ?? decodeEntitySlow(u)

/** `Schema.decodeUnknownSync(Schema.Array(Entity))` with the fast path of `decodeEntity`. */
export const decodeEntities = (u: unknown): ReadonlyArray<Entity> => {
  const fast = fastArray(u, fastEntity)
  return fast ?? decodeEntitiesSlow(u)
}

const EntityFields = Schema.Struct(Entity.fields)
const validateEntityFieldsSlow = Schema.validateEither(EntityFields)

/**
 * `Schema.validateEither(Schema.Struct(Entity.fields))`: the fields of an
 * entity value (decoded, or built by hand without validation) checked
 * against their schemas, with the same result; nested chunks and edges must
 * be TextChunk / GraphEdge instances, as the schema's type side requires.
 */
export const validateEntityFields = (e: unknown): Either.Either<typeof EntityFields.Type, ParseResult.ParseError> =>
  entityFieldsValid(e) ? Either.right(e as typeof EntityFields.Type) : validateEntityFieldsSlow(e)

const entityFieldsValid = (e: unknown): boolean => {
  if (typeof e !== "object" || e === null) return false
  const u = e as Record<string, unknown>
  if (!isValidId(u.id)) return false
  // Optional fields: absent, or present with a valid value (undefined goes to the schema).
  if ("type" in u && !isEntityType(u.type)) return false
  if ("vector" in u && !isVector(u.vector)) return false
  if ("vectorVersion" in u && !(typeof u.vectorVersion === "number" && Number.isSafeInteger(u.vectorVersion) && u.vectorVersion >= 0)) {
    return false
  }
  if ("metadata" in u && copyMetadata(u.metadata) === undefined) return false
  if ("importance" in u && !isUnit(u.importance)) return false
  if ("chunks" in u && !(Array.isArray(u.chunks) && u.chunks.every((c) => c instanceof TextChunk))) return false
  if ("edges" in u && !(Array.isArray(u.edges) && u.edges.every((x) => x instanceof GraphEdge))) return false
  if ("createdAt" in u && typeof u.createdAt !== "number") return false
  if ("updatedAt" in u && typeof u.updatedAt !== "number") return false
  return true
}
