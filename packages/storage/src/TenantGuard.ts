/**
 * The last line of tenant isolation: every storage call carries the caller's
 * (authenticated) tenant and every key it touches or returns is checked
 * against it. The API refuses cross-tenant requests before storage (403), so a
 * mismatch HERE is a bug in the server. With `failHard` the node stops: the
 * call dies with `TenantIsolationBreach` and `fatal` (which the app races its
 * main fiber with) dies too, and every later check dies as well — the node
 * must not keep serving. Without `failHard` the call fails with core
 * `TenantViolation`. Either way no row crosses tenants.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { TenantViolation } from "@allidb/core"
import * as Metrics from "./Metrics.js"
import { StorageConfig } from "./StorageConfig.js"

/** The defect a fail-hard tenant violation dies with. */
export class TenantIsolationBreach extends Data.TaggedError("TenantIsolationBreach")<{
  readonly expected: string
  readonly actual: string
  readonly operation: string
}> {
  override get message(): string {
    return `tenant isolation breach in ${this.operation}: caller ${JSON.stringify(this.expected)} reached data of tenant ${JSON.stringify(this.actual)}; stopping the node`
  }
}

export interface TenantGuardShape {
  /** Succeeds when `keyTenant` is the caller's tenant. */
  readonly check: (caller: string, keyTenant: string, operation: string) => Effect.Effect<void, TenantViolation>
  /**
   * The reaction to a mismatch found by the caller's own comparison (hot
   * paths compare strings inline and only call this when they differ).
   */
  readonly violation: (caller: string, keyTenant: string, operation: string) => Effect.Effect<never, TenantViolation>
  /** Never succeeds; dies with `TenantIsolationBreach` once a fail-hard violation happened. Race the app's main with it. */
  readonly fatal: Effect.Effect<never>
}

export class TenantGuard extends Context.Tag("@allidb/storage/TenantGuard")<TenantGuard, TenantGuardShape>() {}

export const make: Effect.Effect<TenantGuardShape, never, StorageConfig> = Effect.gen(function* () {
  const config = yield* StorageConfig
  const stopped = yield* Deferred.make<never>()
  let breach: TenantIsolationBreach | undefined

  const violation = (caller: string, keyTenant: string, operation: string): Effect.Effect<never, TenantViolation> =>
    Effect.gen(function* () {
      yield* Metric.increment(Metrics.tenantViolations)
      yield* Effect.logError(
        `tenant violation in ${operation}: caller ${JSON.stringify(caller)} named tenant ${JSON.stringify(keyTenant)}${config.failHard ? "; fail-hard is on: stopping the node" : "; the call is refused"}`,
      ).pipe(Effect.annotateLogs({ expected: caller, actual: keyTenant, operation }))
      if (!config.failHard) {
        return yield* new TenantViolation({ expected: caller, actual: keyTenant, operation })
      }
      const defect = new TenantIsolationBreach({ expected: caller, actual: keyTenant, operation })
      if (breach === undefined) breach = defect
      yield* Deferred.die(stopped, breach)
      return yield* Effect.die(defect)
    })

  // After a fail-hard breach every call dies: the node is stopping.
  const stoppedCheck = Effect.suspend(() => (breach === undefined ? Effect.void : Effect.die(breach)))

  return {
    check: (caller, keyTenant, operation) =>
      caller === keyTenant
        ? breach === undefined
          ? Effect.void
          : stoppedCheck
        : violation(caller, keyTenant, operation),
    violation,
    fatal: Deferred.await(stopped),
  }
})

export const layer: Layer.Layer<TenantGuard, never, StorageConfig> = Layer.effect(TenantGuard, make)
