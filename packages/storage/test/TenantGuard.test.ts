import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Metrics from "../src/Metrics.js"
import * as StorageConfig from "../src/StorageConfig.js"
import * as TenantGuard from "../src/TenantGuard.js"

const guardWith = (failHard: boolean) =>
  TenantGuard.make.pipe(Effect.provide(StorageConfig.layer({ dataDir: "/unused", failHard })))

const violations = Effect.map(Metric.value(Metrics.tenantViolations), (s) => s.count)

const defectOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined

describe("TenantGuard", () => {
  it.effect("the caller's own tenant passes", () =>
    Effect.gen(function* () {
      const guard = yield* guardWith(true)
      yield* guard.check("acme", "acme", "get")
    }),
  )

  it.effect("failHard=false: a mismatch fails with TenantViolation and is counted", () =>
    Effect.gen(function* () {
      const guard = yield* guardWith(false)
      const before = yield* violations
      const error = yield* Effect.flip(guard.check("acme", "globex", "get"))
      assert.strictEqual(error._tag, "TenantViolation")
      assert.strictEqual(error.expected, "acme")
      assert.strictEqual(error.actual, "globex")
      assert.strictEqual((yield* violations) - before, 1)
      // The node keeps serving its own tenant.
      yield* guard.check("acme", "acme", "get")
      const fatal = yield* Effect.fork(guard.fatal)
      yield* Effect.yieldNow()
      assert.isTrue(Option.isNone(yield* fatal.poll))
      yield* Fiber.interrupt(fatal)
    }),
  )

  it.effect("failHard=true: a mismatch dies with TenantIsolationBreach, trips `fatal`, and later calls die", () =>
    Effect.gen(function* () {
      const guard = yield* guardWith(true)
      const fatal = yield* Effect.fork(guard.fatal)
      const before = yield* violations
      const exit = yield* Effect.exit(guard.check("acme", "globex", "write"))
      const defect = defectOf(exit)
      assert.instanceOf(defect, TenantGuard.TenantIsolationBreach)
      assert.strictEqual((defect as TenantGuard.TenantIsolationBreach).operation, "write")
      assert.strictEqual((yield* violations) - before, 1)
      const fatalExit = yield* Fiber.await(fatal)
      assert.instanceOf(defectOf(fatalExit), TenantGuard.TenantIsolationBreach)
      // Even a correct call dies now: the node is stopping.
      assert.instanceOf(defectOf(yield* Effect.exit(guard.check("acme", "acme", "get"))), TenantGuard.TenantIsolationBreach)
    }),
  )
})
