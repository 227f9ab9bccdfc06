/**
 * The AlliDB-compatible wire format (snake_case, nanosecond timestamps,
 * versioned embeddings) shared by the compatible REST routes and gRPC, and its
 * mapping to and from the core Entity. Both surfaces decode into these schemas
 * and call the operations at the bottom of this module, so they answer alike;
 * the operations only talk to the Coordinator.
 *
 * Mapping rules (see docs/API.md "AlliDB-compatible REST"):
 * - the newest embedding (highest version, then latest timestamp, then last
 *   in the list) is the entity's vector; older versions are not kept;
 * - `incoming_edges` are written as outgoing edges of their source entities
 *   (PutEdge through Coordinator.putEdges), so the graph reads the same;
 * - timestamps are nanoseconds on the wire and milliseconds in the core;
 *   zero or absent means "let the server assign it";
 * - on output `incoming_edges` is always [] (deriving it would cost a graph
 *   walk per entity) and edge timestamps are 0 (edges carry no own time).
 */
import type { ConsistencyLevel as CoreConsistencyLevel, EntityId, TenantId } from "@allidb/core"
import {
  ChunkId,
  ChunkMetadata,
  DimensionMismatch,
  Entity,
  EntityId as EntityIdSchema,
  EntityType,
  EdgeWrite,
  Expand,
  GraphEdge,
  InvalidInput,
  MAX_K,
  PermissionDenied,
  QueryRequest,
  Relation,
  ScanRequest,
  TextChunk,
  UnitInterval,
  VectorEmbedding,
} from "@allidb/core"
import { Coordinator } from "@allidb/cluster"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"

// ---------------------------------------------------------------------------
// Scalars

const NANOS_PER_MILLI = 1_000_000n
const DIGITS = /^[0-9]+$/

/**
 * An int64 nanosecond timestamp. Accepted as a JSON number (what encoding/json
 * clients send) or a decimal string (protobuf JSON and our gRPC loader, which
 * reads int64 as strings to keep all 64 bits). Decoded to a bigint; encoded
 * back to a JSON number for REST (a double: exact to the millisecond, which is
 * all the server keeps).
 */
export const Nanos = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.BigIntFromSelf, {
  strict: true,
  decode: (input, _, ast) => {
    if (typeof input === "number") {
      return Number.isInteger(input) && input >= 0
        ? ParseResult.succeed(BigInt(input))
        : ParseResult.fail(new ParseResult.Type(ast, input, "must be a non-negative integer (nanoseconds)"))
    }
    return DIGITS.test(input) && input.length <= 19
      ? ParseResult.succeed(BigInt(input))
      : ParseResult.fail(new ParseResult.Type(ast, input, "must be a non-negative integer (nanoseconds)"))
  },
  encode: (nanos) => ParseResult.succeed(Number(nanos)),
})

/** An int64 version number: a JSON number or decimal string, at most 2^53 - 1. */
export const Version = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.Number, {
  strict: true,
  decode: (input, _, ast) => {
    const n = typeof input === "number" ? input : DIGITS.test(input) ? Number(input) : Number.NaN
    return Number.isSafeInteger(n) && n >= 0
      ? ParseResult.succeed(n)
      : ParseResult.fail(new ParseResult.Type(ast, input, "must be an integer between 0 and 2^53 - 1"))
  },
  encode: ParseResult.succeed,
})

/**
 * Consistency as existing AlliDB clients send it: `CONSISTENCY_ONE`, the short
 * `ONE`, or the numeric gRPC enum value (ONE=0, QUORUM=1, ALL=2).
 */
export const ConsistencyLevel = Schema.transform(
  Schema.Literal("CONSISTENCY_ONE", "CONSISTENCY_QUORUM", "CONSISTENCY_ALL", "ONE", "QUORUM", "ALL", 0, 1, 2).annotations({
    message: () =>
      "unknown consistency level: expected CONSISTENCY_ONE, CONSISTENCY_QUORUM, CONSISTENCY_ALL, ONE, QUORUM, ALL, 0, 1 or 2",
  }),
  Schema.Literal("ONE", "QUORUM", "ALL"),
  {
    strict: true,
    decode: (level): CoreConsistencyLevel => {
      switch (level) {
        case 0:
        case "ONE":
        case "CONSISTENCY_ONE":
          return "ONE"
        case 1:
        case "QUORUM":
        case "CONSISTENCY_QUORUM":
          return "QUORUM"
        default:
          return "ALL"
      }
    },
    encode: (level) => level,
  },
)

// ---------------------------------------------------------------------------
// Wire schemas (the encoded side is the wire shape)

export const CompatEmbedding = Schema.Struct({
  version: Schema.optional(Version),
  vector: VectorEmbedding,
  timestamp_nanos: Schema.optional(Nanos),
})
export type CompatEmbedding = typeof CompatEmbedding.Type

/** An edge as AlliDB sends it: both ends named. An empty end means "this entity". */
export const CompatEdge = Schema.Struct({
  from_entity: Schema.optional(Schema.String),
  to_entity: Schema.optional(Schema.String),
  relation: Relation,
  weight: Schema.optional(UnitInterval),
  timestamp_nanos: Schema.optional(Nanos),
})
export type CompatEdge = typeof CompatEdge.Type

export const CompatChunk = Schema.Struct({
  chunk_id: ChunkId,
  text: Schema.String,
  metadata: Schema.optional(ChunkMetadata),
})
export type CompatChunk = typeof CompatChunk.Type

export const CompatEntity = Schema.Struct({
  entity_id: EntityIdSchema,
  /** Empty or absent: the caller's tenant. Any other tenant is refused (403). */
  tenant_id: Schema.optional(Schema.String),
  entity_type: Schema.optional(EntityType),
  embeddings: Schema.optional(Schema.Array(CompatEmbedding)),
  outgoing_edges: Schema.optional(Schema.Array(CompatEdge)),
  incoming_edges: Schema.optional(Schema.Array(CompatEdge)),
  chunks: Schema.optional(Schema.Array(CompatChunk)),
  importance: Schema.optional(UnitInterval),
  created_at_nanos: Schema.optional(Nanos),
  updated_at_nanos: Schema.optional(Nanos),
})
export type CompatEntity = typeof CompatEntity.Type
export type CompatEntityEncoded = typeof CompatEntity.Encoded

export const PutEntityRequest = Schema.Struct({
  entity: CompatEntity,
  consistency_level: Schema.optional(ConsistencyLevel),
  trace_id: Schema.optional(Schema.String),
})
export type PutEntityRequest = typeof PutEntityRequest.Type

export const BatchPutEntitiesRequest = Schema.Struct({
  entities: Schema.Array(CompatEntity),
  consistency_level: Schema.optional(ConsistencyLevel),
  trace_id: Schema.optional(Schema.String),
})
export type BatchPutEntitiesRequest = typeof BatchPutEntitiesRequest.Type

export const DEFAULT_K = 10
export const DEFAULT_EXPAND_FACTOR = 2
export const DEFAULT_SCAN_LIMIT = 100

export const CompatQueryRequest = Schema.Struct({
  query_vector: VectorEmbedding,
  k: Schema.optional(Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(MAX_K))),
  expand_factor: Schema.optional(Schema.Number.pipe(Schema.between(1, 100))),
  consistency_level: Schema.optional(ConsistencyLevel),
  trace_id: Schema.optional(Schema.String),
})
export type CompatQueryRequest = typeof CompatQueryRequest.Type

export const RangeScanRequest = Schema.Struct({
  tenant_id: Schema.optional(Schema.String),
  start_key: Schema.optional(Schema.String),
  end_key: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(MAX_K))),
  page_token: Schema.optional(Schema.String),
  node_id: Schema.optional(Schema.String),
})
export type RangeScanRequest = typeof RangeScanRequest.Type

/** An entity as the server answers it (REST body; gRPC converts the bigints). */
export interface CompatEntityOut {
  readonly entity_id: string
  readonly tenant_id: string
  readonly entity_type: string
  readonly embeddings: ReadonlyArray<{ readonly version: number; readonly vector: ReadonlyArray<number>; readonly timestamp_nanos: bigint }>
  readonly outgoing_edges: ReadonlyArray<CompatEdgeOut>
  readonly incoming_edges: ReadonlyArray<CompatEdgeOut>
  readonly chunks: ReadonlyArray<{ readonly chunk_id: string; readonly text: string; readonly metadata: Readonly<Record<string, string>> }>
  /** Absent when the entity has none (the scorer then counts 0.5). */
  readonly importance?: number
  readonly created_at_nanos: bigint
  readonly updated_at_nanos: bigint
}

export interface CompatEdgeOut {
  readonly from_entity: string
  readonly to_entity: string
  readonly relation: string
  readonly weight: number
  readonly timestamp_nanos: bigint
}

// ---------------------------------------------------------------------------
// Pure mapping

export const nanosToMillis = (nanos: bigint): number => Number(nanos / NANOS_PER_MILLI)
export const millisToNanos = (millis: number): bigint => BigInt(Math.trunc(millis)) * NANOS_PER_MILLI

/** Zero means unset on the wire (proto3 default). */
const nonZeroMillis = (nanos: bigint | undefined): number | undefined =>
  nanos === undefined || nanos === 0n ? undefined : nanosToMillis(nanos)

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === "" ? undefined : s)

/** Index of the newest embedding: highest version, then latest timestamp, then the last listed. */
export const newestEmbedding = (embeddings: ReadonlyArray<CompatEmbedding>): number => {
  let best = -1
  for (let i = 0; i < embeddings.length; i++) {
    if (best < 0) {
      best = i
      continue
    }
    const a = embeddings[i]
    const b = embeddings[best]
    const va = a.version ?? 0
    const vb = b.version ?? 0
    const ta = a.timestamp_nanos ?? 0n
    const tb = b.timestamp_nanos ?? 0n
    if (va > vb || (va === vb && ta >= tb)) best = i
  }
  return best
}

/** What one compatible entity writes: the core entity and edges held by other (source) entities. */
export interface CompatWrite {
  readonly entity: Entity
  readonly incomingEdges: ReadonlyArray<EdgeWrite>
  /** Where the indexed vector sits in the request (`entity.embeddings[2].vector`), for errors about it. */
  readonly vectorField?: string
}

/**
 * A Coordinator refusal of one entity names the core path (`entities[0].vector`);
 * the compatible client sent `entity.embeddings[n].vector`: name that instead.
 */
export const toCompatFailure = <E extends InvalidInput | DimensionMismatch>(error: E, write: CompatWrite, field: string): E => {
  const core = /^entities\[\d+\]/.exec(error.field)?.[0]
  if (core === undefined) return error
  const rest = error.field.slice(core.length)
  const renamed =
    rest === ".vector" && write.vectorField !== undefined
      ? write.vectorField
      : `${field}${rest.replace(/^\.id\b/, ".entity_id")}`
  if (error._tag === "DimensionMismatch") {
    return new DimensionMismatch({ field: renamed, expected: error.expected, actual: error.actual }) as E
  }
  return new InvalidInput({ field: renamed, message: error.message.replace(error.field, renamed) }) as E
}

const endpoint = (value: string | undefined, field: string): Either.Either<EntityId | undefined, InvalidInput> => {
  if (value === undefined || value === "") return Either.right(undefined)
  return Either.mapLeft(Schema.decodeEither(EntityIdSchema)(value), (error) => {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
    return new InvalidInput({ field, message: `${field}: ${issue?.message ?? "invalid entity id"}` })
  })
}

/**
 * One decoded compatible entity as a core write for `tenant`. `field` is the
 * entity's path in the request (e.g. `entities[3]`) so errors name it.
 */
export const toCoreWrite = (
  tenant: TenantId,
  input: CompatEntity,
  field: string,
): Either.Either<CompatWrite, InvalidInput | PermissionDenied> =>
  Either.gen(function* () {
    const tenantId = nonEmpty(input.tenant_id)
    if (tenantId !== undefined && tenantId !== tenant) {
      return yield* Either.left(
        new PermissionDenied({ message: `${field}.tenant_id names another tenant than the caller's` }),
      )
    }
    const id = input.entity_id
    const edges: Array<GraphEdge> = []
    const outgoing = input.outgoing_edges ?? []
    for (let i = 0; i < outgoing.length; i++) {
      const edge = outgoing[i]
      const path = `${field}.outgoing_edges[${i}]`
      const from = yield* endpoint(edge.from_entity, `${path}.from_entity`)
      if (from !== undefined && from !== id) {
        return yield* Either.left(
          new InvalidInput({ field: `${path}.from_entity`, message: `${path}.from_entity must be the entity's own id (or empty)` }),
        )
      }
      const to = yield* endpoint(edge.to_entity, `${path}.to_entity`)
      if (to === undefined) {
        return yield* Either.left(new InvalidInput({ field: `${path}.to_entity`, message: `${path}.to_entity must not be empty` }))
      }
      edges.push(new GraphEdge({ to, relation: edge.relation, weight: edge.weight ?? 1 }))
    }
    const incomingEdges: Array<EdgeWrite> = []
    const incoming = input.incoming_edges ?? []
    for (let i = 0; i < incoming.length; i++) {
      const edge = incoming[i]
      const path = `${field}.incoming_edges[${i}]`
      const to = yield* endpoint(edge.to_entity, `${path}.to_entity`)
      if (to !== undefined && to !== id) {
        return yield* Either.left(
          new InvalidInput({ field: `${path}.to_entity`, message: `${path}.to_entity must be the entity's own id (or empty)` }),
        )
      }
      const from = yield* endpoint(edge.from_entity, `${path}.from_entity`)
      if (from === undefined) {
        return yield* Either.left(
          new InvalidInput({ field: `${path}.from_entity`, message: `${path}.from_entity must not be empty` }),
        )
      }
      incomingEdges.push(new EdgeWrite({ from, to: id, relation: edge.relation, weight: edge.weight ?? 1 }))
    }
    const embeddings = input.embeddings ?? []
    const newest = newestEmbedding(embeddings)
    const embedding = newest >= 0 ? embeddings[newest] : undefined
    const chunks = (input.chunks ?? []).map(
      (chunk) =>
        new TextChunk({
          id: chunk.chunk_id,
          text: chunk.text,
          ...(chunk.metadata !== undefined && Object.keys(chunk.metadata).length > 0 ? { metadata: chunk.metadata } : {}),
        }),
    )
    const type = nonEmpty(input.entity_type)
    const createdAt = nonZeroMillis(input.created_at_nanos)
    const updatedAt = nonZeroMillis(input.updated_at_nanos)
    const entity = new Entity({
      id,
      ...(type !== undefined ? { type } : {}),
      ...(embedding !== undefined ? { vector: embedding.vector } : {}),
      ...(embedding?.version !== undefined ? { vectorVersion: embedding.version } : {}),
      ...(input.importance !== undefined ? { importance: input.importance } : {}),
      ...(chunks.length > 0 ? { chunks } : {}),
      ...(edges.length > 0 ? { edges } : {}),
      ...(createdAt !== undefined ? { createdAt } : {}),
      ...(updatedAt !== undefined ? { updatedAt } : {}),
    })
    return {
      entity,
      incomingEdges,
      ...(embedding !== undefined ? { vectorField: `${field}.embeddings[${newest}].vector` } : {}),
    }
  })

/** A core entity in the compatible shape, for `tenant`. */
export const fromCoreEntity = (tenant: TenantId, entity: Entity): CompatEntityOut => {
  const createdAt = entity.createdAt !== undefined ? millisToNanos(entity.createdAt) : 0n
  const updatedAt = entity.updatedAt !== undefined ? millisToNanos(entity.updatedAt) : createdAt
  return {
    entity_id: entity.id,
    tenant_id: tenant,
    entity_type: entity.type ?? "",
    embeddings:
      entity.vector === undefined
        ? []
        : [{ version: entity.vectorVersion ?? 0, vector: entity.vector, timestamp_nanos: updatedAt }],
    outgoing_edges: (entity.edges ?? []).map((edge) => ({
      from_entity: entity.id,
      to_entity: edge.to,
      relation: edge.relation,
      weight: edge.weight,
      timestamp_nanos: 0n,
    })),
    incoming_edges: [],
    chunks: (entity.chunks ?? []).map((chunk) => ({ chunk_id: chunk.id, text: chunk.text, metadata: chunk.metadata ?? {} })),
    ...(entity.importance !== undefined ? { importance: entity.importance } : {}),
    created_at_nanos: createdAt,
    updated_at_nanos: updatedAt,
  }
}

/** The REST JSON of an answered entity: bigint nanos become JSON numbers. */
export const entityToJson = (entity: CompatEntityOut): unknown => ({
  ...entity,
  embeddings: entity.embeddings.map((e) => ({ ...e, timestamp_nanos: Number(e.timestamp_nanos) })),
  outgoing_edges: entity.outgoing_edges.map((e) => ({ ...e, timestamp_nanos: Number(e.timestamp_nanos) })),
  incoming_edges: entity.incoming_edges.map((e) => ({ ...e, timestamp_nanos: Number(e.timestamp_nanos) })),
  created_at_nanos: Number(entity.created_at_nanos),
  updated_at_nanos: Number(entity.updated_at_nanos),
})

// ---------------------------------------------------------------------------
// Operations (shared by REST and gRPC; everything goes through the Coordinator)

/** Limits the compatible surfaces enforce before calling the Coordinator. */
export interface CompatLimits {
  readonly maxBatch: number
  readonly maxK: number
}

export type CompatOperationError =
  | InvalidInput
  | PermissionDenied
  | Coordinator.CoordinatorError

const consistencyOptions = (level: CoreConsistencyLevel | undefined): { readonly consistency?: CoreConsistencyLevel } =>
  level === undefined ? {} : { consistency: level }

/** Upserts one compatible entity, then its incoming edges on their source entities. */
export const putEntity = (
  tenant: TenantId,
  request: PutEntityRequest,
): Effect.Effect<{ readonly entity_id: EntityId }, CompatOperationError, Coordinator.Coordinator> =>
  Effect.gen(function* () {
    const write = yield* toCoreWrite(tenant, request.entity, "entity")
    const coordinator = yield* Coordinator.Coordinator
    const options = consistencyOptions(request.consistency_level)
    const result = yield* coordinator.upsert(tenant, [write.entity], options)
    const failure = result.failed[0]
    if (failure !== undefined) return yield* Effect.fail(toCompatFailure(failure.error, write, "entity"))
    if (write.incomingEdges.length > 0) yield* coordinator.putEdges(tenant, write.incomingEdges, options)
    return { entity_id: write.entity.id }
  }).pipe(Effect.withSpan("Compat.putEntity"))

export interface BatchPutResult {
  readonly success: boolean
  readonly error_message: string
  readonly entity_ids: ReadonlyArray<EntityId>
  readonly success_count: number
  readonly failure_count: number
}

/**
 * Upserts a batch. A malformed entity or one naming another tenant refuses the
 * whole request (400/403, before anything is written); entities the
 * Coordinator refuses (e.g. a vector of another dimension) are counted in
 * `failure_count` and the rest are written, as AlliDB does.
 */
export const batchPutEntities = (
  tenant: TenantId,
  request: BatchPutEntitiesRequest,
  limits: CompatLimits,
): Effect.Effect<BatchPutResult, CompatOperationError, Coordinator.Coordinator> =>
  Effect.gen(function* () {
    if (request.entities.length > limits.maxBatch) {
      return yield* Effect.fail(
        new InvalidInput({
          field: "entities",
          message: `entities: a batch holds at most ${limits.maxBatch} entities (got ${request.entities.length})`,
        }),
      )
    }
    const writes: Array<CompatWrite> = []
    for (let i = 0; i < request.entities.length; i++) {
      writes.push(yield* toCoreWrite(tenant, request.entities[i], `entities[${i}]`))
    }
    const coordinator = yield* Coordinator.Coordinator
    const options = consistencyOptions(request.consistency_level)
    const result =
      writes.length === 0
        ? { ids: [], failed: [] }
        : yield* coordinator.upsert(
            tenant,
            writes.map((w) => w.entity),
            options,
          )
    const written = new Set<string>(result.ids)
    const edges = writes.filter((w) => written.has(w.entity.id)).flatMap((w) => w.incomingEdges)
    if (edges.length > 0) yield* coordinator.putEdges(tenant, edges, options)
    const failureCount = result.failed.length
    // Every write went to the Coordinator in request order, so its `entities[i]` is the request's.
    const named = result.failed.map((f) => {
      const index = Number(/^entities\[(\d+)\]/.exec(f.error.field)?.[1] ?? -1)
      const write = writes[index]
      return { id: f.id, error: write === undefined ? f.error : toCompatFailure(f.error, write, `entities[${index}]`) }
    })
    return {
      success: failureCount === 0,
      error_message: named.map((f) => `${f.id}: ${f.error.message}`).join("; "),
      entity_ids: result.ids,
      success_count: result.ids.length,
      failure_count: failureCount,
    }
  }).pipe(Effect.withSpan("Compat.batchPutEntities"))

export interface CompatQueryResult {
  readonly entity_id: string
  readonly score: number
  readonly entity: CompatEntityOut | undefined
}

export interface CompatQueryResponse {
  readonly results: ReadonlyArray<CompatQueryResult>
  readonly total_results: number
  readonly trace_id: string
}

const HEX = "0123456789abcdef"

/** A trace id for the answer: the caller's, else the current span's, else a random one. */
const traceIdFor = (given: string | undefined): Effect.Effect<string> => {
  if (given !== undefined && given !== "") return Effect.succeed(given)
  return Effect.option(Effect.currentSpan).pipe(
    Effect.flatMap((span) =>
      Option.isSome(span)
        ? Effect.succeed(span.value.traceId)
        : Effect.map(
            Effect.all(Array.from({ length: 32 }, () => Random.nextIntBetween(0, 16))),
            (digits) => digits.map((d) => HEX[d]).join(""),
          ),
    ),
  )
}

/**
 * The unified query: ANN with k × expand_factor candidates, one hop of
 * outgoing graph expansion from the hits, ranked by the unified score.
 */
export const query = (
  tenant: TenantId,
  request: CompatQueryRequest,
  limits: CompatLimits,
): Effect.Effect<CompatQueryResponse, CompatOperationError, Coordinator.Coordinator> =>
  Effect.gen(function* () {
    const k = request.k ?? DEFAULT_K
    if (k > limits.maxK) {
      return yield* Effect.fail(new InvalidInput({ field: "k", message: `k: must be at most ${limits.maxK} (got ${k})` }))
    }
    const coordinator = yield* Coordinator.Coordinator
    const results = yield* coordinator
      .query(
        tenant,
        new QueryRequest({
          vector: request.query_vector,
          k,
          expand: new Expand({ hops: 1, factor: request.expand_factor ?? DEFAULT_EXPAND_FACTOR, direction: "out" }),
          includeEntities: true,
          // The AlliDB entity carries its embeddings; the executor omits vectors unless asked.
          includeVectors: true,
        }),
        consistencyOptions(request.consistency_level),
      )
      .pipe(
        // The core request calls it `vector`; this client sent `query_vector`.
        Effect.mapError((error) =>
          error._tag === "DimensionMismatch" && error.field === "vector"
            ? new DimensionMismatch({ field: "query_vector", expected: error.expected, actual: error.actual })
            : error,
        ),
      )
    const traceId = yield* traceIdFor(request.trace_id)
    return {
      results: results.map((r) => ({
        entity_id: r.id,
        score: r.score,
        entity: r.entity === undefined ? undefined : fromCoreEntity(tenant, r.entity),
      })),
      total_results: results.length,
      trace_id: traceId,
    }
  }).pipe(Effect.withSpan("Compat.query"))

export interface CompatScanPage {
  readonly entities: ReadonlyArray<CompatEntityOut>
  readonly next_page_token: string
}

/** The caller's entities in id order; naming another tenant is refused. */
export const rangeScan = (
  tenant: TenantId,
  request: RangeScanRequest,
): Effect.Effect<CompatScanPage, CompatOperationError, Coordinator.Coordinator> =>
  Effect.gen(function* () {
    const named = nonEmpty(request.tenant_id)
    if (named !== undefined && named !== tenant) {
      return yield* Effect.fail(new PermissionDenied({ message: "tenant_id names another tenant than the caller's" }))
    }
    const coordinator = yield* Coordinator.Coordinator
    const start = nonEmpty(request.start_key)
    const end = nonEmpty(request.end_key)
    const pageToken = nonEmpty(request.page_token)
    const page = yield* coordinator.scan(
      tenant,
      new ScanRequest({
        limit: request.limit ?? DEFAULT_SCAN_LIMIT,
        ...(start !== undefined ? { start } : {}),
        ...(end !== undefined ? { end } : {}),
        ...(pageToken !== undefined ? { pageToken } : {}),
      }),
    )
    return {
      entities: page.entities.map((e) => fromCoreEntity(tenant, e)),
      next_page_token: page.nextPageToken ?? "",
    }
  }).pipe(Effect.withSpan("Compat.rangeScan"))
