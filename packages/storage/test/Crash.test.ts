/**
 * kill -9 crash test with real processes: a child writes through the engine
 * on the real file system with acknowledgements and is killed at random
 * moments; after each kill the data dir is reopened and every acknowledged
 * write must be there with its latest value, and no deleted row may return.
 * `scripts/crash-storage` runs the same harness for 200 rounds.
 */
import { assert, describe, it } from "@effect/vitest"
import { runCrashRounds } from "./crashHarness.js"

describe("Crash", () => {
  it("20 rounds of kill -9 lose no acknowledged write", { timeout: 240_000 }, async () => {
    const seed = Number(process.env.ALLIDB_SEED ?? Date.now() % 1_000_000)
    const summary = await runCrashRounds({ rounds: 20, seed, minKillMs: 30, maxKillMs: 400 }).catch((error) => {
      throw new Error(`crash test failed; replay with ALLIDB_SEED=${seed}: ${error instanceof Error ? error.message : error}`)
    })
    // The rounds did real work: writes were acknowledged and some were cut off mid-flight.
    assert.isAbove(summary.acknowledged, 100, `seed ${seed}`)
    assert.isAbove(summary.inflightAtKill, 0, `seed ${seed}`)
  })
})
