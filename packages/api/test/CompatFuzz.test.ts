/**
 * Fuzzing the compatible surfaces (bounded rounds, seeded; the seed is
 * printed and can be replayed with ALLIDB_FUZZ_SEED=<n>): random JSON, broken
 * JSON text and mutations of valid bodies to every REST route, and random or
 * bit-flipped protobuf bytes to every gRPC method. No answer may be a 5xx /
 * INTERNAL; every HTTP error is `{error, code}` JSON; the server keeps
 * answering valid requests afterwards.
 */
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import * as Grpc from "../src/Grpc.js"
import { startRest } from "./CompatHarness.js"
import { callRaw, KEY_ACME, startGrpc } from "./GrpcHarness.js"

const SEED = process.env.ALLIDB_FUZZ_SEED !== undefined ? Number(process.env.ALLIDB_FUZZ_SEED) : Date.now() % 2 ** 31
const RUNS = 80

const validBodies: Record<string, unknown> = {
  "/entity": {
    entity: {
      entity_id: "e1",
      tenant_id: "acme",
      entity_type: "doc",
      embeddings: [{ version: 1, vector: [0.5, 0.5], timestamp_nanos: 1 }],
      outgoing_edges: [{ from_entity: "e1", to_entity: "e2", relation: "r", weight: 0.5, timestamp_nanos: 0 }],
      incoming_edges: [{ from_entity: "e0", to_entity: "e1", relation: "r", weight: 0.5 }],
      chunks: [{ chunk_id: "c", text: "t", metadata: { k: "v" } }],
      importance: 0.5,
      created_at_nanos: 1700000000000000000,
      updated_at_nanos: "1700000000000000000",
    },
    consistency_level: "CONSISTENCY_ONE",
    trace_id: "t",
  },
  "/entities/batch": {
    entities: [{ entity_id: "e1", embeddings: [{ version: 1, vector: [1, 0] }] }, { entity_id: "e2" }],
    consistency_level: "QUORUM",
  },
  "/query": { query_vector: [1, 0], k: 3, expand_factor: 2, consistency_level: 2, trace_id: "t" },
}

type Json = null | boolean | number | string | Array<Json> | { [key: string]: Json }

/** Every path into a JSON value (the root included). */
const pathsOf = (value: Json, prefix: Array<string | number> = []): Array<Array<string | number>> => {
  const out: Array<Array<string | number>> = [prefix]
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) out.push(...pathsOf(v, [...prefix, i]))
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]))
  }
  return out
}

/** Replaces (or, for object keys, deletes) the value at one path. */
const mutate = (value: Json, path: Array<string | number>, replacement: Json, remove: boolean): Json => {
  if (path.length === 0) return replacement
  const [head, ...rest] = path
  if (Array.isArray(value)) {
    const copy = [...value]
    copy[head as number] = mutate(copy[head as number], rest, replacement, remove)
    return copy
  }
  const copy = { ...(value as { [key: string]: Json }) }
  if (rest.length === 0 && remove) delete copy[head as string]
  else copy[head as string] = mutate(copy[head as string], rest, replacement, remove)
  return copy
}

const mutated = (base: Json) =>
  fc.tuple(fc.nat(), fc.jsonValue(), fc.boolean()).map(([n, replacement, remove]) => {
    const paths = pathsOf(base)
    return JSON.stringify(mutate(base, paths[n % paths.length], replacement as Json, remove))
  })

const bodyFor = (path: string) =>
  fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string(),
    mutated(validBodies[path] as Json),
    mutated(validBodies[path] as Json),
  )

describe("fuzzing the compatible surfaces", () => {
  it.scopedLive(`REST routes answer random and mutated bodies with 2xx or a 4xx JSON error (seed ${SEED})`, () =>
    Effect.gen(function* () {
      console.log(`CompatFuzz REST seed: ${SEED} (replay with ALLIDB_FUZZ_SEED=${SEED})`)
      const { post } = yield* startRest()
      for (const path of Object.keys(validBodies)) {
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(bodyFor(path), async (raw) => {
              const answer = await Effect.runPromise(post(path, undefined, { apiKey: KEY_ACME, raw }))
              if (answer.status >= 500) throw new Error(`${path} answered ${answer.status} to ${raw}`)
              if (answer.status !== 200) {
                if (answer.status < 400) throw new Error(`${path} answered ${answer.status}`)
                if (typeof answer.body.error !== "string" || typeof answer.body.code !== "string") {
                  throw new Error(`${path} error body is not {error, code}: ${JSON.stringify(answer.body)}`)
                }
              }
            }),
            { seed: SEED, numRuns: RUNS },
          ),
        )
      }
      const healthy = yield* post("/query", { query_vector: [1, 0] }, { apiKey: KEY_ACME })
      assert.strictEqual(healthy.status, 200)
    }))

  it.scopedLive(`gRPC methods answer random and corrupted messages without INTERNAL (seed ${SEED})`, () =>
    Effect.gen(function* () {
      console.log(`CompatFuzz gRPC seed: ${SEED} (replay with ALLIDB_FUZZ_SEED=${SEED})`)
      const { client } = yield* startGrpc()
      const { definition } = Grpc.loadService()
      const methods = ["PutEntity", "BatchPutEntities", "Query", "RangeScan", "ReplicaRead", "ReplicaWrite"]
      const validMessages: Record<string, object> = {
        PutEntity: { entity: { entity_id: "e1", embeddings: [{ version: "1", vector: [1, 0] }] }, consistency_level: "ONE" },
        BatchPutEntities: { entities: [{ entity_id: "e1" }, { entity_id: "e2", importance: 0.5 }] },
        Query: { query_vector: [1, 0], k: 3 },
        RangeScan: { start_key: "a", limit: 2 },
        ReplicaRead: { tenant_id: "acme", entity_id: "e1" },
        ReplicaWrite: { tenant_id: "acme", entity: { entity_id: "e1" } },
      }
      const forbidden = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.UNAVAILABLE])
      for (const method of methods) {
        const valid = definition[method].requestSerialize(validMessages[method])
        const bytes = fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
          fc
            .array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 })
            .map((flips) => {
              const copy = Buffer.from(valid)
              for (const [at, mask] of flips) copy[at % copy.length] ^= mask
              return copy
            }),
        )
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(bytes, async (message) => {
              const answer = await Effect.runPromise(callRaw(client.client, method, message, KEY_ACME))
              if (Either.isLeft(answer) && forbidden.has(answer.left.code)) {
                throw new Error(`${method} answered ${answer.left.code} (${answer.left.details}) to ${message.toString("hex")}`)
              }
            }),
            { seed: SEED, numRuns: RUNS },
          ),
        )
      }
      const health = yield* client.call("HealthCheck", {})
      assert.isTrue(Either.isRight(health))
    }))
})
