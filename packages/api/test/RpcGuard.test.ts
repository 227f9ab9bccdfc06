/**
 * The /rpc guard against a real in-process server: bodies that are not
 * complete msgpack, frames that are not client messages, unknown RPCs and
 * payloads failing their schema get 400 JSON naming the field (401 first for
 * a caller without a valid key); valid frames still get the RPC server's
 * msgpack answer. Then a bounded fast-check fuzz of random and mutated
 * bodies: never a 5xx, every refusal a JSON error, every 200 a clean RPC
 * answer, and the server still serves a valid call afterwards. The seed is
 * printed (replay with RPCG_FUZZ_SEED=<seed>).
 */
import { readFileSync } from "node:fs"
import { tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import { Packr, Unpackr } from "msgpackr"
import * as RpcGuard from "../src/RpcGuard.js"
import { fakeCoordinator, start } from "./support/TestServer.js"
import { API_MD, matches } from "./support/DocExamples.js"

const KEY = "rpcg-key-000001"
const OPTIONS = { useRecords: true } as const

/** Packs frames as @effect/rpc's msgpack serialization does (a fresh packer per body). */
const pack = (...frames: ReadonlyArray<unknown>): Uint8Array => {
  const packr = new Packr(OPTIONS)
  const parts = frames.map((f) => packr.pack(f))
  return Buffer.concat(parts)
}

const request = (tag: string, payload: unknown, id = "1") => ({ _tag: "Request", id, tag, payload, headers: [] as Array<[string, string]> })

const upsertFrame = (id: string, vector: ReadonlyArray<number> = [1, 0, 0, 0]) =>
  request("Upsert", { entities: [{ id, vector, metadata: { a: 1 }, importance: 0.5 }], consistency: "ONE" })

const queryFrame = (k: number, vector: ReadonlyArray<number> = [1, 0, 0, 0]) =>
  request("Query", { request: { vector, k, expand: { hops: 1, factor: 2, direction: "both" } } })

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly bytes: Uint8Array
}

/** `key: null` sends no key. */
const post = (url: string, body: Uint8Array, key: string | null = KEY): Promise<Answer> => {
  const headers: Record<string, string> = { "content-type": "application/msgpack" }
  if (key !== null) headers["x-allidb-api-key"] = key
  return fetch(`${url}/rpc`, { method: "POST", headers, body }).then(async (r) => ({
    status: r.status,
    contentType: r.headers.get("content-type") ?? "",
    bytes: new Uint8Array(await r.arrayBuffer()),
  }))
}

const json = (answer: Answer): { error: string; code: string; field?: string } =>
  JSON.parse(new TextDecoder().decode(answer.bytes))

const framesOf = (answer: Answer): ReadonlyArray<Record<string, unknown>> =>
  new Unpackr(OPTIONS).unpackMultiple(answer.bytes) as ReadonlyArray<Record<string, unknown>>

/** True when an encoded value holds a Die (a defect) anywhere. */
const hasDie = (value: unknown): boolean =>
  typeof value === "object" && value !== null
    ? (value as { _tag?: unknown })._tag === "Die" || Object.values(value).some(hasDie)
    : false

/** A normal RPC answer: msgpack frames, no protocol Defect, no defect in any Exit. */
const assertRpcAnswer = (answer: Answer, label: string) => {
  assert.strictEqual(answer.status, 200, label)
  const frames = framesOf(answer)
  for (const frame of frames) {
    assert.notStrictEqual(frame._tag, "Defect", `${label}: ${JSON.stringify(frame)}`)
    assert.isFalse(hasDie(frame), `${label}: ${JSON.stringify(frame)}`)
  }
  return frames
}

const assertRefused = (answer: Answer, status: number, code: string, field?: string) => {
  const body = json(answer)
  assert.strictEqual(answer.status, status, JSON.stringify(body))
  assert.include(answer.contentType, "application/json")
  assert.strictEqual(body.code, code, JSON.stringify(body))
  assert.isString(body.error)
  if (field !== undefined) {
    assert.strictEqual(body.field, field, JSON.stringify(body))
    assert.isTrue(body.error.startsWith(`${field}: `), body.error)
  }
  return body
}

const DOCS_KEY = "docs-key-0001"

const withServer = <A>(body: (url: string) => Promise<A>, config: { readonly maxBodyMb?: number } = {}) =>
  Effect.gen(function* () {
    const { layer } = yield* fakeCoordinator
    const apiKeys = [
      { key: KEY, tenant: tenantId("guarded") },
      { key: DOCS_KEY, tenant: tenantId("docs") },
    ]
    const server = yield* start(layer, { apiKeys, maxBatch: 50, ...config })
    return yield* Effect.promise(() => body(server.url))
  }).pipe(Effect.scoped)

describe("RpcGuard.check (pure)", () => {
  it("accepts what the typed client sends and refuses the rest", () => {
    assert.isUndefined(RpcGuard.check(pack(upsertFrame("a"))))
    assert.isUndefined(RpcGuard.check(pack(upsertFrame("a"), { _tag: "Ping" }, { ...queryFrame(2), id: "2" })))
    assert.isUndefined(
      RpcGuard.check(pack({ ...queryFrame(3), traceId: "t", spanId: "s", sampled: true, headers: [["x-a", "b"]] })),
    )
    assert.strictEqual(RpcGuard.check(new Uint8Array())?.field, "body")
    assert.strictEqual(RpcGuard.check(pack(upsertFrame("a"), { _tag: "Ack", requestId: "x1" }))?.field, "body[1].requestId")
    assert.strictEqual(RpcGuard.check(pack({ ...upsertFrame("a"), id: "12abc" }))?.field, "body[0].id")
    assert.strictEqual(RpcGuard.check(pack({ ...upsertFrame("a"), headers: [["x", 1]] }))?.field, "body[0].headers[0]")
    assert.strictEqual(RpcGuard.check(pack({ ...upsertFrame("a"), sampled: "yes" }))?.field, "body[0].sampled")
    assert.strictEqual(RpcGuard.check(pack(request("__proto__", {})))?.field, "body[0].tag")
  })
})

describe("/rpc guard", () => {
  it.live("bytes that are not complete msgpack → 400 naming the body", () =>
    withServer(async (url) => {
      // fixext 1 of an extension type nobody registered.
      const garbage = assertRefused(await post(url, new Uint8Array([0xd4, 0x01, 0x00])), 400, "INVALID_ARGUMENT", "body")
      assert.include(garbage.error, "not valid msgpack")
      const valid = pack(upsertFrame("a"))
      const truncated = assertRefused(await post(url, valid.subarray(0, valid.length - 5)), 400, "INVALID_ARGUMENT", "body")
      assert.include(truncated.error, "truncated")
      assertRefused(await post(url, new Uint8Array()), 400, "INVALID_ARGUMENT", "body")
      // Text is valid msgpack (small ints), but not a message.
      assertRefused(await post(url, new TextEncoder().encode("hello")), 400, "INVALID_ARGUMENT", "body[0]")
    }),
  )

  it.live("frames that are not client messages → 400 naming the frame's field", () =>
    withServer(async (url) => {
      assertRefused(await post(url, pack(42)), 400, "INVALID_ARGUMENT", "body[0]")
      // 0xc1, the byte msgpack never uses (msgpackr decodes it to an object of its own).
      assertRefused(await post(url, new Uint8Array([0xc1])), 400, "INVALID_ARGUMENT", "body[0]")
      // The server ends the body's messages itself; a client Eof used to interrupt the request (503).
      assertRefused(await post(url, pack(upsertFrame("e"), { _tag: "Eof" })), 400, "INVALID_ARGUMENT", "body[1]._tag")
      // Two calls with one id: the server would encode one's answer with the other's schema (a defect).
      assertRefused(await post(url, pack(upsertFrame("d"), request("Get", { id: "d" }))), 400, "INVALID_ARGUMENT", "body[1].id")
      assertRefused(await post(url, pack([upsertFrame("a")])), 400, "INVALID_ARGUMENT", "body[0]")
      assertRefused(await post(url, pack({ tag: "Upsert" })), 400, "INVALID_ARGUMENT", "body[0]._tag")
      assertRefused(await post(url, pack({ _tag: "Nope" })), 400, "INVALID_ARGUMENT", "body[0]._tag")
      const noId = { ...upsertFrame("a"), id: undefined }
      assertRefused(await post(url, pack(noId)), 400, "INVALID_ARGUMENT", "body[0].id")
      // A non-integer id would throw inside the RPC server's BigInt conversion.
      assertRefused(await post(url, pack({ ...upsertFrame("a"), id: "one" })), 400, "INVALID_ARGUMENT", "body[0].id")
      assertRefused(await post(url, pack({ ...upsertFrame("a"), headers: { a: "b" } })), 400, "INVALID_ARGUMENT", "body[0].headers")
      assertRefused(await post(url, pack({ _tag: "Interrupt" })), 400, "INVALID_ARGUMENT", "body[0].requestId")
      // The second frame is checked too: nothing of a refused body runs.
      assertRefused(await post(url, pack(upsertFrame("ok-1"), 7)), 400, "INVALID_ARGUMENT", "body[1]")
      const after = assertRpcAnswer(await post(url, pack(request("Get", { id: "ok-1" }))), "get after refused body")
      const exit = after.find((f) => f._tag === "Exit") as { exit: { _tag: string } }
      assert.strictEqual(exit.exit._tag, "Failure", "the refused body's Upsert must not have run")
    }),
  )

  it.live("an unknown RPC → 400 naming the tag and the known ones", () =>
    withServer(async (url) => {
      const body = assertRefused(await post(url, pack(request("DropDatabase", {}))), 400, "INVALID_ARGUMENT", "body[0].tag")
      assert.include(body.error, "DropDatabase")
      assert.include(body.error, "Upsert")
      assertRefused(await post(url, pack({ ...upsertFrame("a"), tag: 3 })), 400, "INVALID_ARGUMENT", "body[0].tag")
    }),
  )

  it.live("a payload failing its schema → 400 naming the payload's field, with the rule", () =>
    withServer(async (url) => {
      // msgpack can carry NaN (JSON cannot).
      const nan = assertRefused(
        await post(url, pack(upsertFrame("n", [1, Number.NaN, 0, 0]))),
        400,
        "INVALID_ARGUMENT",
        "entities[0].vector[1]",
      )
      assert.notInclude(nan.error, "Struct", "names the rule, not the schema tree")
      assertRefused(await post(url, pack(upsertFrame(""))), 400, "INVALID_ARGUMENT", "entities[0].id")
      assertRefused(await post(url, pack(upsertFrame("é".repeat(129)))), 400, "INVALID_ARGUMENT", "entities[0].id")
      assertRefused(await post(url, pack(queryFrame(0))), 400, "INVALID_ARGUMENT", "request.k")
      assertRefused(await post(url, pack(queryFrame(3, [1, Number.POSITIVE_INFINITY, 0, 0]))), 400, "INVALID_ARGUMENT", "request.vector[1]")
      assertRefused(
        await post(url, pack(request("Upsert", { entities: [{ id: "c" }], consistency: "SOMETIMES" }))),
        400,
        "INVALID_ARGUMENT",
        "consistency",
      )
      assertRefused(await post(url, pack(request("Get", {}))), 400, "INVALID_ARGUMENT", "id")
      assertRefused(await post(url, pack(request("Upsert", "entities"))), 400, "INVALID_ARGUMENT", "body")
    }),
  )

  it.live("a caller without a valid key is refused with 401, never shown the schema", () =>
    withServer(async (url) => {
      for (const key of [null, "no-such-key-0000"]) {
        const bad = assertRefused(await post(url, pack(upsertFrame("")), key), 401, "UNAUTHENTICATED")
        assert.isUndefined(bad.field)
        assertRefused(await post(url, new Uint8Array([0xc1]), key), 401, "UNAUTHENTICATED")
        // A well-formed call is the RPC server's: its typed Unauthenticated, as before the guard.
        const frames = assertRpcAnswer(await post(url, pack(upsertFrame("k")), key), "well-formed, no valid key")
        const exit = frames.find((f) => f._tag === "Exit") as { exit: { _tag: string; cause: { error: { _tag: string } } } }
        assert.strictEqual(exit.exit._tag, "Failure")
        assert.strictEqual(exit.exit.cause.error._tag, "Unauthenticated")
      }
    }),
  )

  it.live("valid frames reach the RPC server unchanged (bytes handed on, not re-read)", () =>
    withServer(async (url) => {
      const up = assertRpcAnswer(await post(url, pack(upsertFrame("v1"), { _tag: "Ping" })), "upsert")
      assert.include(JSON.stringify(up), "v1")
      const q = assertRpcAnswer(await post(url, pack(queryFrame(2))), "query")
      const exit = q.find((f) => f._tag === "Exit") as { exit: { _tag: string; value: ReadonlyArray<{ id: string }> } }
      assert.strictEqual(exit.exit._tag, "Success")
      assert.deepStrictEqual(
        exit.exit.value.map((r) => r.id),
        ["v1"],
      )
      assert.lengthOf(assertRpcAnswer(await post(url, pack({ _tag: "Ping" })), "ping"), 1)
    }),
  )

  it.live("a body over the limit → 413 JSON", () =>
    withServer(
      async (url) => {
        const big = pack(upsertFrame("big", Array.from({ length: 4000 }, () => 0.5)))
        assertRefused(await post(url, big), 413, "RESOURCE_EXHAUSTED")
        assertRpcAnswer(await post(url, pack(upsertFrame("small"))), "small after big")
      },
      { maxBodyMb: 0.01 },
    ),
  )
})

// ---------------------------------------------------------------------------
// docs/API.md: the "Malformed bodies" examples run as documented


describe("docs/API.md /rpc refusals", () => {
  it.live("every rpc-frame example answers as documented", () =>
    withServer(async (url) => {
      const doc = readFileSync(API_MD, "utf8")
      const pattern = /<!-- rpc-frame: ([^>]+?) -->\s*```json\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/g
      const examples = [...doc.matchAll(pattern)]
      assert.isAtLeast(examples.length, 4, "docs/API.md has its rpc-frame examples")
      for (const [, name, frame, expected] of examples) {
        const answer = await post(url, pack(JSON.parse(frame!)), name!.endsWith("no key") ? null : DOCS_KEY)
        matches({ status: answer.status, body: json(answer) }, JSON.parse(expected!), name!)
      }
    }),
  )
})

// ---------------------------------------------------------------------------
// Fuzz

type Path = ReadonlyArray<string | number>

const pathsOf = (value: unknown, prefix: Path = []): Array<Path> => {
  const out: Array<Path> = [prefix]
  if (Array.isArray(value)) for (const [i, v] of value.entries()) out.push(...pathsOf(v, [...prefix, i]))
  else if (typeof value === "object" && value !== null)
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]))
  return out
}

const setAt = (value: unknown, path: Path, replacement: unknown, remove: boolean): unknown => {
  if (path.length === 0) return replacement
  const [head, ...rest] = path
  if (Array.isArray(value)) {
    const copy = [...value]
    if (rest.length === 0 && remove) copy.splice(head as number, 1)
    else copy[head as number] = setAt(copy[head as number], rest, replacement, remove)
    return copy
  }
  const copy = { ...(value as Record<string, unknown>) }
  if (rest.length === 0 && remove) delete copy[head as string]
  else copy[head as string] = setAt(copy[head as string], rest, replacement, remove)
  return copy
}

const templates: ReadonlyArray<unknown> = [
  upsertFrame("f1", [0.5, 0.25, 0, 1]),
  queryFrame(3, [0.5, 0.25, 0, 1]),
  request("Get", { id: "f1" }),
  request("Traverse", { request: { from: ["f1"], hops: 1, direction: "out", limit: 5 } }),
  request("PutEdges", { edges: [{ from: "f1", to: "f2", relation: "r", weight: 0.5 }] }),
  request("Scan", { request: { limit: 3 } }),
]

const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom<unknown>(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    -0,
    2 ** 64,
    "",
    "x".repeat(300),
    "Request",
    "Ping",
    "Eof",
    "Ack",
    "Upsert",
    "Query",
    "99999999999999999999999",
    null,
    undefined,
    [],
    {},
    new Uint8Array([1, 2, 3]),
    new Date(0),
  ),
)

const mutatedFrame = fc.tuple(fc.constantFrom(...templates), fc.nat(), weird, fc.boolean()).map(([template, pick, value, remove]) => {
  const paths = pathsOf(template)
  return setAt(template, paths[pick % paths.length]!, value, remove)
})

/** Byte-level damage to a packed valid frame: flipped, dropped or inserted bytes, or a cut. */
const mutatedBytes = fc
  .tuple(fc.constantFrom(...templates), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 4 }))
  .map(([template, edits]) => {
    let bytes = Array.from(pack(template))
    for (const [at, byte, kind] of edits) {
      const i = at % Math.max(1, bytes.length)
      if (kind === 0) bytes[i] = byte
      else if (kind === 1) bytes.splice(i, 1)
      else if (kind === 2) bytes.splice(i, 0, byte)
      else bytes = bytes.slice(0, i)
    }
    return new Uint8Array(bytes)
  })

/** Frames that stay valid (random ids, vectors, k), so the fuzz also reaches the handlers. */
const validFrame = fc
  .tuple(
    fc.string({ minLength: 1, maxLength: 20 }),
    fc.array(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), { minLength: 4, maxLength: 4 }),
    fc.integer({ min: 1, max: 20 }),
    fc.nat({ max: 3 }),
  )
  .map(([id, vector, k, which]) =>
    which === 0
      ? upsertFrame(id, vector)
      : which === 1
        ? queryFrame(k, vector)
        : which === 2
          ? request("Get", { id })
          : request("Traverse", { request: { from: [id], hops: 1, direction: "in", limit: k } }),
  )

const body = fc.oneof(
  validFrame.map((frame) => pack(frame)),
  mutatedFrame.map((frame) => pack(frame)),
  fc.tuple(mutatedFrame, mutatedFrame).map(([a, b]) => pack(a, b)),
  mutatedBytes,
  fc.anything().map((value) => pack(value)),
  fc.uint8Array({ maxLength: 200 }),
)

describe("/rpc fuzz", () => {
  it.live("random and mutated bodies: never a 5xx; refusals are JSON 4xx, 200s clean RPC answers", () =>
    withServer(async (url) => {
      const seed = Number(process.env.RPCG_FUZZ_SEED ?? Date.now() % 2 ** 31)
      console.log(`RpcGuard fuzz seed: ${seed} (replay with RPCG_FUZZ_SEED=${seed})`)
      let refused = 0
      let served = 0
      await fc.assert(
        fc.asyncProperty(body, async (bytes) => {
          const answer = await post(url, bytes)
          const label = `body ${Buffer.from(bytes).toString("hex").slice(0, 400)}`
          assert.isBelow(answer.status, 500, label)
          if (answer.status === 200) {
            served++
            assertRpcAnswer(answer, label)
          } else {
            refused++
            assert.include([400, 401, 413], answer.status, label)
            const error = json(answer)
            assert.isString(error.error, label)
            assert.isString(error.code, label)
          }
        }),
        { seed, numRuns: 300 },
      )
      console.log(`RpcGuard fuzz: ${refused} refused, ${served} served`)
      assert.isAbove(refused, 0)
      // Still healthy: a valid call is served.
      const frames = assertRpcAnswer(await post(url, pack(upsertFrame("after"))), "after the fuzz")
      const exit = frames.find((f) => f._tag === "Exit") as { exit: { _tag: string } }
      assert.strictEqual(exit.exit._tag, "Success")
    }),
  )
})
