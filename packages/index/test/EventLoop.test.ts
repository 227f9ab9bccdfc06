/**
 * A bulk load must not freeze the process: while 20,000 vectors are indexed,
 * timers keep firing and concurrent queries keep answering.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const N = 20_000
const DIM = 64

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

describe("event loop", () => {
  it.live(
    "stays free during a bulk load of 20,000 vectors",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const vectors = Harness.clustered({ seed: 99, count: N, dim: DIM, clusters: 32, spread: 0.5 })
          const h = yield* Harness.make({ dataDir: Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-loop-")) })
          yield* h.put([entity("seed", { vector: vectors[0]! })])

          // Rows are built before the clock starts: constructing 20,000 validated
          // entities is the test's own work, not the index's.
          const batches = Array.from({ length: N / 1000 }, (_, b) =>
            vectors.slice(b * 1000, b * 1000 + 1000).map((vector, j) => ({
              _tag: "PutEntity" as const,
              tenant: T,
              entity: entity(`e${b * 1000 + j}`, { vector }),
            })),
          )

          // A "health check": a timer that should fire every 5 ms; its lateness is
          // the stall. CPU time used during each gap tells a stall caused by this
          // process (CPU busy) from the OS running someone else (CPU idle) on a
          // shared machine.
          const gaps: Array<{ wall: number; cpu: number }> = []
          let last = performance.now()
          let lastCpu = process.cpuUsage()
          const timer = setInterval(() => {
            const now = performance.now()
            const cpu = process.cpuUsage(lastCpu)
            gaps.push({ wall: now - last, cpu: (cpu.user + cpu.system) / 1000 })
            last = now
            lastCpu = process.cpuUsage()
          }, 5)
          const histogram = monitorEventLoopDelay({ resolution: 5 })
          histogram.enable()

          const started = performance.now()
          // wait=false style: every batch is written without waiting for the index…
          let lastSeq = 0
          for (const batch of batches) {
            const { seq } = yield* Effect.orDie(h.storage.write(T, batch))
            lastSeq = seq
          }
          // …while queries run concurrently with the load.
          const latencies: Array<number> = []
          let loaded = false
          const queries = Effect.gen(function* () {
            let q = 0
            while (!loaded) {
              const t0 = performance.now()
              yield* h.executor.query(T, request({ vector: vectors[q++ % N]!, k: 10, include_entities: false }))
              latencies.push(performance.now() - t0)
              yield* Effect.sleep("2 millis")
            }
          })
          yield* Effect.all(
            [
              queries,
              h.index.awaitSeq(lastSeq).pipe(
                Effect.tap(() =>
                  Effect.sync(() => {
                    loaded = true
                  }),
                ),
              ),
            ],
            { concurrency: "unbounded" },
          )
          const seconds = (performance.now() - started) / 1000
          clearInterval(timer)
          histogram.disable()
          const wallGaps = gaps.map((g) => g.wall)
          // A gap counts as a stall of this process for the CPU time it burnt in it.
          const busyGaps = gaps.map((g) => Math.min(g.wall, g.cpu))
          const maxBusy = Math.max(...busyGaps)
          console.log(
            `bulk load ${N} × ${DIM}: ${(N / seconds).toFixed(0)} vectors/s; timer gaps p99 ${percentile(wallGaps, 99).toFixed(1)} ms, ` +
              `max ${Math.max(...wallGaps).toFixed(1)} ms wall / ${maxBusy.toFixed(1)} ms CPU-busy; ` +
              `event-loop delay max ${(histogram.max / 1e6).toFixed(1)} ms; ${latencies.length} concurrent queries p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms`,
          )
          assert.strictEqual((yield* h.index.stats)[0]!.vectors, N + 1)
          assert.isAtLeast(latencies.length, 10, "queries ran during the load")
          assert.isBelow(maxBusy, 100, "no stall of 100 ms or more caused by this process")
          assert.isBelow(percentile(latencies, 99), 100, "concurrent queries answer within 100 ms at p99")
        }),
      ),
    120_000,
  )
})
