/**
 * The two AlliDB-compatible surfaces: REST (`POST /entity`, `/entities/batch`,
 * `/query`, `GET /health`) and gRPC `allidb.AlliDB` through a real
 * @grpc/grpc-js client (PutEntity, BatchPutEntities, Query, RangeScan,
 * HealthCheck). Neither offers get, delete, edge writes or traverse; gRPC's
 * `get` is emulated with a one-id RangeScan (its only read of one entity).
 * The compatible query is always "k × expand_factor candidates + one hop
 * out, no filters": other query shapes are not expressible.
 */
import type * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { EntityId } from "@allidb/core"
import * as ErrorMapping from "../../src/ErrorMapping.js"
import type { GrpcTestClient } from "../GrpcHarness.js"
import * as Http from "./Http.js"
import * as S from "./Surface.js"

const NANOS_PER_MS = 1_000_000

const isEntityId = Schema.is(EntityId)

const array = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

/** Consistency as the compatible REST body spells it (unknown values passed through as given). */
const restConsistency = (level: string): string =>
  level === "ONE" || level === "QUORUM" || level === "ALL" ? `CONSISTENCY_${level}` : level

const compatEntity = (
  doc: S.Doc,
  tenant: string | undefined,
  nanos: (n: number) => number | string,
): Either.Either<Record<string, unknown>, string> => {
  if (doc.metadata !== undefined) return Either.left("compatible entities carry no metadata")
  return Either.right({
    entity_id: doc.id,
    ...(tenant !== undefined ? { tenant_id: tenant } : {}),
    ...(doc.type !== undefined ? { entity_type: doc.type } : {}),
    ...(doc.vector !== undefined ? { embeddings: [{ version: 1, vector: doc.vector }] } : {}),
    ...(doc.edges !== undefined
      ? {
          outgoing_edges: doc.edges.map((e) => ({ from_entity: doc.id, to_entity: e.to, relation: e.relation, weight: e.weight })),
        }
      : {}),
    ...(doc.chunks !== undefined
      ? { chunks: doc.chunks.map((c) => ({ chunk_id: c.id, text: c.text, ...(c.metadata !== undefined ? { metadata: c.metadata } : {}) })) }
      : {}),
    ...(doc.importance !== undefined ? { importance: doc.importance } : {}),
    ...(doc.time !== undefined ? { created_at_nanos: nanos(doc.time), updated_at_nanos: nanos(doc.time) } : {}),
  })
}

/**
 * A compatible entity (REST JSON or gRPC message) as a Doc; empty fields are
 * left out. Over gRPC an importance of 0 is read as "none": proto3 answers 0
 * for a field that is not set and cannot say which it was.
 */
export const docOfCompat = (value: unknown, protoDefaults = false): S.Doc => {
  const e = Http.record(value)
  const embeddings = array(e.embeddings).map(Http.record)
  // The newest embedding is the entity's vector (the server answers only that one).
  const newest = embeddings.reduce<Record<string, unknown> | undefined>(
    (best, x) => (best === undefined || Number(x.version ?? 0) >= Number(best.version ?? 0) ? x : best),
    undefined,
  )
  const edges = array(e.outgoing_edges)
    .map(Http.record)
    .map((x) => ({ to: String(x.to_entity), relation: String(x.relation), weight: Number(x.weight) }))
  const chunks = array(e.chunks)
    .map(Http.record)
    .map((c) => {
      const metadata = Http.record(c.metadata)
      return {
        id: String(c.chunk_id),
        text: String(c.text),
        ...(Object.keys(metadata).length > 0 ? { metadata: metadata as Record<string, string> } : {}),
      }
    })
  const updated = Number(e.updated_at_nanos ?? 0)
  return {
    id: String(e.entity_id),
    ...(typeof e.entity_type === "string" && e.entity_type !== "" ? { type: e.entity_type } : {}),
    ...(newest !== undefined ? { vector: array(newest.vector).map(Number) } : {}),
    ...(typeof e.importance === "number" && !(protoDefaults && e.importance === 0) ? { importance: e.importance } : {}),
    ...(chunks.length > 0 ? { chunks } : {}),
    ...(edges.length > 0 ? { edges } : {}),
    ...(updated > 0 ? { time: Math.round(updated / NANOS_PER_MS) } : {}),
  }
}

/** The compatible query's only shape: one hop out from k × expand_factor candidates. */
const compatQuery = (q: S.Query): Either.Either<{ readonly k: number; readonly factor: number }, string> => {
  const e = q.expand
  if (q.filter !== undefined) return Either.left("the compatible query has no filters")
  if (e === undefined || e.hops !== 1 || (e.direction ?? "out") !== "out" || e.relations !== undefined) {
    return Either.left("the compatible query always expands exactly one hop out, over every relation")
  }
  return Either.right({ k: q.k, factor: e.factor })
}

const batchAnswer = (requested: ReadonlyArray<string>, body: Record<string, unknown>): S.UpsertAnswer => {
  const ids = array(body.entity_ids).map(String)
  const written = new Set(ids)
  // The batch answer counts refusals without naming their fields.
  return {
    ids,
    failed: requested.filter((id) => !written.has(id)).map((id) => ({ id, code: "invalid_argument" as const, field: undefined })),
  }
}

// ---------------------------------------------------------------------------
// REST

const restSurface = (url: string, key: string | undefined): S.Surface => ({
  upsert: (docs, options) => {
    const entities = docs.map((d) => compatEntity(d, options?.tenant, (ms) => ms * NANOS_PER_MS))
    const bad = entities.find(Either.isLeft)
    if (bad !== undefined) return Effect.succeed(S.notExpressible(bad.left))
    const bodies = entities.map((e) => (Either.isRight(e) ? e.right : {}))
    const consistency = options?.consistency === undefined ? {} : { consistency_level: restConsistency(options.consistency) }
    if (bodies.length === 1) {
      return Effect.map(Http.call(url, "POST", "/entity", key, { entity: bodies[0], ...consistency }), (answer) =>
        Http.outcome(answer, (body) => ({ ids: [String(body.entity_id)], failed: [] })),
      )
    }
    return Effect.map(Http.call(url, "POST", "/entities/batch", key, { entities: bodies, ...consistency }), (answer) =>
      Http.outcome(answer, (body) => batchAnswer(docs.map((d) => d.id), body)),
    )
  },
  query: (q, options) => {
    if (options?.tenant !== undefined) return Effect.succeed(S.notExpressible("the compatible query names no tenant"))
    const shape = compatQuery(q)
    if (Either.isLeft(shape)) return Effect.succeed(S.notExpressible(shape.left))
    return Effect.map(
      Http.call(url, "POST", "/query", key, {
        query_vector: q.vector,
        k: shape.right.k,
        expand_factor: shape.right.factor,
        ...(q.consistency !== undefined ? { consistency_level: restConsistency(q.consistency) } : {}),
      }),
      (answer) =>
        Http.outcome(answer, (body) =>
          array(body.results).map((r) => {
            const item = Http.record(r)
            return { id: String(item.entity_id), score: Number(item.score), doc: item.entity == null ? undefined : docOfCompat(item.entity) }
          }),
        ),
    )
  },
  health: () =>
    Effect.map(Http.call(url, "GET", "/health", undefined), (answer) => Http.outcome(answer, (body) => body.healthy === true)),
})

/** Native field spelling → the compatible body's. */
const compatField = (single: boolean) => (logical: string): string =>
  logical
    .replace(/^entities\[0\]/, single ? "entity" : "entities[0]")
    .replace(/\.id$/, ".entity_id")
    .replace(/\.vector$/, ".embeddings[0].vector")
    .replace(/\.vector\[/, ".embeddings[0].vector[")
    .replace(/^vector/, "query_vector")
    .replace(/^consistency$/, "consistency_level")

export const restDriver = (url: string, keys: S.Pair, tenants: S.Pair): S.Driver => ({
  name: "compat REST",
  tenants,
  as: (principal) =>
    restSurface(url, principal === "t1" ? keys.t1 : principal === "t2" ? keys.t2 : principal === "unknown" ? "no-such-key-0000" : undefined),
  field: compatField(true),
  notes: ["compat REST: query = k × expand_factor candidates + 1 hop out; one entity → POST /entity, more → /entities/batch"],
})

// ---------------------------------------------------------------------------
// gRPC

const CODE_NAMES = new Map(Object.entries(ErrorMapping.grpcCodeNumber).map(([name, n]) => [n, name]))

const grpcOutcome = <A>(
  answer: Either.Either<Record<string, unknown>, grpc.ServiceError>,
  onOk: (message: Record<string, unknown>) => A,
): S.Outcome<A> => {
  if (Either.isRight(answer)) return S.ok(onOk(answer.right))
  const error = answer.left
  return S.err(S.codeFromName(CODE_NAMES.get(error.code) ?? "UNKNOWN"), error.details, S.fieldOfMessage(error.details))
}

/** proto3 cannot send an unknown enum name; an unknown level goes as a number the server does not know. */
const grpcConsistency = (level: string): string | number =>
  level === "ONE" || level === "QUORUM" || level === "ALL" ? level : 7

const grpcSurface = (client: GrpcTestClient, key: string | undefined): S.Surface => {
  const callOptions = key === undefined ? {} : { apiKey: key }
  const nanos = (ms: number) => (BigInt(ms) * BigInt(NANOS_PER_MS)).toString()
  const scanPage = (request: S.Scan, tenant: string | undefined) =>
    client.call(
      "RangeScan",
      {
        ...(tenant !== undefined ? { tenant_id: tenant } : {}),
        ...(request.start !== undefined ? { start_key: request.start } : {}),
        ...(request.end !== undefined ? { end_key: request.end } : {}),
        ...(request.limit !== undefined ? { limit: request.limit } : {}),
        ...(request.pageToken !== undefined ? { page_token: request.pageToken } : {}),
      },
      callOptions,
    )
  return {
    upsert: (docs, options) => {
      const entities = docs.map((d) => compatEntity(d, options?.tenant, nanos))
      const bad = entities.find(Either.isLeft)
      if (bad !== undefined) return Effect.succeed(S.notExpressible(bad.left))
      if (docs.some((d) => d.vector?.some((x) => typeof x !== "number"))) {
        return Effect.succeed(S.notExpressible("a protobuf float field cannot carry a string or null"))
      }
      const messages = entities.map((e) => (Either.isRight(e) ? e.right : {}))
      const consistency = options?.consistency === undefined ? {} : { consistency_level: grpcConsistency(options.consistency) }
      if (messages.length === 1) {
        return Effect.map(client.call("PutEntity", { entity: messages[0], ...consistency }, callOptions), (answer) =>
          grpcOutcome(answer, (m) => ({ ids: [String(m.entity_id)], failed: [] })),
        )
      }
      return Effect.map(client.call("BatchPutEntities", { entities: messages, ...consistency }, callOptions), (answer) =>
        grpcOutcome(answer, (m) => batchAnswer(docs.map((d) => d.id), m)),
      )
    },
    get: (id) =>
      !isEntityId(id)
        ? Effect.succeed(S.notExpressible("gRPC has no Get; a RangeScan key is not checked as an entity id"))
        : // No Get RPC: a RangeScan over [id, id + "\0") is the one-entity read gRPC clients have.
      Effect.map(scanPage({ start: id, end: `${id}\u0000`, limit: 1 }, undefined), (answer) => {
        const page = grpcOutcome(answer, (m) => array(m.entities).map((e) => docOfCompat(e, true)))
        if (page._tag !== "Ok") return page
        const doc = page.value[0]
        return doc === undefined || doc.id !== id ? S.err("not_found", `entity ${JSON.stringify(id)} not found (empty RangeScan)`) : S.ok(doc)
      }),
    query: (q, options) => {
      if (options?.tenant !== undefined) return Effect.succeed(S.notExpressible("the compatible query names no tenant"))
      const shape = compatQuery(q)
      if (Either.isLeft(shape)) return Effect.succeed(S.notExpressible(shape.left))
      if (shape.right.k === 0) return Effect.succeed(S.notExpressible("proto3 cannot tell k = 0 from unset (default 10)"))
      if (q.vector.some((x) => typeof x !== "number")) {
        return Effect.succeed(S.notExpressible("a protobuf float field cannot carry a string or null"))
      }
      return Effect.map(
        client.call(
          "Query",
          {
            query_vector: q.vector,
            k: shape.right.k,
            expand_factor: shape.right.factor,
            ...(q.consistency !== undefined ? { consistency_level: grpcConsistency(q.consistency) } : {}),
          },
          callOptions,
        ),
        (answer) =>
          grpcOutcome(answer, (m) =>
            array(m.results).map((r) => {
              const item = Http.record(r)
              return {
                id: String(item.entity_id),
                score: Number(item.score),
                doc: item.entity == null ? undefined : docOfCompat(item.entity, true),
              }
            }),
          ),
      )
    },
    scan: (request, options) => {
      if (request.limit === 0) return Effect.succeed(S.notExpressible("proto3 cannot tell limit = 0 from unset (default 100)"))
      return Effect.map(scanPage(request, options?.tenant), (answer) =>
        grpcOutcome(answer, (m) => ({
          docs: array(m.entities).map((e) => docOfCompat(e, true)),
          next: typeof m.next_page_token === "string" && m.next_page_token !== "" ? m.next_page_token : undefined,
        })),
      )
    },
    health: () => Effect.map(client.call("HealthCheck", {}), (answer) => grpcOutcome(answer, (m) => m.healthy === true)),
  }
}

export const grpcDriver = (client: GrpcTestClient, keys: S.Pair, tenants: S.Pair): S.Driver => ({
  name: "gRPC",
  tenants,
  as: (principal) =>
    grpcSurface(client, principal === "t1" ? keys.t1 : principal === "t2" ? keys.t2 : principal === "unknown" ? "no-such-key-0000" : undefined),
  field: (logical) => compatField(true)(logical).replace(/^limit$/, "limit"),
  notes: [
    "gRPC: get = RangeScan [id, id+\\0) limit 1; unknown consistency sent as enum value 7; importance 0 read as none (proto3); query as compat REST",
  ],
})
