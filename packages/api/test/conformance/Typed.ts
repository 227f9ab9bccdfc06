/**
 * The two surfaces that take domain values rather than a wire body: the typed
 * RPC client (packages/client, over /rpc of the real process) and the
 * embedded node Layer (the Coordinator in-process, tenant passed directly).
 *
 * Both receive requests as an Effect program would build them: the embedded
 * adapter decodes with the domain schemas (as examples/embedded.ts does), so
 * a bad value is refused by the schema naming its path; the RPC adapter
 * builds payloads unvalidated, so what refuses a bad value is the typed
 * client's own payload encoding (a defect carrying the ParseError, before
 * anything is sent) or the server. The unchecked surface (any msgpack client)
 * sends bad payloads as they are: /rpc refuses them at the HTTP level with
 * the JSON error of the other HTTP surfaces (RpcGuard).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import type { Coordinator } from "@allidb/cluster"
import {
  ClientError,
  ConsistencyLevel,
  EdgeRef,
  EdgeWrite,
  Entity,
  EntityId,
  Expand,
  GraphEdge,
  QueryFilter,
  QueryRequest,
  ScanRequest,
  tenantId,
  TextChunk,
  TraverseRequest,
} from "@allidb/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as AlliDbClient from "../../../client/src/AlliDbClient.js"
import { rpcUrl } from "../../../client/src/AlliDbClient.js"
import { API_KEY_HEADER } from "../../src/Auth.js"
import * as ErrorMapping from "../../src/ErrorMapping.js"
import * as Http from "./Http.js"
import * as Native from "./Native.js"
import * as S from "./Surface.js"

const clientErrorOutcome = (error: ClientError): S.Outcome<never> => {
  const field = error._tag === "InvalidInput" || error._tag === "DimensionMismatch" ? error.field : undefined
  return S.err(S.codeFromName(ErrorMapping.table[error._tag].grpc), error.message, field)
}

const parseErrorOutcome = (error: ParseResult.ParseError, prefix?: string): S.Outcome<never> => {
  const invalid = ErrorMapping.fromParseError(error, prefix === undefined ? undefined : { prefix })
  return S.err("invalid_argument", invalid.message, invalid.field)
}

/** Runs a call; typed failures and client-side ParseError defects become outcomes, anything else is a failure of the test. */
const run = <A, B>(
  effect: Effect.Effect<A, unknown>,
  onOk: (a: A) => B,
  prefix?: string,
): Effect.Effect<S.Outcome<B>> =>
  effect.pipe(
    Effect.map((a) => S.ok(onOk(a))),
    Effect.catchAllCause((cause) => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const error = failure.value
        if (ParseResult.isParseError(error)) return Effect.succeed(parseErrorOutcome(error, prefix))
        if (typeof error === "object" && error !== null && "_tag" in error && (error._tag as string) in ErrorMapping.table) {
          return Effect.succeed(clientErrorOutcome(error as ClientError))
        }
        return Effect.succeed(S.err("unknown", `unexpected failure: ${String(error)}`))
      }
      const defect = Cause.dieOption(cause)
      if (Option.isSome(defect) && ParseResult.isParseError(defect.value)) {
        return Effect.succeed(parseErrorOutcome(defect.value, prefix))
      }
      return Effect.succeed(S.err("unknown", `defect: ${Cause.pretty(cause)}`))
    }),
  )

/** An outcome whose value is itself an outcome (decode, then call) as one outcome. */
const flatten = <A>(outcome: S.Outcome<S.Outcome<A>>): S.Outcome<A> => (outcome._tag === "Ok" ? outcome.value : outcome)

const upsertAnswer = (result: {
  readonly ids: ReadonlyArray<string>
  readonly failed: ReadonlyArray<{ readonly id: string; readonly error: ClientError }>
}): S.Outcome<S.UpsertAnswer> => {
  // The native HTTP rule, applied to typed answers: nothing written means the request was refused.
  const first = result.failed[0]
  if (result.ids.length === 0 && first !== undefined) return clientErrorOutcome(first.error)
  return S.ok({
    ids: result.ids,
    failed: result.failed.map((f) => {
      const outcome = clientErrorOutcome(f.error)
      return { id: f.id, code: outcome._tag === "Err" ? outcome.code : "unknown", field: outcome._tag === "Err" ? outcome.field : undefined }
    }),
  })
}

const encodeEntity = Schema.encodeSync(Entity)
const docOfEntity = (entity: Entity): S.Doc => Native.docOfJson(encodeEntity(entity))

// ---------------------------------------------------------------------------
// Embedded: decode with the domain schemas, call the Coordinator in-process

const UpsertInput = Schema.Struct({ entities: Schema.Array(Entity), consistency: Schema.optional(ConsistencyLevel) })
const EdgesInput = Schema.Struct({ edges: Schema.Array(EdgeWrite), consistency: Schema.optional(ConsistencyLevel) })
const EdgeRefsInput = Schema.Struct({ edges: Schema.Array(EdgeRef), consistency: Schema.optional(ConsistencyLevel) })
const QueryInput = Schema.Struct({ ...QueryRequest.fields, consistency: Schema.optional(ConsistencyLevel) })
const TraverseInput = Schema.Struct({ ...TraverseRequest.fields, consistency: Schema.optional(ConsistencyLevel) })
const decodeId = Schema.decodeUnknown(EntityId)

const consistencyOf = (options: S.RequestOptions | undefined, extra?: string) => {
  const c = extra ?? options?.consistency
  return c === undefined ? {} : { consistency: c }
}

const embeddedSurface = (coordinator: Coordinator.CoordinatorShape, tenantName: string): S.Surface => {
  const tenant = tenantId(tenantName)
  const tenantNamed = (options: S.RequestOptions | undefined) =>
    options?.tenant === undefined ? undefined : S.notExpressible("the embedded Coordinator takes the tenant as an argument")
  return {
    upsert: (docs, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : Effect.flatMap(
            run(
              Schema.decodeUnknown(UpsertInput)({ entities: docs.map(Native.entityJson), ...consistencyOf(options) }),
              (x) => x,
            ),
            (decoded) =>
              decoded._tag !== "Ok"
                ? Effect.succeed(decoded)
                : Effect.map(
                    run(
                      coordinator.upsert(
                        tenant,
                        decoded.value.entities,
                        decoded.value.consistency === undefined ? {} : { consistency: decoded.value.consistency },
                      ),
                      upsertAnswer,
                    ),
                    flatten,
                  ),
          ),
    get: (id) =>
      run(
        Effect.flatMap(decodeId(id), (valid) => coordinator.get(tenant, valid)),
        docOfEntity,
        "id",
      ),
    delete: (id) =>
      run(
        Effect.flatMap(decodeId(id), (valid) => coordinator.remove(tenant, valid)),
        () => undefined,
        "id",
      ),
    putEdges: (edges, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : run(
            Effect.flatMap(Schema.decodeUnknown(EdgesInput)({ edges, ...consistencyOf(options) }), (input) =>
              coordinator.putEdges(tenant, input.edges),
            ),
            () => undefined,
          ),
    deleteEdges: (edges, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : run(
            Effect.flatMap(Schema.decodeUnknown(EdgeRefsInput)({ edges, ...consistencyOf(options) }), (input) =>
              coordinator.removeEdges(tenant, input.edges),
            ),
            () => undefined,
          ),
    query: (q, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : run(
            Effect.flatMap(
              Schema.decodeUnknown(QueryInput)({ ...Native.queryJson(q), ...consistencyOf(options, q.consistency) }),
              ({ consistency, ...fields }) =>
                coordinator.query(
                  tenant,
                  QueryRequest.make(fields, { disableValidation: true }),
                  consistency === undefined ? {} : { consistency },
                ),
            ),
            (results) => results.map((r) => ({ id: r.id, score: r.score, doc: r.entity === undefined ? undefined : docOfEntity(r.entity) })),
          ),
    traverse: (t, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : run(
            Effect.flatMap(
              Schema.decodeUnknown(TraverseInput)({ ...Native.traverseJson(t), ...consistencyOf(options) }),
              ({ consistency, ...fields }) =>
                coordinator.traverse(
                  tenant,
                  TraverseRequest.make(fields, { disableValidation: true }),
                  consistency === undefined ? {} : { consistency },
                ),
            ),
            (results) => results.map((r) => ({ id: r.id, depth: r.depth })),
          ),
    scan: (request, options) =>
      tenantNamed(options) !== undefined
        ? Effect.succeed(tenantNamed(options)!)
        : run(
            Effect.flatMap(
              Schema.decodeUnknown(ScanRequest)({
                ...(request.start !== undefined ? { start: request.start } : {}),
                ...(request.end !== undefined ? { end: request.end } : {}),
                ...(request.limit !== undefined ? { limit: request.limit } : {}),
                ...(request.pageToken !== undefined ? { page_token: request.pageToken } : {}),
              }),
              (valid) => coordinator.scan(tenant, valid),
            ),
            (page) => ({ docs: page.entities.map(docOfEntity), next: page.nextPageToken }),
          ),
  }
}

export const embeddedDriver = (
  coordinator: Coordinator.CoordinatorShape,
  tenants: S.Pair,
): S.Driver => ({
  name: "embedded",
  tenants,
  as: (principal) =>
    principal === "t1"
      ? embeddedSurface(coordinator, tenants.t1)
      : principal === "t2"
        ? embeddedSurface(coordinator, tenants.t2)
        : undefined,
  field: (logical) => logical,
  notes: ["embedded: requests decoded with the domain schemas (as examples/embedded.ts); no keys, so no auth rows"],
})

// ---------------------------------------------------------------------------
// Typed RPC client: unvalidated domain values, the real client and server

const unchecked = { disableValidation: true } as const

const entityOf = (doc: S.Doc): Entity =>
  Entity.make(
    {
      id: doc.id as EntityId,
      ...(doc.type !== undefined ? { type: doc.type } : {}),
      ...(doc.vector !== undefined ? { vector: doc.vector } : {}),
      ...(doc.importance !== undefined ? { importance: doc.importance } : {}),
      ...(doc.metadata !== undefined ? { metadata: doc.metadata } : {}),
      ...(doc.chunks !== undefined ? { chunks: Schema.decodeUnknownSync(Schema.Array(TextChunk))(doc.chunks) } : {}),
      ...(doc.edges !== undefined ? { edges: Schema.decodeUnknownSync(Schema.Array(GraphEdge))(doc.edges) } : {}),
      ...(doc.time !== undefined ? { createdAt: doc.time, updatedAt: doc.time } : {}),
    } as never,
    unchecked,
  )

export const rpcSurface = (client: AlliDbClient.Service): S.Surface => {
  const tenantNamed = (o: S.RequestOptions | undefined) =>
    o?.tenant === undefined ? undefined : S.notExpressible("RPC payloads carry no tenant (the key's tenant is implied)")
  const consistency = (o: S.RequestOptions | undefined, extra?: string) => {
    const c = extra ?? o?.consistency
    return c === undefined ? {} : { consistency: c as ConsistencyLevel }
  }
  return {
    upsert: (docs, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : Effect.map(run(client.Upsert({ entities: docs.map(entityOf), ...consistency(o) }), upsertAnswer), flatten),
    get: (id) => run(client.Get({ id: id as EntityId }), docOfEntity),
    delete: (id) => run(client.Delete({ id: id as EntityId }), () => undefined),
    putEdges: (edges, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : run(
            client.PutEdges({ edges: edges.map((e) => EdgeWrite.make(e as never, unchecked)), ...consistency(o) }),
            () => undefined,
          ),
    deleteEdges: (edges, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : run(client.DeleteEdges({ edges: edges.map((e) => EdgeRef.make(e as never, unchecked)), ...consistency(o) }), () => undefined),
    query: (q, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : run(
            client.Query({
              // Expansion and filters are well-formed in every scenario; vector and k go unchecked.
              request: QueryRequest.make(
                {
                  vector: q.vector,
                  k: q.k,
                  ...(q.expand !== undefined ? { expand: Schema.decodeUnknownSync(Expand)(q.expand) } : {}),
                  ...(q.filter !== undefined ? { filter: Schema.decodeUnknownSync(QueryFilter)(q.filter) } : {}),
                },
                unchecked,
              ),
              ...consistency(o, q.consistency),
            }),
            (results) => results.map((r) => ({ id: r.id, score: r.score, doc: r.entity === undefined ? undefined : docOfEntity(r.entity) })),
          ),
    traverse: (t, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : run(
            client.Traverse({
              request: TraverseRequest.make(
                {
                  from: t.from,
                  hops: t.hops,
                  direction: t.direction ?? "out",
                  ...(t.relations !== undefined ? { relations: t.relations } : {}),
                  ...(t.limit !== undefined ? { limit: t.limit } : {}),
                } as never,
                unchecked,
              ),
              ...consistency(o),
            }),
            (results) => results.map((r) => ({ id: r.id, depth: r.depth })),
          ),
    scan: (request, o) =>
      tenantNamed(o) !== undefined
        ? Effect.succeed(tenantNamed(o)!)
        : run(
            client.Scan({
              request: ScanRequest.make(
                {
                  ...(request.start !== undefined ? { start: request.start } : {}),
                  ...(request.end !== undefined ? { end: request.end } : {}),
                  ...(request.limit !== undefined ? { limit: request.limit } : {}),
                  ...(request.pageToken !== undefined ? { pageToken: request.pageToken } : {}),
                },
                unchecked,
              ),
            }),
            (page) => ({ docs: page.entities.map(docOfEntity), next: page.nextPageToken }),
          ),
  }
}

/** Logical (native) field → the RPC payload's path: requests sit under `request`. */
export const rpcField = (logical: string): string =>
  /^(entities|edges|id|consistency)\b/.test(logical) ? logical : `request.${logical}`

export const rpcDriver = (
  clients: { readonly [K in S.Principal]: AlliDbClient.Service },
  tenants: S.Pair,
  unchecked: S.Surface,
): S.Driver => ({
  name: "typed RPC",
  tenants,
  unchecked,
  as: (principal) => rpcSurface(clients[principal]),
  field: rpcField,
  notes: ["typed RPC: payloads built unvalidated; the client's own encoding refuses schema-invalid values before sending"],
})

// ---------------------------------------------------------------------------
// RPC without the typed client's checks: the same protocol and endpoint with
// `Unknown` payloads, i.e. what any other msgpack client can send. Only the
// server's validation stands between such a payload and the Coordinator.

class UncheckedRpcs extends RpcGroup.make(
  Rpc.make("Upsert", {
    payload: { entities: Schema.Array(Schema.Unknown), consistency: Schema.optional(Schema.Unknown) },
    success: Schema.Unknown,
    error: ClientError,
  }),
  Rpc.make("Query", {
    payload: { request: Schema.Unknown, consistency: Schema.optional(Schema.Unknown) },
    success: Schema.Unknown,
    error: ClientError,
  }),
) {}

/** The HTTP answer behind a failed call, when /rpc refused the body at the HTTP level. */
const refusalOf = (error: unknown): HttpClientResponse.HttpClientResponse | undefined => {
  if (typeof error !== "object" || error === null || (error as { _tag?: unknown })._tag !== "RpcClientError") return undefined
  const cause = (error as { readonly cause?: unknown }).cause
  return HttpClientError.isHttpClientError(cause) && cause._tag === "ResponseError" ? cause.response : undefined
}

/** `run`, plus /rpc's JSON refusals read as the HTTP surfaces' error outcomes. */
const runUnchecked = <A, B>(effect: Effect.Effect<A, unknown>, onOk: (a: A) => B): Effect.Effect<S.Outcome<B>> =>
  Effect.flatMap(Effect.exit(effect), (exit) => {
    const failure = exit._tag === "Failure" ? Cause.failureOption(exit.cause) : Option.none()
    const response = Option.isSome(failure) ? refusalOf(failure.value) : undefined
    if (response === undefined) return run(exit, onOk)
    return Effect.map(Effect.orElseSucceed(response.text, () => ""), (text) => {
      let body: unknown = text
      try {
        body = JSON.parse(text)
      } catch {
        // left as text: errorOutcome reports a refusal that is not JSON
      }
      return Http.errorOutcome({ status: response.status, body })
    })
  })

export const uncheckedRpcSurface = (url: string, apiKey: string) =>
  Effect.gen(function* () {
    const client = yield* RpcClient.make(UncheckedRpcs).pipe(
      Effect.provide(
        RpcClient.layerProtocolHttp({
          url: rpcUrl(url),
          // A refused body is answered as HTTP 4xx JSON (RpcGuard), not as msgpack frames: keep it a failure to read.
          // The cast widens nothing at run time: a non-2xx answer fails the call, which the RPC client reports.
          transformClient: (c) =>
            HttpClient.filterStatusOk(
              HttpClient.mapRequest(c, HttpClientRequest.setHeader(API_KEY_HEADER, apiKey)),
            ) as unknown as typeof c,
        }).pipe(Layer.provide(RpcSerialization.layerMsgPack), Layer.provide(FetchHttpClient.layer)),
      ),
    )
    const surface: S.Surface = {
      upsert: (docs, o) =>
        runUnchecked(
          client.Upsert({
            entities: docs.map(Native.entityJson),
            ...(o?.consistency !== undefined ? { consistency: o.consistency } : {}),
          }),
          (answer) => {
            const { ids, failed } = Schema.decodeUnknownSync(
              Schema.Struct({ ids: Schema.Array(Schema.String), failed: Schema.Array(Schema.Struct({ id: Schema.String, error: ClientError })) }),
            )(answer)
            return upsertAnswer({ ids, failed })
          },
        ).pipe(Effect.map(flatten)),
      query: (q) =>
        runUnchecked(client.Query({ request: Native.queryJson(q) }), (answer) =>
          (answer as ReadonlyArray<{ readonly id: string; readonly score: number }>).map((r) => ({ id: r.id, score: r.score, doc: undefined })),
        ),
    }
    return surface
  })
