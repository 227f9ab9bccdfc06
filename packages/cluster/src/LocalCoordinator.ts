/**
 * The single-node Coordinator: every consistency level is satisfied by the
 * local StorageEngine. It is where every surface's writes are validated once
 * (ids, vectors, the tenant's dimension) before they become mutations that
 * all carry the caller's tenant, and where `wait` turns into read-your-writes
 * by waiting for the index to reach the write's commit sequence number.
 *
 * A batch upsert is all-or-nothing per entity: refused entities are reported
 * in `failed` and the rest go to storage in ONE durable write.
 */
import {
  DimensionMismatch,
  EdgeRef,
  EdgeWrite,
  type Entity,
  GraphEdge,
  InvalidInput,
  NotFound,
  ScanPage,
  type EntityId,
  type TenantId,
  validateEntityFields,
} from "@allidb/core"
import { QueryExecutor, UnifiedIndex } from "@allidb/index"
import { StorageEngine } from "@allidb/storage"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Coordinator from "./Coordinator.js"

/** Page size of a scan that does not name one. */
export const DEFAULT_SCAN_LIMIT = 100

const renderPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else out += out === "" ? String(key) : `.${String(key)}`
  }
  return out
}

/** The first issue of a failed validation as InvalidInput under `prefix`. */
const invalid = (prefix: string, error: ParseResult.ParseError): InvalidInput => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const rest = issue === undefined ? "" : renderPath(issue.path)
  const field = rest === "" ? prefix : rest.startsWith("[") ? `${prefix}${rest}` : `${prefix}.${rest}`
  return new InvalidInput({ field, message: `${field}: ${issue?.message ?? "invalid"}` })
}

// Values reaching the coordinator are usually decoded already; embedders may
// build them by hand (`make(…, { disableValidation: true })`), so the fields
// are checked again. A Class schema's type side only checks `instanceof`,
// hence the Struct of its fields (core's validateEntityFields: that check with
// a fast path, the schema's errors).
const validateEntity = validateEntityFields
const validateEdgeWrite = Schema.validateEither(Schema.Struct(EdgeWrite.fields))
const validateEdgeRef = Schema.validateEither(Schema.Struct(EdgeRef.fields))

export const make: Effect.Effect<
  Coordinator.CoordinatorShape,
  never,
  StorageEngine.StorageEngine | UnifiedIndex.UnifiedIndex | QueryExecutor.QueryExecutor
> = Effect.gen(function* () {
  const storage = yield* StorageEngine.StorageEngine
  const index = yield* UnifiedIndex.UnifiedIndex
  const executor = yield* QueryExecutor.QueryExecutor

  /** Acknowledge after the index reflects `seq` unless the caller opted out. */
  const settle = (seq: number, options: Coordinator.WriteOptions | undefined) =>
    options?.wait === false ? Effect.void : index.awaitSeq(seq)

  const write = (
    tenant: TenantId,
    mutations: ReadonlyArray<StorageEngine.Mutation>,
    options: Coordinator.WriteOptions | undefined,
  ) =>
    mutations.length === 0
      ? Effect.void
      : Effect.flatMap(storage.write(tenant, mutations), ({ seq }) => settle(seq, options))

  // Per entity this is plain code: index loops, the field name built only
  // for an error, the mutation built as the entity is accepted (a batch of
  // 1,000 goes through here before every durable write).
  const upsert = (tenant: TenantId, entities: ReadonlyArray<Entity>, options?: Coordinator.WriteOptions) =>
    Effect.gen(function* () {
      const failed: Array<Coordinator.UpsertFailure> = []
      const mutations: Array<StorageEngine.Mutation> = []
      const ids: Array<EntityId> = []
      // The last occurrence of a repeated id wins; earlier ones are reported,
      // because two puts of one row in one batch would share a timestamp.
      const lastIndex = new Map<string, number>()
      const dimensionAnswers = new Map<number, Either.Either<void, DimensionMismatch>>()
      const count = entities.length
      for (let i = 0; i < count; i++) lastIndex.set(entities[i]!.id, i)
      for (let i = 0; i < count; i++) {
        const entity = entities[i]!
        const checked = validateEntity(entity)
        if (Either.isLeft(checked)) {
          failed.push({ id: String(entity?.id ?? ""), error: invalid(`entities[${i}]`, checked.left) })
          continue
        }
        const last = lastIndex.get(entity.id)
        if (last !== i) {
          const field = `entities[${i}]`
          failed.push({
            id: entity.id,
            error: new InvalidInput({
              field: `${field}.id`,
              message: `${field}.id: duplicate id in the batch (entities[${last}] is written)`,
            }),
          })
          continue
        }
        if (entity.vector !== undefined) {
          // One ensureDimension per distinct length in the batch: a tenant's
          // dimension, once fixed, never changes, so its answer for a length
          // holds for every later entity (the error names each one's field).
          const length = entity.vector.length
          let answer = dimensionAnswers.get(length)
          if (answer === undefined) {
            answer = yield* Effect.either(index.ensureDimension(tenant, length, `entities[${i}].vector`))
            dimensionAnswers.set(length, answer)
          }
          if (Either.isLeft(answer)) {
            const e = answer.left
            const field = `entities[${i}].vector`
            failed.push({
              id: entity.id,
              error: e.field === field ? e : new DimensionMismatch({ field, expected: e.expected, actual: e.actual }),
            })
            continue
          }
        }
        mutations.push({ _tag: "PutEntity", tenant, entity })
        ids.push(entity.id)
      }
      yield* write(tenant, mutations, options)
      return { ids, failed } satisfies Coordinator.UpsertResult
    }).pipe(Effect.withSpan("Coordinator.upsert", { captureStackTrace: false, attributes: { tenant, count: entities.length } }))

  const get = (tenant: TenantId, id: EntityId) =>
    storage.get(tenant, tenant, id).pipe(
      Effect.flatMap((entity) =>
        entity === undefined ? Effect.fail(new NotFound({ what: "entity", id })) : Effect.succeed(entity),
      ),
      Effect.withSpan("Coordinator.get", { captureStackTrace: false, attributes: { tenant } }),
    )

  const remove = (tenant: TenantId, id: EntityId, options?: Coordinator.WriteOptions) =>
    Effect.gen(function* () {
      const existing = yield* storage.get(tenant, tenant, id)
      if (existing === undefined) return yield* new NotFound({ what: "entity", id })
      yield* write(tenant, [{ _tag: "DeleteEntity", tenant, id }], options)
    }).pipe(Effect.withSpan("Coordinator.remove", { captureStackTrace: false, attributes: { tenant } }))

  const putEdges = (tenant: TenantId, edges: ReadonlyArray<EdgeWrite>, options?: Coordinator.WriteOptions) =>
    Effect.gen(function* () {
      const mutations: Array<StorageEngine.Mutation> = []
      for (const [i, edge] of edges.entries()) {
        const checked = validateEdgeWrite(edge)
        if (Either.isLeft(checked)) return yield* invalid(`edges[${i}]`, checked.left)
        const graphEdge = new GraphEdge({
          to: edge.to,
          relation: edge.relation,
          weight: edge.weight,
          ...(edge.metadata === undefined ? {} : { metadata: edge.metadata }),
        })
        // An edge to (or from) an entity that does not exist is allowed:
        // graph-only endpoints are part of the model.
        mutations.push({ _tag: "PutEdge", tenant, from: edge.from, edge: graphEdge })
      }
      yield* write(tenant, mutations, options)
    }).pipe(Effect.withSpan("Coordinator.putEdges", { captureStackTrace: false, attributes: { tenant, count: edges.length } }))

  const removeEdges = (tenant: TenantId, edges: ReadonlyArray<EdgeRef>, options?: Coordinator.WriteOptions) =>
    Effect.gen(function* () {
      const mutations: Array<StorageEngine.Mutation> = []
      for (const [i, edge] of edges.entries()) {
        const checked = validateEdgeRef(edge)
        if (Either.isLeft(checked)) return yield* invalid(`edges[${i}]`, checked.left)
        mutations.push({ _tag: "DeleteEdge", tenant, from: edge.from, to: edge.to, relation: edge.relation })
      }
      yield* write(tenant, mutations, options)
    }).pipe(Effect.withSpan("Coordinator.removeEdges", { captureStackTrace: false, attributes: { tenant, count: edges.length } }))

  // No span of its own: QueryExecutor.query is the query's span (made only
  // when traces are exported). A flatMap, not a generator: this is on every
  // query, and a generator's steps cost about a microsecond.
  const query: Coordinator.CoordinatorShape["query"] = (tenant, request) =>
    Effect.flatMap(index.dimension(tenant), (dimension) =>
      dimension !== undefined && dimension !== request.vector.length
        ? Effect.fail(new DimensionMismatch({ field: "vector", expected: dimension, actual: request.vector.length }))
        : executor.query(tenant, request),
    )

  const traverse: Coordinator.CoordinatorShape["traverse"] = (tenant, request) =>
    executor.traverse(tenant, request).pipe(Effect.withSpan("Coordinator.traverse", { captureStackTrace: false, attributes: { tenant } }))

  const scan: Coordinator.CoordinatorShape["scan"] = (tenant, request) =>
    storage
      .scan(tenant, tenant, {
        limit: request.limit ?? DEFAULT_SCAN_LIMIT,
        ...(request.start === undefined ? {} : { start: request.start }),
        ...(request.end === undefined ? {} : { end: request.end }),
        ...(request.pageToken === undefined ? {} : { pageToken: request.pageToken }),
      })
      .pipe(
        Effect.map(
          (page) =>
            new ScanPage({
              entities: page.entities,
              ...(page.nextPageToken === undefined ? {} : { nextPageToken: page.nextPageToken }),
            }),
        ),
        Effect.withSpan("Coordinator.scan", { captureStackTrace: false, attributes: { tenant } }),
      )

  return { upsert, get, remove, putEdges, removeEdges, query, traverse, scan } satisfies Coordinator.CoordinatorShape
})

export const layer: Layer.Layer<
  Coordinator.Coordinator,
  never,
  StorageEngine.StorageEngine | UnifiedIndex.UnifiedIndex | QueryExecutor.QueryExecutor
> = Layer.effect(Coordinator.Coordinator, make)
