/**
 * Runs the examples of the "Native HTTP /v1" and "@effect/rpc and the typed
 * client" sections of docs/API.md, in order, against the real routes (over
 * the in-memory coordinator) and through the typed client, and checks each
 * documented answer. Numbers compare within 1e-6; "<number>" and "<string>"
 * in a documented answer match any value of that type.
 *
 * Set A1_PRINT_DOCS=1 to print the actual answers instead of checking them
 * (used when writing the examples).
 */
import { readFileSync } from "node:fs"
import { tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as AlliDbClient from "../../client/src/AlliDbClient.js"
import { Rpcs } from "../src/Rpc.js"
import { API_MD, examplesOf, matches, section } from "./support/DocExamples.js"
import { call, fakeCoordinator, start } from "./support/TestServer.js"

const KEY = "acme-docs-key-01"
const keys = { apiKeys: [{ key: KEY, tenant: tenantId("acme") }] }
const PRINT = process.env.A1_PRINT_DOCS === "1"

const check = (marker: string, actual: unknown, expected: unknown) => {
  if (PRINT) console.log(`${marker}\n${JSON.stringify(actual, null, 2)}`)
  else matches(actual, expected, marker)
}

const doc = readFileSync(API_MD, "utf8")

type AnyRpcMethod = (payload: unknown) => Effect.Effect<unknown, unknown>

describe("docs/API.md examples", () => {
  it.scopedLive("native HTTP /v1 examples run as documented", () =>
    Effect.gen(function* () {
      const examples = examplesOf(section(doc, "Native HTTP /v1"), "example")
      assert.isAtLeast(examples.length, 12)
      const { layer } = yield* fakeCoordinator
      const server = yield* start(layer, keys)
      const routes = new Set<string>()
      for (const example of examples) {
        const [method, path, status, flag] = example.marker.split(" ")
        routes.add(`${method} ${path!.replace(/\?.*$/, "").replace(/^\/v1\/entities\/.+$/, "/v1/entities/{id}")}`)
        const answer = yield* call(server.url, method!, path!, {
          ...(example.request === null ? {} : { body: example.request }),
          ...(flag === "no-key" ? {} : { key: KEY }),
        })
        if (!PRINT) assert.strictEqual(answer.status, Number(status), `${example.marker}: ${JSON.stringify(answer.body)}`)
        check(example.marker, answer.body, example.answer)
      }
      // every route of the native API has at least one example
      assert.deepStrictEqual([...routes].sort(), [
        "DELETE /v1/edges",
        "DELETE /v1/entities/{id}",
        "GET /v1/entities",
        "GET /v1/entities/{id}",
        "POST /v1/edges",
        "POST /v1/entities",
        "POST /v1/query",
        "POST /v1/traverse",
      ])
    }),
  )

  it.scopedLive("RPC examples run as documented through the typed client", () =>
    Effect.gen(function* () {
      const examples = examplesOf(section(doc, "@effect/rpc and the typed client"), "rpc")
      const { layer } = yield* fakeCoordinator
      const server = yield* start(layer, keys)
      const client = yield* Effect.map(
        Layer.build(AlliDbClient.layer({ url: server.url, apiKey: KEY })),
        Context.get(AlliDbClient.AlliDbClient),
      )
      const seen = new Set<string>()
      for (const example of examples) {
        const [tag, outcome] = example.marker.split(" ")
        seen.add(tag!)
        const rpc = Rpcs.requests.get(tag!)
        assert.isDefined(rpc, example.marker)
        const payload = yield* Schema.decodeUnknown(rpc!.payloadSchema as Schema.Schema<unknown, unknown>)(example.request)
        const method = (client as unknown as Record<string, AnyRpcMethod>)[tag!]!
        const exit = yield* Effect.exit(method(payload))
        if (outcome === "error") {
          assert.isTrue(Exit.isFailure(exit), example.marker)
          if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
            const encoded = yield* Schema.encodeUnknown(rpc!.errorSchema as Schema.Schema<unknown, unknown>)(
              exit.cause.error,
            )
            check(example.marker, encoded, example.answer)
          } else assert.fail(`${example.marker}: ${String(exit)}`)
        } else {
          assert.isTrue(Exit.isSuccess(exit), `${example.marker}: ${String(exit)}`)
          if (Exit.isSuccess(exit)) {
            const encoded = yield* Schema.encodeUnknown(rpc!.successSchema as Schema.Schema<unknown, unknown>)(exit.value)
            check(example.marker, encoded ?? null, example.answer)
          }
        }
      }
      assert.deepStrictEqual([...seen].sort(), [...Rpcs.requests.keys()].sort(), "every RPC has an example")
    }),
  )
})
