/**
 * Runs the examples of the "AlliDB-compatible REST" and "gRPC" sections of
 * docs/API.md, in order, against the real routes and the real gRPC server
 * (over the in-memory coordinator), and checks each documented answer.
 * Numbers compare within 1e-6; a documented string "<...>" matches any
 * non-empty string.
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as grpc from "@grpc/grpc-js"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { startRest } from "./CompatHarness.js"
import { KEY_ACME, startGrpc } from "./GrpcHarness.js"

const API_MD = fileURLToPath(new URL("../../../docs/API.md", import.meta.url))

interface Example {
  readonly marker: string
  readonly request: unknown
  readonly answer: unknown
}

const section = (doc: string, heading: string): string => {
  const start = doc.indexOf(`\n## ${heading}\n`)
  assert.isAtLeast(start, 0, `docs/API.md has no "## ${heading}" section`)
  const next = doc.indexOf("\n## ", start + 4)
  return next < 0 ? doc.slice(start) : doc.slice(start, next)
}

const examplesOf = (text: string): Array<Example> => {
  const pattern = /<!-- example: ([^>]+?) -->\s*```json\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/g
  return [...text.matchAll(pattern)].map((m) => ({
    marker: m[1],
    request: JSON.parse(m[2]),
    answer: JSON.parse(m[3]),
  }))
}

const matches = (actual: unknown, expected: unknown, path: string): void => {
  if (typeof expected === "number") {
    assert.isNumber(actual, path)
    assert.closeTo(actual as number, expected, 1e-6, path)
  } else if (typeof expected === "string" && expected.startsWith("<") && expected.endsWith(">")) {
    assert.isString(actual, path)
    assert.isNotEmpty(actual as string, path)
  } else if (Array.isArray(expected)) {
    assert.isArray(actual, path)
    assert.strictEqual((actual as Array<unknown>).length, expected.length, `${path}.length`)
    for (const [i, e] of expected.entries()) matches((actual as Array<unknown>)[i], e, `${path}[${i}]`)
  } else if (typeof expected === "object" && expected !== null) {
    assert.isObject(actual, path)
    const a = actual as Record<string, unknown>
    assert.deepStrictEqual(Object.keys(a).sort(), Object.keys(expected).sort(), `${path} keys`)
    for (const [key, value] of Object.entries(expected)) matches(a[key], value, `${path}.${key}`)
  } else {
    assert.deepStrictEqual(actual, expected, path)
  }
}

const doc = readFileSync(API_MD, "utf8")

describe("docs/API.md examples", () => {
  it.scopedLive("AlliDB-compatible REST examples run as documented", () =>
    Effect.gen(function* () {
      const examples = examplesOf(section(doc, "AlliDB-compatible REST"))
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
      const examples = examplesOf(section(doc, "gRPC"))
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
