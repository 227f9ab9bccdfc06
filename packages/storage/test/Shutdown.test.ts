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
    // Per key: every value attempted, in order, and how far acknowledgements got.
    // A write whose caller was interrupted may or may not be applied, so a key
    // reads as its last acknowledged value or a later attempt, never older.
    const attempts = new Map<number, Array<string>>()
    const acked = new Map<number, number>()
    let counter = 0
    let abandoned = (yield* Metric.value(Metrics.compactionsStarted)).count - (yield* Metric.value(Metrics.compactions)).count
    let slowestCloseMs = 0
    let closesDuringCompaction = 0
    for (let round = 0; round < ROUNDS; round++) {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(stackWith(dataDir, compaction), scope)
      const engine = Context.get(context, StorageEngine.StorageEngineAdmin)
      // Everything acknowledged so far survived the previous close.
      for (const [n, index] of acked) {
        const stored = storedValue(yield* engine.get(T, T, id(n)))
        const at = attempts.get(n)!.indexOf(stored as string)
        assert.isAtLeast(at, index, `seed ${seed}, round ${round}, key ${n}: ${stored} is older than the acknowledged write`)
      }
      const writer = Effect.forever(
        Effect.suspend(() => {
          const n = Math.floor(random() * KEYS)
          const value = `${round}-${counter++}-${"x".repeat(200)}`
          const list = attempts.get(n) ?? []
          attempts.set(n, list)
          list.push(value)
          const index = list.length - 1
          return Effect.map(engine.write(T, [put(T, entity(n, value))]), () => {
            if (index > (acked.get(n) ?? -1)) acked.set(n, index)
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
      `[Shutdown ${compaction}] ${ROUNDS} rounds (${closesDuringCompaction} closed during a compaction), slowest close ${slowestCloseMs} ms, ${acked.size} keys`,
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
