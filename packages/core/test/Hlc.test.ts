import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as Hlc from "../src/Hlc.js"

describe("Hlc", () => {
  it.effect("strictly increases even when the clock does not move", () =>
    Effect.gen(function* () {
      const clock = yield* Hlc.make("node1")
      yield* TestClock.setTime(1_000)
      const a = yield* clock.now
      const b = yield* clock.now
      assert.isTrue(Hlc.compare(a, b) < 0)
      assert.strictEqual(Hlc.physicalMillis(a), 1_000)
    }))

  it.effect("never goes back after observing a remote timestamp", () =>
    Effect.gen(function* () {
      const clock = yield* Hlc.make("node1")
      yield* TestClock.setTime(1_000)
      yield* clock.observe({ wall: Hlc.fromMillis(5_000).wall, node: 7 })
      const a = yield* clock.now
      assert.isTrue(a.wall > Hlc.fromMillis(5_000).wall)
    }))

  it("orders by wall then node", () => {
    assert.strictEqual(Hlc.compare({ wall: 1, node: 9 }, { wall: 2, node: 0 }), -1)
    assert.strictEqual(Hlc.compare({ wall: 2, node: 1 }, { wall: 2, node: 0 }), 1)
    assert.strictEqual(Hlc.compare({ wall: 2, node: 1 }, { wall: 2, node: 1 }), 0)
  })
})
