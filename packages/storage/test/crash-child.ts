/**
 * The process the crash test kills: it writes through the engine on the
 * real file system (Disk.layerNode) and reports on stdout, one line each:
 *   I <key> <value|->   before a write starts (intent; "-" = delete)
 *   A <key> <seq>       after the write is acknowledged (durable)
 * Stdout to a pipe is synchronous on Linux, so a line the parent read was
 * written before the next step began. Each key belongs to one writer fiber,
 * so a key has at most one write in flight.
 *
 * Usage: crash-child.ts <dataDir> <seed> [keys] [writers]
 *        crash-child.ts <dataDir> verify [keys]
 * In verify mode it opens the data dir, prints `V <key> <value|->` for every
 * key and `DONE`, and exits: verification runs in its own process so nothing
 * of it (a background compaction, say) can touch the data dir afterwards.
 */
import * as Fs from "node:fs"
import { Entity, entityId, SeededRandom, tenantId } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as StorageEngine from "../src/StorageEngine.js"
import { crashConfig } from "./crashHarness.js"

const [dataDir, seedArg, keysArg, writersArg] = process.argv.slice(2)
const verifying = seedArg === "verify"
if (dataDir === undefined) {
  process.stderr.write("usage: crash-child.ts <dataDir> <seed> [keys] [writers]\n")
  process.exit(2)
}
const KEYS = Number(keysArg ?? 200)
const WRITERS = Number(writersArg ?? 8)
const random = SeededRandom.mulberry32(Number(seedArg ?? 1))
const tenant = tenantId("crash")
/**
 * One report line, written with a blocking write(2) on fd 1 before the next
 * step runs. process.stdout may buffer in user space when the pipe is busy,
 * and a kill -9 would then drop lines about writes that did happen.
 */
const line = (s: string): void => {
  const bytes = Buffer.from(`${s}\n`, "utf8")
  let offset = 0
  while (offset < bytes.length) {
    try {
      offset += Fs.writeSync(1, bytes, offset)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === "EAGAIN") continue // a non-blocking pipe that is full: retry until the parent reads
      if (code === "EPIPE") process.exit(0) // the parent closed the pipe: nothing left to report to
      throw error
    }
  }
}

const program = Effect.gen(function* () {
  const engine = yield* StorageEngine.StorageEngine
  line("READY")
  let counter = 0
  const writer = (w: number) =>
    Effect.gen(function* () {
      while (true) {
        const k = w + WRITERS * Math.floor(random() * Math.ceil(KEYS / WRITERS))
        if (k >= KEYS) continue
        const key = `k${k}`
        const id = entityId(key)
        const remove = random() < 0.2
        const value = `${seedArg}-${counter++}`
        line(`I ${key} ${remove ? "-" : value}`)
        const { seq } = yield* engine.write(tenant, [
          remove
            ? { _tag: "DeleteEntity", tenant, id }
            : {
                _tag: "PutEntity",
                tenant,
                // A padded payload so memtables fill, flush and compact within a round.
                entity: new Entity({ id, metadata: { v: value, pad: "x".repeat(200 + Math.floor(random() * 600)) } }),
              },
        ])
        line(`A ${key} ${seq}`)
      }
    })
  yield* Effect.all(
    Array.from({ length: WRITERS }, (_, w) => writer(w)),
    { concurrency: "unbounded", discard: true },
  )
})

const verify = Effect.gen(function* () {
  const engine = yield* StorageEngine.StorageEngine
  for (let k = 0; k < KEYS; k++) {
    const key = `k${k}`
    const entity = yield* engine.get(tenant, tenant, entityId(key))
    line(`V ${key} ${(entity?.metadata?.v as string | undefined) ?? "-"}`)
  }
  line("DONE")
})

Effect.runPromise(
  (verifying ? verify : (program as Effect.Effect<void, unknown, StorageEngine.StorageEngine>)).pipe(
    Effect.provide(StorageEngine.layerFrom({ dataDir, ...crashConfig })),
    Logger.withMinimumLogLevel(verifying ? LogLevel.Warning : LogLevel.Info),
  ),
).then(() => process.exit(0), (error) => {
  process.stderr.write(`crash-child failed: ${String(error)}\n`)
  process.exit(1)
})
