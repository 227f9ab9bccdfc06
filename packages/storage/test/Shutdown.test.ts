/**
 * Shutdown while the engine is busy: the engine is opened and closed again and
 * again on the node file system while writers write and background
 * compactions (rate-limited, so a close usually lands in the middle of one)
 * run. Every close must finish promptly, log no error (e.g. a WAL sync on a
 * closed file), and the next open must see every acknowledged write.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import * as Compactor from "../src/Compactor.js"
import * as Disk from "../src/Disk.js"
import * as Memtable from "../src/Memtable.js"
import * as Metrics from "../src/Metrics.js"
import * as SSTableStore from "../src/SSTableStore.js"
import * as StorageConfig from "../src/StorageConfig.js"
import * as StorageEngine from "../src/StorageEngine.js"
import * as TenantGuard from "../src/TenantGuard.js"
import * as Wal from "../src/Wal.js"
import type { Entity } from "@allidb/core"
import { entity, id, put, rng, smallConfig, T } from "./engineHarness.js"

const storedValue = (e: Entity | undefined) => e?.metadata?.v

const roots: Array<string> = []
afterAll(() => {
  for (const root of roots) Fs.rmSync(root, { recursive: true, force: true })
})

const ROUNDS = 20
const KEYS = 200

/** The stack with a given compactor layer (the background one, or layerFrom's). */
const stackWith = (dataDir: string, compaction: "background" | "layerFrom") => {
  const config = { ...smallConfig, dataDir, compactionMbPerSec: 0.01 }
  if (compaction === "layerFrom") return StorageEngine.layerFrom(config)
  const base = Layer.merge(Disk.layerNode, StorageConfig.layer(config))
  const parts = Layer.mergeAll(Wal.layer, Memtable.layer, SSTableStore.layer, TenantGuard.layer).pipe(
    Layer.provideMerge(base),
  )
  return StorageEngine.layer.pipe(Layer.provideMerge(Compactor.layer.pipe(Layer.provideMerge(parts))))
}

const openCloseRounds = (compaction: "background" | "layerFrom") => {
  const errors: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) errors.push(`${logLevel.label}: ${String(message)}`)
  })
  return Effect.gen(function* () {
    const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-shutdown-"))
    roots.push(dataDir)
    const seed = Date.now() % 100_000
    console.log(`[Shutdown ${compaction}] seed ${seed}`)
    const random = rng(seed)
    // Per key: every write attempted, with the logical time it started and the
    // time it was acknowledged (none when its caller was interrupted: it may or
    // may not be applied). Writes to one key from different writers can overlap,
    // and the engine may order overlapping writes either way, so the rule is the
    // one of a linearizable register: the stored value must not come from a
    // write that was acknowledged before another acknowledged write to the key
    // started (that one is certainly later), and a key with an acknowledged
    // write must have a value.
    interface Attempt {
      readonly value: string
      readonly start: number
      ack: number | undefined
    }
    const attempts = new Map<number, Array<Attempt>>()
    let clock = 0
    let counter = 0
    let abandoned = (yield* Metric.value(Metrics.compactionsStarted)).count - (yield* Metric.value(Metrics.compactions)).count
    let slowestCloseMs = 0
    let closesDuringCompaction = 0
    for (let round = 0; round < ROUNDS; round++) {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(stackWith(dataDir, compaction), scope)
      const engine = Context.get(context, StorageEngine.StorageEngineAdmin)
      // Everything acknowledged so far survived the previous close.
      for (const [n, list] of attempts) {
        const acked = list.filter((a) => a.ack !== undefined)
        if (acked.length === 0) continue
        const stored = storedValue(yield* engine.get(T, T, id(n)))
        const found = list.find((a) => a.value === stored)
        assert.isDefined(found, `seed ${seed}, round ${round}, key ${n}: an acknowledged write is lost (read ${stored})`)
        const later = acked.find((w) => found!.ack !== undefined && w.start > found!.ack)
        assert.isUndefined(
          later,
          `seed ${seed}, round ${round}, key ${n}: read ${found!.value.slice(0, 12)}…, but ${later?.value.slice(0, 12)}… was acknowledged and started after it was acknowledged`,
        )
      }
      const writer = Effect.forever(
        Effect.suspend(() => {
          const n = Math.floor(random() * KEYS)
          const value = `${round}-${counter++}-${"x".repeat(200)}`
          const list = attempts.get(n) ?? []
          attempts.set(n, list)
          const attempt: Attempt = { value, start: clock++, ack: undefined }
          list.push(attempt)
          return Effect.map(engine.write(T, [put(T, entity(n, value))]), () => {
            attempt.ack = clock++
          })
        }),
      )
      const writers = yield* Effect.forkDaemon(
        Effect.all([writer, writer, writer], { concurrency: "unbounded", discard: true }).pipe(Effect.ignore),
      )
      yield* Effect.sleep(`${20 + Math.floor(random() * 120)} millis`)
      // Writers stop before the close (a write refused by a closing engine would not be acknowledged anyway).
      yield* Fiber.interrupt(writers)
      const { count: startedCompactions } = yield* Metric.value(Metrics.compactionsStarted)
      const { count: finishedCompactions } = yield* Metric.value(Metrics.compactions)
      if (startedCompactions > finishedCompactions + abandoned) closesDuringCompaction++
      const started = Date.now()
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("8 seconds"), Effect.option)
      assert.isTrue(closed._tag === "Some", `seed ${seed}: close of round ${round} did not finish within 8 s`)
      slowestCloseMs = Math.max(slowestCloseMs, Date.now() - started)
      abandoned = (yield* Metric.value(Metrics.compactionsStarted)).count - (yield* Metric.value(Metrics.compactions)).count
    }
    console.log(
      `[Shutdown ${compaction}] ${ROUNDS} rounds (${closesDuringCompaction} closed during a compaction), slowest close ${slowestCloseMs} ms, ${attempts.size} keys`,
    )
    // The point of the test: closes that cut a compaction short.
    assert.isAbove(closesDuringCompaction, 0, `seed ${seed}`)
    assert.deepStrictEqual(errors, [], `seed ${seed}`)
  }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
}

describe("StorageEngine shutdown", () => {
  it.live(
    "open/close under writes and background compactions: closes finish, nothing is lost, no errors",
    () => openCloseRounds("background"),
    120_000,
  )
})
