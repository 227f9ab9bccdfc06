/**
 * The native JSON shapes (what /v1 speaks and what the embedded and RPC
 * adapters decode with the domain schemas) and the native HTTP /v1 adapter.
 */
import * as Effect from "effect/Effect"
import * as Http from "./Http.js"
import * as S from "./Surface.js"

/** A Doc as a native JSON entity. Values are passed through unchecked: validating is the server's job. */
export const entityJson = (doc: S.Doc): Record<string, unknown> => ({
  id: doc.id,
  ...(doc.type !== undefined ? { type: doc.type } : {}),
  ...(doc.vector !== undefined ? { vector: doc.vector } : {}),
  ...(doc.importance !== undefined ? { importance: doc.importance } : {}),
  ...(doc.metadata !== undefined ? { metadata: doc.metadata } : {}),
  ...(doc.chunks !== undefined ? { chunks: doc.chunks } : {}),
  ...(doc.edges !== undefined ? { edges: doc.edges } : {}),
  ...(doc.time !== undefined ? { created_at: doc.time, updated_at: doc.time } : {}),
})

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/** A native JSON entity (or the encoded domain Entity) as a Doc; empty collections are left out. */
export const docOfJson = (json: unknown): S.Doc => {
  const e = isRecord(json) ? json : {}
  const edges = Array.isArray(e.edges)
    ? e.edges.filter(isRecord).map((x) => ({ to: String(x.to), relation: String(x.relation), weight: Number(x.weight ?? 1) }))
    : []
  const chunks = Array.isArray(e.chunks)
    ? e.chunks.filter(isRecord).map((c) => ({
        id: String(c.id),
        text: String(c.text),
        ...(isRecord(c.metadata) && Object.keys(c.metadata).length > 0
          ? { metadata: c.metadata as Record<string, string> }
          : {}),
      }))
    : []
  const metadata = isRecord(e.metadata) && Object.keys(e.metadata).length > 0 ? e.metadata : undefined
  return {
    id: String(e.id),
    ...(typeof e.type === "string" ? { type: e.type } : {}),
    ...(Array.isArray(e.vector) ? { vector: e.vector as ReadonlyArray<number> } : {}),
    ...(typeof e.importance === "number" ? { importance: e.importance } : {}),
    ...(metadata !== undefined ? { metadata: metadata as Record<string, S.MetadataValue> } : {}),
    ...(chunks.length > 0 ? { chunks } : {}),
    ...(edges.length > 0 ? { edges } : {}),
    ...(typeof e.updated_at === "number" ? { time: e.updated_at } : {}),
  }
}

export const queryJson = (q: S.Query): Record<string, unknown> => ({
  vector: q.vector,
  k: q.k,
  ...(q.expand !== undefined ? { expand: q.expand } : {}),
  ...(q.filter !== undefined ? { filter: q.filter } : {}),
})

export const traverseJson = (t: S.Traverse): Record<string, unknown> => ({
  from: t.from,
  hops: t.hops,
  ...(t.relations !== undefined ? { relations: t.relations } : {}),
  ...(t.direction !== undefined ? { direction: t.direction } : {}),
  ...(t.limit !== undefined ? { limit: t.limit } : {}),
})

const bodyOptions = (options: S.RequestOptions | undefined): Record<string, unknown> => ({
  ...(options?.consistency !== undefined ? { consistency: options.consistency } : {}),
  ...(options?.tenant !== undefined ? { tenant: options.tenant } : {}),
})

const array = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

const surface = (url: string, key: string | undefined): S.Surface => ({
  upsert: (docs, options) =>
    Effect.map(
      Http.call(url, "POST", "/v1/entities", key, { entities: docs.map(entityJson), ...bodyOptions(options) }),
      (answer) =>
        Http.outcome(answer, (body) => ({
          ids: array(body.ids).map(String),
          failed: array(body.failed).map((f) => {
            const item = Http.record(f)
            return {
              id: String(item.id),
              code: S.codeFromName(String(item.code)),
              field: typeof item.field === "string" ? item.field : undefined,
            }
          }),
        })),
    ),
  get: (id) =>
    Effect.map(Http.call(url, "GET", `/v1/entities/${encodeURIComponent(id)}`, key), (answer) =>
      Http.outcome(answer, docOfJson),
    ),
  delete: (id) =>
    Effect.map(Http.call(url, "DELETE", `/v1/entities/${encodeURIComponent(id)}`, key), (answer) =>
      Http.outcome(answer, () => undefined),
    ),
  putEdges: (edges, options) =>
    Effect.map(Http.call(url, "POST", "/v1/edges", key, { edges, ...bodyOptions(options) }), (answer) =>
      Http.outcome(answer, () => undefined),
    ),
  deleteEdges: (edges, options) =>
    Effect.map(Http.call(url, "DELETE", "/v1/edges", key, { edges, ...bodyOptions(options) }), (answer) =>
      Http.outcome(answer, () => undefined),
    ),
  query: (q, options) =>
    Effect.map(
      Http.call(url, "POST", "/v1/query", key, {
        ...queryJson(q),
        ...bodyOptions({ ...options, ...(q.consistency !== undefined ? { consistency: q.consistency } : {}) }),
      }),
      (answer) =>
        Http.outcome(answer, (body) =>
          array(body.results).map((r) => {
            const item = Http.record(r)
            return { id: String(item.id), score: Number(item.score), doc: item.entity === undefined ? undefined : docOfJson(item.entity) }
          }),
        ),
    ),
  traverse: (t, options) =>
    Effect.map(Http.call(url, "POST", "/v1/traverse", key, { ...traverseJson(t), ...bodyOptions(options) }), (answer) =>
      Http.outcome(answer, (body) =>
        array(body.results).map((r) => {
          const item = Http.record(r)
          return { id: String(item.id), depth: Number(item.depth) }
        }),
      ),
    ),
  scan: (request, options) => {
    // A GET names no tenant: the key's tenant is implied.
    if (options?.tenant !== undefined) return Effect.succeed(S.notExpressible("GET /v1/entities takes no tenant"))
    const params = new URLSearchParams()
    if (request.start !== undefined) params.set("start", request.start)
    if (request.end !== undefined) params.set("end", request.end)
    if (request.limit !== undefined) params.set("limit", String(request.limit))
    if (request.pageToken !== undefined) params.set("page_token", request.pageToken)
    return Effect.map(Http.call(url, "GET", `/v1/entities?${params.toString()}`, key), (answer) =>
      Http.outcome(answer, (body) => ({
        docs: array(body.entities).map(docOfJson),
        next: typeof body.next_page_token === "string" ? body.next_page_token : undefined,
      })),
    )
  },
})

export const driver = (url: string, keys: S.Pair, tenants: S.Pair): S.Driver => ({
  name: "native HTTP",
  tenants,
  as: (principal) =>
    surface(url, principal === "t1" ? keys.t1 : principal === "t2" ? keys.t2 : principal === "unknown" ? "no-such-key-0000" : undefined),
  field: (logical) => logical,
  notes: [],
})
