/**
 * Runs the examples of the "AlliDB-compatible REST" and "gRPC" sections of
 * docs/API.md, in order, against the real routes and the real gRPC server
 * (over the in-memory coordinator), and checks each documented answer.
 * Numbers compare within 1e-6; a documented string "<...>" matches any
 * non-empty string.
 */
import { readFileSync } from "node:fs"
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { startRest } from "./CompatHarness.js"
import { KEY_ACME, startGrpc } from "./GrpcHarness.js"
import { API_MD, examplesOf, matches, section } from "./support/DocExamples.js"



const doc = readFileSync(API_MD, "utf8")

describe("docs/API.md examples", () => {
  it.scopedLive("AlliDB-compatible REST examples run as documented", () =>
    Effect.gen(function* () {
      const examples = examplesOf(section(doc, "AlliDB-compatible REST"), "example")
      assert.isAtLeast(examples.length, 5)
      const { post } = yield* startRest()
      for (const example of examples) {
        const [method, path, status, flag] = example.marker.split(" ")
        assert.strictEqual(method, "POST", example.marker)
        const answer = yield* post(path, example.request, flag === "no-key" ? {} : { apiKey: KEY_ACME })
        assert.strictEqual(answer.status, Number(status), `${example.marker}: ${JSON.stringify(answer.body)}`)
        matches(answer.body, example.answer, example.marker)
      }
    }))

  it.scopedLive("gRPC examples run as documented", () =>
    Effect.gen(function* () {
      const examples = examplesOf(section(doc, "gRPC"), "example")
      assert.isAtLeast(examples.length, 5)
      const { client } = yield* startGrpc()
      for (const example of examples) {
        const [kind, method, outcome, flag] = example.marker.split(" ")
        assert.strictEqual(kind, "grpc", example.marker)
        const answer = yield* client.call(method, example.request as object, flag === "no-key" ? {} : { apiKey: KEY_ACME })
        if (outcome === "OK") {
          if (Either.isLeft(answer)) assert.fail(`${example.marker}: ${answer.left.code} ${answer.left.details}`)
          matches(answer.right, example.answer, example.marker)
        } else {
          if (Either.isRight(answer)) assert.fail(`${example.marker}: expected ${outcome}, got success`)
          const expected = example.answer as { code: keyof typeof grpc.status; details: string }
          assert.strictEqual(outcome, expected.code)
          assert.strictEqual(answer.left.code, grpc.status[expected.code], example.marker)
          assert.strictEqual(answer.left.details, expected.details, example.marker)
        }
      }
    }))
})
