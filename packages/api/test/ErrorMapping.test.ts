import {
  ClientError,
  Corruption,
  DeadlineExceeded,
  DimensionMismatch,
  Entity,
  InvalidInput,
  NotFound,
  PayloadTooLarge,
  PermissionDenied,
  RateLimited,
  StorageFailure,
  TenantViolation,
  Unauthenticated,
  Unavailable,
} from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as ErrorMapping from "../src/ErrorMapping.js"

const samples: ReadonlyArray<[ClientError, number, ErrorMapping.GrpcCodeName]> = [
  [new InvalidInput({ field: "k", message: "k: must be positive" }), 400, "INVALID_ARGUMENT"],
  [new DimensionMismatch({ field: "vector", expected: 3, actual: 4 }), 400, "INVALID_ARGUMENT"],
  [new Unauthenticated({ message: "no key" }), 401, "UNAUTHENTICATED"],
  [new PermissionDenied({ message: "other tenant" }), 403, "PERMISSION_DENIED"],
  [new NotFound({ what: "entity", id: "a" }), 404, "NOT_FOUND"],
  [new PayloadTooLarge({ limitBytes: 10 }), 413, "RESOURCE_EXHAUSTED"],
  [new RateLimited({ retryAfterSeconds: 0.2 }), 429, "RESOURCE_EXHAUSTED"],
  [new DeadlineExceeded({ timeoutMs: 5, operation: "query" }), 504, "DEADLINE_EXCEEDED"],
  [new Unavailable({ message: "stopping" }), 503, "UNAVAILABLE"],
  [new StorageFailure({ operation: "write", message: "EIO at /data/wal/7" }), 500, "INTERNAL"],
  [new Corruption({ file: "/data/sst/1.sst", offset: 9, message: "crc" }), 500, "INTERNAL"],
  [new TenantViolation({ expected: "a", actual: "b", operation: "get" }), 500, "INTERNAL"],
]

describe("ErrorMapping", () => {
  it("maps every ClientError member", () => {
    const tags = ClientError.members.map((m) => m._tag)
    assert.deepStrictEqual([...tags].sort(), Object.keys(ErrorMapping.table).sort())
    assert.strictEqual(samples.length, tags.length)
  })

  it("gives the status and gRPC code of each error", () => {
    for (const [error, status, grpc] of samples) {
      assert.strictEqual(ErrorMapping.httpStatus(error), status, error._tag)
      assert.strictEqual(ErrorMapping.grpcCode(error), grpc, error._tag)
    }
    assert.strictEqual(ErrorMapping.grpcCodeNumber.UNAUTHENTICATED, 16)
    assert.strictEqual(ErrorMapping.grpcCodeValue(samples[0]![0]), 3)
  })

  it("hides internal details and adds the request id", () => {
    const body = ErrorMapping.toErrorBody(samples[9]![0], "req-1")
    assert.strictEqual(body.code, "INTERNAL")
    assert.strictEqual(body.request_id, "req-1")
    assert.isFalse(JSON.stringify(body).includes("EIO"))
    const bad = ErrorMapping.toErrorBody(samples[1]![0], "req-2")
    assert.deepStrictEqual(bad, {
      error: "vector: vector dimension 4 does not match the tenant's dimension 3",
      code: "INVALID_ARGUMENT",
      field: "vector",
    })
  })

  it.effect("answers 429 with Retry-After in whole seconds, at least 1", () =>
    Effect.gen(function* () {
      const response = yield* ErrorMapping.toHttpResponse(new RateLimited({ retryAfterSeconds: 0.2 }))
      assert.strictEqual(response.status, 429)
      assert.strictEqual(response.headers["retry-after"], "1")
      assert.strictEqual(ErrorMapping.retryAfterHeader(2.1), "3")
    }),
  )

  it("names the field path and rule of a schema error", () => {
    const decode = Schema.decodeUnknownEither(Schema.Struct({ entities: Schema.Array(Entity) }))
    const bad = decode({ entities: [{ id: "a" }, { id: "" }] })
    assert.isTrue(Either.isLeft(bad))
    if (Either.isLeft(bad)) {
      const error = ErrorMapping.fromParseError(bad.left)
      assert.strictEqual(error.field, "entities[1].id")
      assert.include(error.message, "entity id must not be empty")
    }
    const nan = decode({ entities: [{ id: "a", vector: [1, Number.NaN] }] })
    if (Either.isLeft(nan)) {
      const error = ErrorMapping.fromParseError(nan.left)
      assert.strictEqual(error.field, "entities[0].vector[1]")
      assert.include(error.message, "finite")
    } else assert.fail("NaN accepted")
    const missing = decode({})
    if (Either.isLeft(missing)) {
      assert.strictEqual(ErrorMapping.fromParseError(missing.left).field, "entities")
      assert.strictEqual(ErrorMapping.fromParseError(missing.left, { prefix: "body" }).field, "body.entities")
    } else assert.fail("missing accepted")
    const version = decode({ entities: [{ id: "a", vector_version: -1 }] })
    if (Either.isLeft(version)) assert.strictEqual(ErrorMapping.fromParseError(version.left).field, "entities[0].vector_version")
    else assert.fail("negative version accepted")
  })
})
