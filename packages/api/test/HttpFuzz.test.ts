/**
 * Fuzzes every native /v1 route with random and mutated bodies, paths and
 * query strings (fast-check, bounded runs): no answer is a 5xx, every error
 * answer is JSON `{error, code}` with a 4xx status, and the server still
 * answers a valid request afterwards. The seed is printed so a failure can
 * be replayed (A1_FUZZ_SEED=<seed>).
 */
import { tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import { call, fakeCoordinator, start } from "./support/TestServer.js"

const KEY = "fuzz-key-000001"

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [k: string]: Json }

const templates: ReadonlyArray<{ readonly method: string; readonly path: string; readonly body: Json }> = [
  {
    method: "POST",
    path: "/v1/entities",
    body: {
      entities: [
        {
          id: "e1",
          type: "doc",
          vector: [0.1, 0.2],
          metadata: { a: 1, b: "x", c: true },
          importance: 0.5,
          chunks: [{ id: "c", text: "t", metadata: { k: "v" } }],
          edges: [{ to: "e2", relation: "r", weight: 0.5 }],
        },
      ],
      consistency: "ONE",
      wait: true,
    },
  },
  { method: "POST", path: "/v1/edges", body: { edges: [{ from: "e1", to: "e2", relation: "r", weight: 0.3 }] } },
  { method: "DELETE", path: "/v1/edges", body: { edges: [{ from: "e1", to: "e2", relation: "r" }] } },
  {
    method: "POST",
    path: "/v1/query",
    body: {
      vector: [0.1, 0.2],
      k: 3,
      ef: 20,
      expand: { hops: 1, factor: 2, relations: ["r"], direction: "both" },
      filter: { type: "doc", metadata: { a: { gte: 0 } } },
      weights: { vector: 1, graph: 0.5 },
      include_vectors: true,
      explain: true,
    },
  },
  { method: "POST", path: "/v1/traverse", body: { from: ["e1"], hops: 2, relations: ["r"], direction: "out", limit: 5 } },
]

/** Every path into a JSON value: the places a mutation can hit. */
const pathsOf = (value: Json, prefix: ReadonlyArray<string | number> = []): Array<ReadonlyArray<string | number>> => {
  const out: Array<ReadonlyArray<string | number>> = [prefix]
  if (Array.isArray(value)) for (const [i, v] of value.entries()) out.push(...pathsOf(v, [...prefix, i]))
  else if (typeof value === "object" && value !== null)
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v as Json, [...prefix, k]))
  return out
}

const setAt = (value: Json, path: ReadonlyArray<string | number>, replacement: Json | undefined): Json | undefined => {
  if (path.length === 0) return replacement
  const [head, ...rest] = path
  if (Array.isArray(value)) {
    const copy = [...value]
    const next = setAt(copy[head as number] as Json, rest, replacement)
    if (next === undefined) copy.splice(head as number, 1)
    else copy[head as number] = next
    return copy
  }
  const copy = { ...(value as Record<string, Json>) }
  const next = setAt(copy[head as string] as Json, rest, replacement)
  if (next === undefined) delete copy[head as string]
  else copy[head as string] = next
  return copy
}

const weird: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue() as fc.Arbitrary<Json>,
  fc.constantFrom<Json>("", "x".repeat(300), -1, 0, 1e308, -0, 2 ** 53, 1.5, [], {}, [[]], "ONE ", "\u0000", null),
)

const mutated = fc
  .tuple(fc.constantFrom(...templates), fc.nat(), weird, fc.boolean())
  .map(([template, pick, replacement, remove]) => {
    const paths = pathsOf(template.body)
    const path = paths[pick % paths.length]!
    return { method: template.method, path: template.path, body: setAt(template.body, path, remove ? undefined : replacement) }
  })

const route = fc.constantFrom(...templates.map(({ method, path }) => ({ method, path })))

const random = fc
  .tuple(route, weird as fc.Arbitrary<Json | undefined>)
  .map(([{ method, path }, body]) => ({ method, path, body }))

const rawText = fc
  .tuple(route, fc.oneof(fc.string(), fc.constantFrom("{", "[1,", "nul", "\"unterminated", "{\"entities\": [}", "")))
  .map(([{ method, path }, text]) => ({ method, path, text }))

const getPath = fc.oneof(
  fc.string({ minLength: 1, maxLength: 300 }).map((s) => `/v1/entities/${encodeURIComponent(s)}`),
  fc
    .record({
      limit: fc.option(fc.oneof(fc.string(), fc.integer().map(String)), { nil: undefined }),
      start: fc.option(fc.string(), { nil: undefined }),
      page_token: fc.option(fc.string(), { nil: undefined }),
      repeat: fc.boolean(),
    })
    .map(({ repeat, ...params }) => {
      const query = new URLSearchParams()
      for (const [k, v] of Object.entries(params)) {
        if (v === undefined) continue
        query.append(k, v)
        if (repeat) query.append(k, v) // a parameter given twice
      }
      return `/v1/entities?${query.toString()}`
    }),
)

describe("native HTTP /v1 fuzz", () => {
  it.live("random and mutated requests never get a 5xx; errors are JSON 4xx", () =>
    Effect.gen(function* () {
      const { layer } = yield* fakeCoordinator
      const server = yield* start(layer, { apiKeys: [{ key: KEY, tenant: tenantId("fuzz") }], maxBatch: 50 })
      const seed = Number(process.env.A1_FUZZ_SEED ?? Date.now() % 2 ** 31)
      console.log(`HttpFuzz seed: ${seed} (replay with A1_FUZZ_SEED=${seed})`)
      const checkAnswer = (label: string, answer: { status: number; body: unknown }) => {
        assert.isBelow(answer.status, 500, `${label}: ${JSON.stringify(answer.body)}`)
        if (answer.status >= 400) {
          const body = answer.body as { error?: unknown; code?: unknown }
          assert.isString(body.error, label)
          assert.isString(body.code, label)
        }
      }
      const request = fc.oneof(
        mutated.map((r) => ({ kind: "json" as const, ...r })),
        random.map((r) => ({ kind: "json" as const, ...r })),
        rawText.map((r) => ({ kind: "raw" as const, ...r })),
        getPath.map((path) => ({ kind: "get" as const, path })),
      )
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(request, async (r) => {
            const answer = await Effect.runPromise(
              r.kind === "get"
                ? call(server.url, "GET", r.path, { key: KEY })
                : r.kind === "raw"
                  ? call(server.url, r.method, r.path, { key: KEY, body: r.text, raw: true })
                  : call(server.url, r.method, r.path, { key: KEY, ...(r.body === undefined ? {} : { body: r.body }) }),
            )
            checkAnswer(`${r.kind} ${"method" in r ? r.method : "GET"} ${r.path}`, answer)
          }),
          { seed, numRuns: 250 },
        ),
      )
      // still healthy
      const ok = yield* call(server.url, "POST", "/v1/entities", { key: KEY, body: { entities: [{ id: "after" }] } })
      assert.strictEqual(ok.status, 200, JSON.stringify(ok.body))
    }).pipe(Effect.scoped),
  )
})
