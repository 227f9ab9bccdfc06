/**
 * A Promise facade over the typed client for code that does not use Effect.
 * It speaks the same JSON shapes as the native HTTP API (snake_case):
 * inputs are decoded with the domain schemas before anything is sent (a bad
 * input rejects with InvalidInput naming the field), answers are encoded
 * back to plain JSON objects. Rejections are the server's typed errors
 * (`err._tag`: "NotFound", "InvalidInput", …) or an RpcClientError.
 *
 *   const db = await connect({ url: "http://127.0.0.1:8080", apiKey })
 *   await db.upsert([{ id: "a", vector: [0.1, 0.2] }])
 *   const { results } = await db.query({ vector: [0.1, 0.2], k: 5 })
 *   await db.close()
 */
import { ErrorMapping } from "@allidb/api"
import {
  type ConsistencyLevel,
  EdgeRef,
  EdgeWrite,
  Entity,
  EntityId,
  type InvalidInput,
  QueryRequest,
  QueryResult,
  ScanPage,
  ScanRequest,
  TraverseRequest,
  TraverseResult,
} from "@allidb/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as AlliDbClient from "./AlliDbClient.js"

export type EntityJson = typeof Entity.Encoded
export type EdgeWriteJson = typeof EdgeWrite.Encoded
export type EdgeRefJson = typeof EdgeRef.Encoded
export type QueryJson = typeof QueryRequest.Encoded
export type QueryResultJson = typeof QueryResult.Encoded
export type TraverseJson = typeof TraverseRequest.Encoded
export type TraverseResultJson = typeof TraverseResult.Encoded
export type ScanJson = typeof ScanRequest.Encoded
export type ScanPageJson = typeof ScanPage.Encoded

export interface WriteOptions {
  readonly consistency?: ConsistencyLevel
  /** Wait until the write is visible to queries (default true). */
  readonly wait?: boolean
}

export interface ReadOptions {
  readonly consistency?: ConsistencyLevel
}

export interface UpsertAnswer {
  readonly ids: ReadonlyArray<string>
  readonly failed: ReadonlyArray<{ readonly id: string; readonly error: string; readonly code: string; readonly field: string }>
}

export interface PromiseClient {
  readonly upsert: (entities: ReadonlyArray<EntityJson>, options?: WriteOptions) => Promise<UpsertAnswer>
  readonly get: (id: string, options?: ReadOptions) => Promise<EntityJson>
  readonly delete: (id: string, options?: WriteOptions) => Promise<void>
  readonly putEdges: (edges: ReadonlyArray<EdgeWriteJson>, options?: WriteOptions) => Promise<void>
  readonly deleteEdges: (edges: ReadonlyArray<EdgeRefJson>, options?: WriteOptions) => Promise<void>
  readonly query: (request: QueryJson, options?: ReadOptions) => Promise<{ readonly results: ReadonlyArray<QueryResultJson> }>
  readonly traverse: (
    request: TraverseJson,
    options?: ReadOptions,
  ) => Promise<{ readonly results: ReadonlyArray<TraverseResultJson> }>
  readonly scan: (request?: ScanJson, options?: ReadOptions) => Promise<ScanPageJson>
  /** Releases the connection pool; the client cannot be used afterwards. */
  readonly close: () => Promise<void>
}

/** Decodes caller input; a failure is InvalidInput naming the field under `prefix`. */
const input =
  <A, I>(schema: Schema.Schema<A, I>, prefix?: string) =>
  (raw: unknown): Effect.Effect<A, InvalidInput> =>
    Schema.decodeUnknown(schema)(raw).pipe(
      Effect.mapError((error) => ErrorMapping.fromParseError(error, prefix === undefined ? undefined : { prefix })),
    )

const entitiesInput = input(Schema.Array(Entity), "entities")
const edgeWritesInput = input(Schema.Array(EdgeWrite), "edges")
const edgeRefsInput = input(Schema.Array(EdgeRef), "edges")
const idInput = input(EntityId, "id")
const encodeEntity = Schema.encode(Entity)
const encodeResults = Schema.encode(Schema.Array(QueryResult))
const encodeTraverse = Schema.encode(Schema.Array(TraverseResult))
const encodePage = Schema.encode(ScanPage)

const writeOptions = (options: WriteOptions | undefined) => ({
  ...(options?.consistency === undefined ? {} : { consistency: options.consistency }),
  ...(options?.wait === undefined ? {} : { wait: options.wait }),
})
const readOptions = (options: ReadOptions | undefined) =>
  options?.consistency === undefined ? {} : { consistency: options.consistency }

export const connect = async (options: AlliDbClient.Options): Promise<PromiseClient> => {
  const runtime = ManagedRuntime.make(AlliDbClient.layer(options))
  const client = await runtime.runPromise(AlliDbClient.AlliDbClient)
  // Effect.orDie on encode: answers come from the server's own schemas, so a
  // failure to encode them back is a bug, not an input problem.
  // Rejects with the error itself (a ClientError with its `_tag`), not
  // Effect's FiberFailure wrapper, so callers can switch on `err._tag`.
  const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
    runtime
      .runPromiseExit(effect)
      .then((exit) => (Exit.isSuccess(exit) ? exit.value : Promise.reject(Cause.squash(exit.cause))))

  return {
    upsert: (entities, o) =>
      run(
        Effect.gen(function* () {
          const decoded = yield* entitiesInput(entities)
          const result = yield* client.Upsert({ entities: decoded, ...writeOptions(o) })
          return {
            ids: result.ids,
            failed: result.failed.map((f) => {
              const body = ErrorMapping.toErrorBody(f.error)
              return { id: f.id, error: body.error, code: body.code, field: f.error.field }
            }),
          }
        }),
      ),
    get: (id, o) =>
      run(
        Effect.flatMap(idInput(id), (decoded) => client.Get({ id: decoded, ...readOptions(o) })).pipe(
          Effect.flatMap((entity) => Effect.orDie(encodeEntity(entity))),
        ),
      ),
    delete: (id, o) => run(Effect.flatMap(idInput(id), (decoded) => client.Delete({ id: decoded, ...writeOptions(o) }))),
    putEdges: (edges, o) =>
      run(Effect.flatMap(edgeWritesInput(edges), (decoded) => client.PutEdges({ edges: decoded, ...writeOptions(o) }))),
    deleteEdges: (edges, o) =>
      run(Effect.flatMap(edgeRefsInput(edges), (decoded) => client.DeleteEdges({ edges: decoded, ...writeOptions(o) }))),
    query: (request, o) =>
      run(
        Effect.flatMap(input(QueryRequest)(request), (decoded) => client.Query({ request: decoded, ...readOptions(o) })).pipe(
          Effect.flatMap((results) => Effect.orDie(encodeResults(results))),
          Effect.map((results) => ({ results })),
        ),
      ),
    traverse: (request, o) =>
      run(
        Effect.flatMap(input(TraverseRequest)(request), (decoded) =>
          client.Traverse({ request: decoded, ...readOptions(o) }),
        ).pipe(
          Effect.flatMap((results) => Effect.orDie(encodeTraverse(results))),
          Effect.map((results) => ({ results })),
        ),
      ),
    scan: (request, o) =>
      run(
        Effect.flatMap(input(ScanRequest)(request ?? {}), (decoded) =>
          client.Scan({ request: decoded, ...readOptions(o) }),
        ).pipe(Effect.flatMap((page) => Effect.orDie(encodePage(page)))),
      ),
    close: () => runtime.dispose(),
  }
}
