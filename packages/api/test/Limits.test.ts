import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as TestClock from "effect/TestClock"
import fc from "fast-check"
import * as ApiConfig from "../src/ApiConfig.js"
import * as Limits from "../src/Limits.js"

describe("Limits", () => {
  it("takeToken: a full bucket allows `burst` requests, then one per 1/rate seconds", () => {
    let bucket: Limits.Bucket | undefined
    const take = (now: number) => {
      const result = Limits.takeToken(bucket, now, 2, 3)
      bucket = result.bucket
      return result
    }
    assert.deepStrictEqual([take(0).ok, take(0).ok, take(0).ok, take(0).ok], [true, true, true, false])
    const refused = take(100)
    assert.isFalse(refused.ok)
    if (!refused.ok) assert.closeTo(refused.retryAfterSeconds, 0.4, 1e-9) // 0.2 tokens refilled, 0.8 to go at 2/s
    assert.isTrue(take(500).ok)
    assert.isFalse(take(500).ok)
  })

  it("takeToken never admits more than burst + rate × elapsed (property)", () => {
    const seed = Number(process.env.A1_LIMITS_SEED ?? Date.now() % 2 ** 31)
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 200 }),
        (rate, burst, gaps) => {
          let bucket: Limits.Bucket | undefined
          let now = 0
          let admitted = 0
          for (const gap of gaps) {
            now += gap
            const result = Limits.takeToken(bucket, now, rate, burst)
            bucket = result.bucket
            if (result.ok) admitted++
            else assert.isAbove(result.retryAfterSeconds, 0)
          }
          assert.isAtMost(admitted, burst + (rate * now) / 1000 + 1e-9)
        },
      ),
      { seed, numRuns: 200 },
    )
  })

  it.effect("the rate limiter keeps one bucket per key and refills with the clock", () =>
    Effect.gen(function* () {
      const limiter = yield* Limits.makeRateLimiter.pipe(
        Effect.provide(ApiConfig.layer({ rateLimitPerSec: 1, rateLimitBurst: 1 })),
      )
      yield* limiter.take("a")
      yield* limiter.take("b")
      const refused = yield* Effect.exit(limiter.take("a"))
      assert.isTrue(Exit.isFailure(refused))
      yield* TestClock.adjust("1 second")
      yield* limiter.take("a")
      const off = yield* Limits.makeRateLimiter.pipe(Effect.provide(ApiConfig.layer({ rateLimitPerSec: 0 })))
      for (let i = 0; i < 100; i++) yield* off.take("a")
    }),
  )

  it("request ids: a sane client id is echoed, anything else replaced", () => {
    assert.strictEqual(Limits.pickRequestId("abc-123_x.y:z"), "abc-123_x.y:z")
    for (const bad of [undefined, "", "has space", "x".repeat(129), "new\nline"]) {
      const id = Limits.pickRequestId(bad)
      assert.notStrictEqual(id, bad)
      assert.match(id, /^[0-9a-f-]{36}$/)
    }
    assert.strictEqual(Limits.rateLimitKey(undefined, "10.0.0.1"), "peer:10.0.0.1")
    assert.match(Limits.rateLimitKey("secret", "10.0.0.1"), /^sha256:/)
  })
})
