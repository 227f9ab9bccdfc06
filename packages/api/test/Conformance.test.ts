/**
 * One conformance suite, five surfaces: native HTTP /v1, AlliDB-compatible
 * REST, gRPC (a real @grpc/grpc-js client) and the typed RPC client against
 * ONE real `allidbd` child process, and the embedded node Layer in-process.
 * Every scenario is written once against the `Surface` adapter interface
 * (conformance/Surface.ts) and runs on every surface in order; each surface
 * works in its own pair of tenants (t1, t2) holding the same ids, so
 * rankings can be compared across surfaces id for id and score for score.
 * Operations a surface does not offer, or requests it cannot express, are
 * recorded as n.a. with the reason; the matrix is printed at the end.
 *
 * Scenarios run in file order and build on each other's data (the dataset
 * first, then reads, queries, graph writes, deletes), identically on every
 * surface that offers the operations involved; the compatible surfaces,
 * which cannot write edges or delete, are only compared where their tenant
 * content is still the same as everyone else's.
 */
import * as grpc from "@grpc/grpc-js"
import { assert, describe, layer } from "@effect/vitest"
import * as fs from "node:fs"
import { AlliDb } from "allidbd"
import { Coordinator } from "@allidb/cluster"
import { afterAll } from "vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Allidbd from "../../../apps/allidbd/test/support/Allidbd.js"
import * as AlliDbClient from "../../client/src/AlliDbClient.js"
import * as Grpc from "../src/Grpc.js"
import * as Compatible from "./conformance/Compatible.js"
import * as Native from "./conformance/Native.js"
import * as R from "./conformance/Runner.js"
import type * as S from "./conformance/Surface.js"
import * as Typed from "./conformance/Typed.js"
import { GrpcTestClient } from "./GrpcHarness.js"

// ---------------------------------------------------------------------------
// Setup: one allidbd with a key pair per wire surface, one embedded node

const WIRE = ["http", "rest", "grpc", "rpc"] as const
const keysOf = (surface: string): S.Pair => ({ t1: `conf-${surface}-key-1-0123456789`, t2: `conf-${surface}-key-2-0123456789` })
const tenantsOf = (surface: string): S.Pair => ({ t1: `${surface}-t1`, t2: `${surface}-t2` })

class Drivers extends Context.Tag("conformance/Drivers")<Drivers, ReadonlyArray<S.Driver>>() {}

const rpcClient = (url: string, apiKey: string | undefined) =>
  Effect.map(Layer.build(AlliDbClient.layer({ url, apiKey })), Context.get(AlliDbClient.AlliDbClient))

const DriversLive = Layer.scoped(
  Drivers,
  Effect.gen(function* () {
    const bindings = WIRE.flatMap((s) => [`${keysOf(s).t1}=${tenantsOf(s).t1}`, `${keysOf(s).t2}=${tenantsOf(s).t2}`])
    const node = yield* Allidbd.start({ env: { ALLIDB_API_KEYS: bindings.join(",") } })
    if (node.grpcAddress === undefined) return yield* Effect.dieMessage("allidbd named no gRPC address")
    const { client: GrpcClient } = Grpc.loadService()
    const grpcClient = yield* Effect.acquireRelease(
      Effect.sync(() => new GrpcClient(node.grpcAddress as string, grpc.credentials.createInsecure())),
      (c) => Effect.sync(() => c.close()),
    )
    const rpcKeys = keysOf("rpc")
    const rpc = {
      t1: yield* rpcClient(node.httpUrl, rpcKeys.t1),
      t2: yield* rpcClient(node.httpUrl, rpcKeys.t2),
      none: yield* rpcClient(node.httpUrl, undefined),
      unknown: yield* rpcClient(node.httpUrl, "no-such-key-0000"),
    }
    const dataDir = Allidbd.makeTempDir("allidb-conformance-embedded-")
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
    const embedded = yield* Layer.build(AlliDb.layer(AlliDb.config({ dataDir }))).pipe(
      Logger.withMinimumLogLevel(LogLevel.Error),
    )
    return [
      Native.driver(node.httpUrl, keysOf("http"), tenantsOf("http")),
      Compatible.restDriver(node.httpUrl, keysOf("rest"), tenantsOf("rest")),
      Compatible.grpcDriver(new GrpcTestClient(grpcClient), keysOf("grpc"), tenantsOf("grpc")),
      Typed.rpcDriver(rpc, tenantsOf("rpc"), yield* Typed.uncheckedRpcSurface(node.httpUrl, rpcKeys.t1)),
      Typed.embeddedDriver(Context.get(embedded, Coordinator.Coordinator), { t1: "embedded-t1", t2: "embedded-t2" }),
    ]
  }),
)

const matrix = new R.Matrix()
const notes: Array<string> = []

afterAll(() => {
  console.log(`\nConformance matrix (scenario × surface)\n${matrix.render(notes)}\n`)
})

/** Runs a scenario on every surface; the test fails with every failing cell. */
const run = (name: string, body: (driver: S.Driver) => R.Step<unknown>) =>
  Effect.gen(function* () {
    const drivers = yield* Drivers
    if (notes.length === 0) notes.push(...drivers.flatMap((d) => d.notes))
    const failures = yield* R.scenario(matrix, drivers, name, body)
    assert.deepStrictEqual(failures, [], failures.join("\n"))
  })

// ---------------------------------------------------------------------------
// Data: dimension 4, values exact in float32 (gRPC sends floats), fixed
// timestamps so scores do not depend on when each surface wrote

/** A fixed past time, a multiple of 1024 ms so its nanoseconds are an exact double. */
const T0 = Math.floor((Date.now() - 3_600_000) / 1024) * 1024

const dataset: ReadonlyArray<S.Doc> = [
  {
    id: "a",
    type: "doc",
    vector: [1, 0, 0, 0],
    importance: 0.5,
    chunks: [{ id: "a#1", text: "alpha", metadata: { page: "1" } }],
    edges: [{ to: "c", relation: "cites", weight: 0.5 }],
    time: T0,
  },
  { id: "b", type: "doc", vector: [0.75, 0.5, 0, 0], importance: 0.25, edges: [{ to: "d", relation: "mentions", weight: 0.75 }], time: T0 },
  { id: "c", type: "note", vector: [0, 0, 1, 0], importance: 0.75, edges: [{ to: "e", relation: "cites", weight: 1 }], time: T0 },
  // Graph-only: reached only through b's "mentions" edge.
  { id: "d", type: "person", importance: 0.25, time: T0 },
  { id: "e", type: "note", vector: [0, 0.5, 0.5, 0.5], importance: 0.5, time: T0 },
  { id: "f", type: "doc", vector: [0.5, 0, 0, 1], importance: 0.5, time: T0 },
  { id: "g", type: "note", vector: [0, 0, 0, 1], importance: 0.25, edges: [{ to: "a", relation: "cites", weight: 0.25 }], time: T0 },
]
const single: S.Doc = { id: "h", type: "tag", importance: 0.5, time: T0 }
const byId = new Map([...dataset, single].map((d) => [d.id, d]))

const Q1: S.Query = { vector: [1, 0.25, 0, 0], k: 10, expand: { hops: 1, factor: 1 } }

const ids = (xs: ReadonlyArray<{ readonly id: string }>) => xs.map((x) => x.id)
const ranked = (hits: ReadonlyArray<S.Hit>) => hits.map((h) => ({ id: h.id, score: h.score }))

const sortedDesc = (hits: ReadonlyArray<S.Hit>) =>
  R.check(
    hits.every((h, i) => i === 0 || hits[i - 1]!.score >= h.score) && new Set(ids(hits)).size === hits.length,
    () => `results not distinct in descending score order: ${JSON.stringify(ranked(hits))}`,
  )

/** A read entity compared with what was written (ids only where the surface answers no entity). */
const sameDoc = (read: S.Doc, written: S.Doc) =>
  R.check(R.approxEqual(read, written), () => `read ${JSON.stringify(read)}, wrote ${JSON.stringify(written)}`)

layer(DriversLive, { timeout: "60 seconds", excludeTestServices: true })("conformance across five surfaces", (it) => {
  describe("writes and reads", () => {
    it.effect("upsert a batch", () =>
      run("upsert a batch", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const answer = yield* R.expectOk("upsert", (yield* R.op(t1, "upsert"))(dataset))
          yield* R.check(answer.failed.length === 0, () => `refused: ${JSON.stringify(answer.failed)}`)
          yield* R.check(R.approxEqual(answer.ids, ids(dataset)), () => `ids ${JSON.stringify(answer.ids)}`)
          return answer
        }),
      ),
    )

    it.effect("upsert one entity", () =>
      run("upsert one entity", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          return yield* R.expectOk("upsert", (yield* R.op(t1, "upsert"))([single]))
        }),
      ),
    )

    it.effect("a batch with one refused entity writes the rest", () =>
      run("batch: one refused, the rest written", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const answer = yield* R.expectOk(
            "upsert",
            (yield* R.op(t1, "upsert"))([
              { id: "p-ok", type: "partial", importance: 0.5, time: T0 },
              { id: "p-bad", vector: [1, 0, 0], importance: 0.5, time: T0 },
            ]),
          )
          const refused = answer.failed.map((f) => ({ id: f.id, code: f.code }))
          yield* R.check(
            R.approxEqual(answer.ids, ["p-ok"]) && R.approxEqual(refused, [{ id: "p-bad", code: "invalid_argument" }]),
            () => `answer ${JSON.stringify(answer)}`,
          )
          // Where the surface names the refused field, it is the request's path to the vector.
          const field = answer.failed[0]?.field
          yield* R.check(field === undefined || field === d.field("entities[1].vector"), () => `field ${field}`)
          if (t1.get !== undefined) {
            yield* R.expectOk("get p-ok", t1.get("p-ok"))
            yield* R.expectErr("get p-bad", t1.get("p-bad"), "not_found")
          }
          return { ids: answer.ids, refused }
        }),
      ),
    )

    it.effect("every consistency level is accepted", () =>
      run("consistency ONE / QUORUM / ALL", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const upsert = yield* R.op(t1, "upsert")
          const query = yield* R.op(t1, "query")
          const seen: Array<ReadonlyArray<string>> = []
          for (const consistency of ["ONE", "QUORUM", "ALL"]) {
            yield* R.expectOk(`upsert ${consistency}`, upsert([{ id: `cl-${consistency}`, type: "cl", time: T0 }], { consistency }))
            seen.push(ids(yield* R.expectOk(`query ${consistency}`, query({ ...Q1, consistency }))))
          }
          yield* R.check(seen.every((x) => R.approxEqual(x, seen[0])), () => `answers differ by level: ${JSON.stringify(seen)}`)
          return seen
        }),
      ),
    )

    it.effect("get after upsert", () =>
      run("get after upsert", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const get = yield* R.op(t1, "get")
          const read: Array<S.Doc> = []
          for (const written of byId.values()) {
            const doc = yield* R.expectOk(`get ${written.id}`, get(written.id))
            yield* sameDoc(doc, written)
            read.push(doc)
          }
          return read
        }),
      ),
    )

    it.effect("get a missing id → not_found", () =>
      run("get missing → not_found", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          yield* R.expectErr("get", (yield* R.op(t1, "get"))("no-such-id"), "not_found")
        }),
      ),
    )
  })

  describe("queries", () => {
    it.effect("query with 1-hop expansion (the compatible query's shape)", () =>
      run("query: 1-hop expansion", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const hits = yield* R.expectOk("query", (yield* R.op(t1, "query"))(Q1))
          yield* sortedDesc(hits)
          // Every vector is a candidate (k × 1 ≥ 6); d has no vector and is reached only through b's edge.
          yield* R.check(
            R.approxEqual([...ids(hits)].sort(), ["a", "b", "c", "d", "e", "f", "g"]) && hits[0]?.id === "a",
            () => `ids ${JSON.stringify(ids(hits))}`,
          )
          return ranked(hits)
        }),
      ),
    )

    it.effect("query: expansion restricted by relation and direction", () =>
      run("query: expansion relations/direction", (d) =>
        Effect.gen(function* () {
          const query = yield* R.op(yield* R.as(d, "t1"), "query")
          const mentions = yield* R.expectOk(
            "query mentions",
            query({ ...Q1, expand: { hops: 2, factor: 1, relations: ["mentions"], direction: "out" } }),
          )
          const cites = yield* R.expectOk(
            "query cites",
            query({ ...Q1, expand: { hops: 2, factor: 1, relations: ["cites"], direction: "out" } }),
          )
          const incoming = yield* R.expectOk(
            "query in",
            query({ ...Q1, expand: { hops: 2, factor: 1, relations: ["mentions"], direction: "in" } }),
          )
          yield* R.check(ids(mentions).includes("d"), () => `"mentions" expansion misses d: ${JSON.stringify(ids(mentions))}`)
          yield* R.check(!ids(cites).includes("d"), () => `"cites" expansion reaches d: ${JSON.stringify(ids(cites))}`)
          yield* R.check(!ids(incoming).includes("d"), () => `incoming expansion reaches d: ${JSON.stringify(ids(incoming))}`)
          return [ranked(mentions), ranked(cites), ranked(incoming)]
        }),
      ),
    )

    it.effect("query with a type filter", () =>
      run("query: type filter", (d) =>
        Effect.gen(function* () {
          const query = yield* R.op(yield* R.as(d, "t1"), "query")
          const hits = yield* R.expectOk("query", query({ vector: [1, 0.25, 0, 0], k: 3, filter: { type: "note" } }))
          yield* sortedDesc(hits)
          yield* R.check(
            R.approxEqual([...ids(hits)].sort(), ["c", "e", "g"]),
            () => `a type filter on "note" answered ${JSON.stringify(ids(hits))}`,
          )
          return ranked(hits)
        }),
      ),
    )

    it.effect("query with metadata filters", () =>
      run("query: metadata filter", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const query = yield* R.op(t1, "query")
          yield* R.expectOk(
            "upsert with metadata",
            (yield* R.op(t1, "upsert"))([
              { id: "m1", vector: [0.5, 0.5, 0.5, 0], importance: 0.5, metadata: { lang: "de", year: 2021 }, time: T0 },
              { id: "m2", vector: [0.5, 0.5, 0, 0.5], importance: 0.5, metadata: { lang: "en", year: 2019 }, time: T0 },
              { id: "m3", vector: [0.5, 0, 0.5, 0.5], importance: 0.5, metadata: { lang: "de", year: 2018 }, time: T0 },
            ]),
          )
          const vector = [0.5, 0.5, 0.5, 0.5]
          const de = yield* R.expectOk("query lang=de", query({ vector, k: 5, filter: { metadata: { lang: "de" } } }))
          const recent = yield* R.expectOk("query year≥2020", query({ vector, k: 5, filter: { metadata: { year: { gte: 2020 } } } }))
          yield* R.check(R.approxEqual([...ids(de)].sort(), ["m1", "m3"]), () => `lang=de answered ${JSON.stringify(ids(de))}`)
          yield* R.check(R.approxEqual(ids(recent), ["m1"]), () => `year≥2020 answered ${JSON.stringify(ids(recent))}`)
          return [ranked(de), ranked(recent)]
        }),
      ),
    )
  })

  describe("graph", () => {
    it.effect("traverse", () =>
      run("traverse", (d) =>
        Effect.gen(function* () {
          const traverse = yield* R.op(yield* R.as(d, "t1"), "traverse")
          const out = yield* R.expectOk("traverse out", traverse({ from: ["g"], hops: 3, relations: ["cites"] }))
          const back = yield* R.expectOk("traverse in", traverse({ from: ["e"], hops: 2, direction: "in" }))
          const limited = yield* R.expectOk("traverse limit", traverse({ from: ["g"], hops: 3, limit: 1 }))
          yield* R.check(
            R.approxEqual(out, [
              { id: "a", depth: 1 },
              { id: "c", depth: 2 },
              { id: "e", depth: 3 },
            ]),
            () => `g -cites-> 3 hops: ${JSON.stringify(out)}`,
          )
          yield* R.check(
            R.approxEqual(back, [
              { id: "c", depth: 1 },
              { id: "a", depth: 2 },
            ]),
            () => `e <- 2 hops: ${JSON.stringify(back)}`,
          )
          yield* R.check(R.approxEqual(limited, [{ id: "a", depth: 1 }]), () => `limit 1: ${JSON.stringify(limited)}`)
          return [out, back, limited]
        }),
      ),
    )

    it.effect("edges added and removed are seen by traverse and query expansion", () =>
      run("edges: add/remove → traverse, expansion", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const [putEdges, deleteEdges, traverse, query] = [
            yield* R.op(t1, "putEdges"),
            yield* R.op(t1, "deleteEdges"),
            yield* R.op(t1, "traverse"),
            yield* R.op(t1, "query"),
          ]
          const expandLinks: S.Query = { vector: [0.5, 0, 0, 1], k: 10, expand: { hops: 1, factor: 1, relations: ["links"] } }
          yield* R.expectOk("putEdges", putEdges([{ from: "f", to: "h", relation: "links", weight: 0.5 }]))
          const reached = yield* R.expectOk("traverse", traverse({ from: ["f"], hops: 1, relations: ["links"] }))
          const expanded = yield* R.expectOk("query", query(expandLinks))
          yield* R.expectOk("deleteEdges", deleteEdges([{ from: "f", to: "h", relation: "links" }]))
          const gone = yield* R.expectOk("traverse after delete", traverse({ from: ["f"], hops: 1, relations: ["links"] }))
          const unexpanded = yield* R.expectOk("query after delete", query(expandLinks))
          yield* R.check(R.approxEqual(reached, [{ id: "h", depth: 1 }]), () => `traverse after add: ${JSON.stringify(reached)}`)
          yield* R.check(ids(expanded).includes("h"), () => `expansion after add misses h: ${JSON.stringify(ids(expanded))}`)
          yield* R.check(gone.length === 0, () => `traverse after delete: ${JSON.stringify(gone)}`)
          yield* R.check(!ids(unexpanded).includes("h"), () => `expansion after delete reaches h: ${JSON.stringify(ids(unexpanded))}`)
          return [reached, ranked(expanded), ranked(unexpanded)]
        }),
      ),
    )
  })

  describe("overwrite, delete, paging", () => {
    it.effect("overwrite", () =>
      run("overwrite then get", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const upsert = yield* R.op(t1, "upsert")
          const get = yield* R.op(t1, "get")
          const first: S.Doc = {
            id: "ow",
            type: "v1",
            vector: [0, 0.125, 0, 0],
            importance: 0.25,
            edges: [{ to: "a", relation: "r1", weight: 1 }],
            time: T0,
          }
          const second: S.Doc = { id: "ow", type: "v2", vector: [0, 0.25, 0.125, 0], importance: 0.75, time: T0 + 1024 }
          yield* R.expectOk("first upsert", upsert([first]))
          yield* R.expectOk("second upsert", upsert([second]))
          const read = yield* R.expectOk("get", get("ow"))
          yield* R.check(
            read.type === "v2" && R.approxEqual(read.vector, second.vector) && read.importance === 0.75 && read.time === T0 + 1024,
            () => `after overwrite: ${JSON.stringify(read)}`,
          )
          return read
        }),
      ),
    )

    it.effect("delete then get → not_found", () =>
      run("delete then get → not_found", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const [upsert, remove, get, query] = [
            yield* R.op(t1, "upsert"),
            yield* R.op(t1, "delete"),
            yield* R.op(t1, "get"),
            yield* R.op(t1, "query"),
          ]
          const doomed: S.Doc = { id: "del-1", vector: [0, 0, 0.25, 1], importance: 0.5, time: T0 }
          yield* R.expectOk("upsert", upsert([doomed]))
          yield* R.expectOk("delete", remove("del-1"))
          yield* R.expectErr("get after delete", get("del-1"), "not_found")
          yield* R.expectErr("delete again", remove("del-1"), "not_found")
          const hits = yield* R.expectOk("query", query({ vector: [0, 0, 0.25, 1], k: 20 }))
          yield* R.check(!ids(hits).includes("del-1"), () => `a deleted entity is still ranked: ${JSON.stringify(ids(hits))}`)
          return "deleted"
        }),
      ),
    )

    it.effect("range scan paging", () =>
      run("range scan paging", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const scan = yield* R.op(t1, "scan")
          const upsert = yield* R.op(t1, "upsert")
          const written = Array.from({ length: 7 }, (_, i) => `s-${i}`)
          yield* R.expectOk("upsert", upsert(written.map((id) => ({ id, type: "scan", time: T0 }))))
          const pages: Array<ReadonlyArray<string>> = []
          let token: string | undefined
          for (let i = 0; i < 10; i++) {
            const page = yield* R.expectOk(
              `page ${i}`,
              scan({ start: "s-", end: "s.", limit: 2, ...(token !== undefined ? { pageToken: token } : {}) }),
            )
            pages.push(ids(page.docs))
            token = page.next
            if (token === undefined) break
          }
          const all = pages.flat()
          yield* R.check(
            R.approxEqual(all, written) && pages.every((p) => p.length <= 2) && pages.length >= 4,
            () => `pages ${JSON.stringify(pages)}`,
          )
          const whole = yield* R.expectOk("unbounded scan", scan({}))
          const everything = ids(whole.docs)
          yield* R.check(
            everything.every((id, i) => i === 0 || everything[i - 1]! < id) && written.every((id) => everything.includes(id)),
            () => `a scan of everything is not in id order or misses ids: ${JSON.stringify(everything)}`,
          )
          return all
        }),
      ),
    )
  })

  describe("auth and tenants", () => {
    /** Valid calls of every operation the surface offers. */
    const everyOp = (s: S.Surface): ReadonlyArray<readonly [string, Effect.Effect<S.Outcome<unknown>>]> =>
      [
        ["upsert", s.upsert?.([{ id: "auth-x", time: T0 }])],
        ["get", s.get?.("a")],
        ["delete", s.delete?.("a")],
        ["putEdges", s.putEdges?.([{ from: "a", to: "b", relation: "auth" }])],
        ["deleteEdges", s.deleteEdges?.([{ from: "a", to: "b", relation: "auth" }])],
        ["query", s.query?.(Q1)],
        ["traverse", s.traverse?.({ from: ["a"], hops: 1 })],
        ["scan", s.scan?.({})],
      ].flatMap(([name, call]) => (call === undefined ? [] : [[name as string, call as Effect.Effect<S.Outcome<unknown>>] as const]))

    for (const principal of ["none", "unknown"] as const) {
      it.effect(`${principal === "none" ? "no key" : "an unknown key"} → unauthenticated`, () =>
        run(`auth: ${principal === "none" ? "no key" : "unknown key"} → unauthenticated`, (d) =>
          Effect.gen(function* () {
            const s = yield* R.as(d, principal)
            const calls = everyOp(s)
            for (const [name, call] of calls) yield* R.expectErr(name, call, "unauthenticated")
            return "unauthenticated"
          }),
        ),
      )
    }

    it.effect("health needs no key", () =>
      run("health without a key", (d) =>
        Effect.gen(function* () {
          const s = yield* R.as(d, "none")
          const healthy = yield* R.expectOk("health", (yield* R.op(s, "health"))())
          yield* R.check(healthy, () => "not healthy")
          return healthy
        }),
      ),
    )

    it.effect("a body naming the other tenant → permission_denied", () =>
      run("cross-tenant: body names t1 → permission_denied", (d) =>
        Effect.gen(function* () {
          const t2 = yield* R.as(d, "t2")
          const named = { tenant: d.tenants.t1 }
          const attempts: ReadonlyArray<readonly [string, Effect.Effect<S.Outcome<unknown>> | undefined]> = [
            ["upsert", t2.upsert?.([{ id: "a", time: T0 }], named)],
            ["putEdges", t2.putEdges?.([{ from: "a", to: "b", relation: "x" }], named)],
            ["query", t2.query?.(Q1, named)],
            ["traverse", t2.traverse?.({ from: ["a"], hops: 1 }, named)],
            ["scan", t2.scan?.({}, named)],
          ]
          const refused: Array<string> = []
          for (const [name, attempt] of attempts) {
            if (attempt === undefined) continue
            const result = yield* Effect.either(R.expectErr(name, attempt, "permission_denied"))
            if (result._tag === "Right") refused.push(name)
            else if (result.left._tag === "Mismatch") return yield* result.left
          }
          if (refused.length === 0) return yield* new R.NotApplicable({ reason: "no request names a tenant" })
          return "permission_denied"
        }),
      ),
    )

    it.effect("the other tenant's data is invisible to t2", () =>
      run("cross-tenant: t1's data invisible to t2", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const t2 = yield* R.as(d, "t2")
          const mine: S.Doc = { id: "a", type: "t2-own", vector: [0, 1, 0, 0], importance: 0.5, time: T0 }
          yield* R.expectOk("t2 upsert a", (yield* R.op(t2, "upsert"))([mine]))
          const observed: Record<string, unknown> = {}
          if (t2.query !== undefined) {
            const hits = yield* R.expectOk("t2 query", t2.query(Q1))
            yield* R.check(R.approxEqual(ids(hits), ["a"]), () => `t2's query ranks ${JSON.stringify(ids(hits))}`)
            const doc = hits[0]?.doc
            yield* R.check(doc === undefined || doc.type === "t2-own", () => `t2's query answered ${JSON.stringify(doc)}`)
            observed.query = ids(hits)
          }
          if (t2.get !== undefined) {
            const own = yield* R.expectOk("t2 get a", t2.get("a"))
            yield* sameDoc(own, mine)
            yield* R.expectErr("t2 get b", t2.get("b"), "not_found")
            observed.get = own
          }
          if (t2.scan !== undefined) {
            const page = yield* R.expectOk("t2 scan", t2.scan({}))
            yield* R.check(R.approxEqual(ids(page.docs), ["a"]), () => `t2's scan: ${JSON.stringify(ids(page.docs))}`)
            observed.scan = ids(page.docs)
          }
          if (t2.traverse !== undefined) {
            const reached = yield* R.expectOk("t2 traverse", t2.traverse({ from: ["g", "b"], hops: 3 }))
            yield* R.check(reached.length === 0, () => `t2 traverses into t1: ${JSON.stringify(reached)}`)
            observed.traverse = reached
          }
          if (t2.delete !== undefined) {
            yield* R.expectErr("t2 delete b", t2.delete("b"), "not_found")
          }
          if (t2.putEdges !== undefined && t1.traverse !== undefined) {
            yield* R.expectOk("t2 putEdges b→c", t2.putEdges([{ from: "b", to: "c", relation: "t2-only" }]))
            const t1Reached = yield* R.expectOk("t1 traverse", t1.traverse({ from: ["b"], hops: 1, relations: ["t2-only"] }))
            yield* R.check(t1Reached.length === 0, () => `t2's edge shows in t1: ${JSON.stringify(t1Reached)}`)
          }
          // t1's own entities are untouched by t2's writes under the same ids.
          if (t1.get !== undefined) {
            yield* sameDoc(yield* R.expectOk("t1 get a", t1.get("a")), byId.get("a")!)
            yield* sameDoc(yield* R.expectOk("t1 get b", t1.get("b")), byId.get("b")!)
          } else if (t1.query !== undefined) {
            const hits = yield* R.expectOk("t1 query", t1.query(Q1))
            const a = hits.find((h) => h.id === "a")
            yield* R.check(a?.doc === undefined || a.doc.type === "doc", () => `t1's a after t2's write: ${JSON.stringify(a)}`)
          }
          return new R.Parts(observed)
        }),
      ),
    )
  })

  describe("bad input", () => {
    interface BadInput {
      readonly name: string
      readonly op: S.OpName
      /** The field, spelled natively; each surface spells it its own way (Driver.field). */
      readonly field: string
      readonly call: (s: S.Surface) => Effect.Effect<S.Outcome<unknown>> | undefined
      /** Words the message must contain (both dimensions). */
      readonly mentions?: ReadonlyArray<string>
    }
    const cases: ReadonlyArray<BadInput> = [
      { name: "empty id", op: "upsert", field: "entities[0].id", call: (s) => s.upsert?.([{ id: "", time: T0 }]) },
      {
        name: "id over 256 bytes",
        op: "upsert",
        field: "entities[0].id",
        call: (s) => s.upsert?.([{ id: "é".repeat(129), time: T0 }]),
      },
      {
        name: "vector of another dimension",
        op: "upsert",
        field: "entities[0].vector",
        call: (s) => s.upsert?.([{ id: "bad-dim", vector: [1, 0, 0], time: T0 }]),
        mentions: ["3", "4"],
      },
      {
        // JSON has no NaN: the JSON surfaces send null in its place, gRPC sends a float NaN.
        name: "NaN in a vector",
        op: "upsert",
        field: "entities[0].vector[1]",
        call: (s) => s.upsert?.([{ id: "bad-nan", vector: [1, Number.NaN, 0, 0], time: T0 }]),
      },
      {
        name: "a string in a vector",
        op: "upsert",
        field: "entities[0].vector[1]",
        call: (s) => s.upsert?.([{ id: "bad-str", vector: [1, "0", 0, 0] as unknown as ReadonlyArray<number>, time: T0 }]),
      },
      {
        name: "unknown consistency level (write)",
        op: "upsert",
        field: "consistency",
        call: (s) => s.upsert?.([{ id: "bad-cl", time: T0 }], { consistency: "SOMETIMES" }),
      },
      { name: "k over the limit", op: "query", field: "k", call: (s) => s.query?.({ ...Q1, k: 1_000_000_000 }) },
      { name: "k = 0", op: "query", field: "k", call: (s) => s.query?.({ ...Q1, k: 0 }) },
      { name: "empty query vector", op: "query", field: "vector", call: (s) => s.query?.({ ...Q1, vector: [] }) },
      {
        name: "query vector of another dimension",
        op: "query",
        field: "vector",
        call: (s) => s.query?.({ ...Q1, vector: [1, 0, 0] }),
        mentions: ["3", "4"],
      },
      {
        name: "unknown consistency level (query)",
        op: "query",
        field: "consistency",
        call: (s) => s.query?.({ ...Q1, consistency: "SOMETIMES" }),
      },
      { name: "empty traverse start", op: "traverse", field: "from", call: (s) => s.traverse?.({ from: [], hops: 1 }) },
      { name: "get with an id over 256 bytes", op: "get", field: "id", call: (s) => s.get?.("x".repeat(300)) },
      { name: "scan limit 0", op: "scan", field: "limit", call: (s) => s.scan?.({ limit: 0 }) },
    ]
    for (const bad of cases) {
      it.effect(bad.name, () =>
        run(`bad input: ${bad.name}`, (d) =>
          Effect.gen(function* () {
            const call = bad.call(yield* R.as(d, "t1"))
            if (call === undefined) return yield* new R.NotApplicable({ reason: `no ${bad.op} operation` })
            const field = d.field(bad.field)
            const message = yield* R.expectErr(bad.name, call, "invalid_argument", field)
            yield* R.check(
              (bad.mentions ?? []).every((word) => message.includes(word)),
              () => `message does not name ${JSON.stringify(bad.mentions)}: ${message}`,
            )
            return "invalid_argument"
          }),
        ),
      )
    }
  })

  describe("payloads no client checked", () => {
    // Any msgpack client can send what the typed client refuses while
    // encoding. The server used to answer with a defect carrying the schema's
    // decode tree (@effect/rpc decodes payloads before any middleware); the
    // /rpc guard (RpcGuard) now refuses it as the other surfaces do.
    const uncheckedCases: ReadonlyArray<{
      readonly name: string
      readonly field: string
      readonly call: (s: S.Surface) => Effect.Effect<S.Outcome<unknown>> | undefined
    }> = [
      { name: "empty id", field: "entities[0].id", call: (s) => s.upsert?.([{ id: "", time: T0 }]) },
      {
        name: "NaN in a vector",
        field: "entities[0].vector[1]",
        call: (s) => s.upsert?.([{ id: "u-nan", vector: [1, Number.NaN, 0, 0], time: T0 }]),
      },
      { name: "k = 0", field: "k", call: (s) => s.query?.({ ...Q1, k: 0 }) },
    ]
    for (const bad of uncheckedCases) {
      it.effect(`an RPC payload no client checked is refused as invalid_argument: ${bad.name}`, () =>
        run(`unchecked RPC payload → invalid_argument: ${bad.name}`, (d) =>
          Effect.gen(function* () {
            if (d.unchecked === undefined) {
              return yield* new R.NotApplicable({ reason: "no typed client to bypass (requests above already go unchecked)" })
            }
            const call = bad.call(d.unchecked)
            if (call === undefined) return yield* new R.NotApplicable({ reason: "no such unchecked operation" })
            yield* R.expectErr(bad.name, call, "invalid_argument", d.field(bad.field))
            return "invalid_argument"
          }),
        ),
      )
    }
  })

  describe("proto3 defaults", () => {
    // `double importance = 8` has no presence: gRPC reads 0 as "not given",
    // so an entity without importance scores the same on every surface.
    it.effect("an entity without importance scores the same on every surface", () =>
      run("no importance given → same score", (d) =>
        Effect.gen(function* () {
          const t1 = yield* R.as(d, "t1")
          const vector = [0.25, 0.75, 0.25, 0.25]
          yield* R.expectOk("upsert", (yield* R.op(t1, "upsert"))([{ id: "no-importance", vector, time: T0 }]))
          const hits = yield* R.expectOk("query", (yield* R.op(t1, "query"))({ vector, k: 10, expand: { hops: 1, factor: 1 } }))
          const hit = hits.find((h) => h.id === "no-importance")
          yield* R.check(hit !== undefined, () => `not ranked: ${JSON.stringify(ids(hits))}`)
          return hit?.score
        }),
      ),
    )
  })
})
