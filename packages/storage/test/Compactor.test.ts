import { Entity, entityId, GraphEdge, Hlc, relation, tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as fc from "fast-check"
import * as Compactor from "../src/Compactor.js"
import * as Disk from "../src/Disk.js"
import * as Memtable from "../src/Memtable.js"
import * as Row from "../src/Row.js"
import * as StorageConfig from "../src/StorageConfig.js"
import * as Reader from "../src/SSTableReader.js"
import * as SSTableStore from "../src/SSTableStore.js"
import * as Arb from "./Row.arbitraries.js"
import { trapDisk } from "./SSTableStore.trapDisk.js"

const GRACE_MS = 1_000

const stack = (fs: Disk.MemoryFileSystem, background = false) => {
  const base = Layer.merge(
    Disk.layerMemoryFrom(fs),
    StorageConfig.layer({
      dataDir: "/data",
      blockBytes: 200,
      blockCacheBytes: 8 * 1024,
      // max 2: most compactions take a subset of the tables, which is where a
      // purged tombstone could resurrect data held by a table outside it
      compactionMinThreshold: 2,
      compactionMaxThreshold: 2,
      compactionMbPerSec: 0,
      tombstoneGraceMs: GRACE_MS,
    }),
  )
  const store = SSTableStore.layer.pipe(Layer.provideMerge(base))
  return Layer.mergeAll(
    (background ? Compactor.layer : Compactor.layerManual).pipe(Layer.provideMerge(store)),
    Memtable.layer,
  )
}

describe("Compactor buckets", () => {
  it("groups tables of similar size and picks the smallest qualifying bucket", () => {
    const MiB = 1024 * 1024
    const t = (id: number, mib: number) => ({ id, fileBytes: mib * MiB })
    const tables = [t(1, 0.1), t(2, 0.5), t(3, 10), t(4, 11), t(5, 9), t(6, 40), t(7, 12), t(8, 0.2)]
    assert.deepStrictEqual(
      Compactor.bucketsOf(tables).map((b) => b.map((x) => x.id)),
      [[1, 8, 2], [5, 3, 4, 7], [6]],
    )
    assert.deepStrictEqual(Compactor.pickCompactionBucket(tables, 4, 32)?.map((x) => x.id), [5, 3, 4, 7])
    assert.deepStrictEqual(Compactor.pickCompactionBucket(tables, 3, 2)?.map((x) => x.id), [1, 8])
    assert.isUndefined(Compactor.pickCompactionBucket(tables, 5, 32))
  })

  it.effect("the byte limiter holds the configured rate (TestClock)", () =>
    Effect.gen(function* () {
      const limiter = yield* Compactor.makeByteLimiter(1000, 1000)
      const fiber = yield* Effect.fork(Effect.forEach([1000, 1000, 1000], limiter.take, { discard: true }))
      yield* TestClock.adjust("1999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("2 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(fiber)))
    }),
  )
})

type Op =
  | { readonly _tag: "put"; readonly id: string; readonly type: string }
  | { readonly _tag: "delete"; readonly id: string }
  | { readonly _tag: "edge"; readonly id: string; readonly to: string; readonly remove: boolean }
  | { readonly _tag: "flush" }
  | { readonly _tag: "compact" }
  | { readonly _tag: "compactAll" }
  | { readonly _tag: "tick"; readonly ms: number }
  | { readonly _tag: "scan"; readonly start: string; readonly end: string }

const ids = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
const idArb = fc.constantFrom(...ids)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ _tag: fc.constant("put" as const), id: idArb, type: fc.constantFrom("x", "y", "z") }) },
  { weight: 4, arbitrary: fc.record({ _tag: fc.constant("delete" as const), id: idArb }) },
  {
    weight: 4,
    arbitrary: fc.record({ _tag: fc.constant("edge" as const), id: idArb, to: idArb, remove: fc.boolean() }),
  },
  { weight: 3, arbitrary: fc.constant({ _tag: "flush" as const }) },
  { weight: 2, arbitrary: fc.constant({ _tag: "compact" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "compactAll" as const }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 1500 }) }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("scan" as const), start: idArb, end: idArb }) },
)

interface ModelEntity {
  readonly type: string
  readonly edges: ReadonlySet<string>
}

const tenant = tenantId("t")

const checkCompacted = (expected: ReadonlyMap<string, number>) =>
  Effect.gen(function* () {
    const store = yield* SSTableStore.SSTableStore
    for (const id of ids) {
      const row = yield* store.get(Row.makeKey(tenant, id))
      const meta = row === undefined ? undefined : Row.toEntity(entityId(id), row)
      assert.strictEqual(meta?.importance, expected.get(id), id)
    }
    const all = yield* Effect.scoped(Effect.flatMap(store.scan(), (c) => Reader.collect(c)))
    const live = all.filter((e) => Row.toEntity(Row.parseKey(e.key).id, e.row) !== undefined)
    assert.strictEqual(live.length, expected.size)
  })

/**
 * A clock moved by hand (TestClock.adjust waits on real timers, ~25 ms per
 * call, too slow for thousands of operations). Sleeping advances it.
 */
const manualClock = () => {
  let now = 0
  const clock: Clock.Clock & { readonly advance: (ms: number) => void } = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeMillis: Effect.sync(() => now),
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep: (d) =>
      Effect.sync(() => {
        now += Duration.toMillis(d)
      }),
    advance: (ms) => {
      now += ms
    },
  }
  return clock
}

describe("Compactor", () => {
  it.effect(
    "memtable + flush + compaction with overwrites and deletes match an in-memory model (property)",
    () =>
      Effect.gen(function* () {
        const seed = Arb.seed("Compactor.model")
        let totalOps = 0
        let purgedTotal = 0
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 120 }), async (ops) => {
              totalOps += ops.length
              const fs = Disk.makeMemoryFileSystem()
              const clock = manualClock()
              const program = Effect.gen(function* () {
                const memtable = yield* Memtable.Memtable
                const store = yield* SSTableStore.SSTableStore
                const compactor = yield* Compactor.Compactor
                const model = new Map<string, ModelEntity>()
                // rows that exist only as edges (an edge on a missing entity) are "live" in storage too
                const edgeOnly = new Map<string, Set<string>>()
                let seq = 0
                let logical = 0
                const nextTs = Effect.map(Clock.currentTimeMillis, (ms) => ({
                  wall: ms * Hlc.LOGICAL_SPAN + (logical++ % Hlc.LOGICAL_SPAN),
                  node: 1,
                }))

                const read = (id: string) =>
                  Effect.gen(function* () {
                    const key = Row.makeKey(tenant, id)
                    const mem = yield* memtable.get(key)
                    const disk = yield* store.get(key)
                    const row = mem === undefined ? disk : disk === undefined ? mem : Row.merge(mem, disk)
                    return row === undefined ? undefined : Row.toEntity(entityId(id), row)
                  })
                const expectedOf = (id: string): { type: string | undefined; edges: Array<string> } | undefined => {
                  const m = model.get(id)
                  if (m !== undefined) return { type: m.type, edges: [...m.edges].sort() }
                  const e = edgeOnly.get(id)
                  return e === undefined || e.size === 0 ? undefined : { type: undefined, edges: [...e].sort() }
                }
                const check = (id: string) =>
                  Effect.gen(function* () {
                    const got = yield* read(id)
                    const want = expectedOf(id)
                    const gotShape =
                      got === undefined
                        ? undefined
                        : { type: got.type, edges: (got.edges ?? []).map((e) => e.to as string).sort() }
                    assert.deepStrictEqual(gotShape, want, `entity ${id}`)
                  })

                for (const op of ops) {
                  switch (op._tag) {
                    case "put": {
                      const ts = yield* nextTs
                      yield* memtable.apply([
                        Row.fromMutation(
                          { _tag: "PutEntity", tenant, entity: new Entity({ id: entityId(op.id), type: op.type }) },
                          ts,
                          ++seq,
                        ),
                      ])
                      model.set(op.id, { type: op.type, edges: new Set() })
                      edgeOnly.delete(op.id)
                      break
                    }
                    case "delete": {
                      const ts = yield* nextTs
                      yield* memtable.apply([Row.fromMutation({ _tag: "DeleteEntity", tenant, id: entityId(op.id) }, ts, ++seq)])
                      model.delete(op.id)
                      edgeOnly.delete(op.id)
                      break
                    }
                    case "edge": {
                      const ts = yield* nextTs
                      const from = entityId(op.id)
                      const mutation = op.remove
                        ? ({ _tag: "DeleteEdge", tenant, from, to: entityId(op.to), relation: relation("r") } as const)
                        : ({
                            _tag: "PutEdge",
                            tenant,
                            from,
                            edge: new GraphEdge({ to: entityId(op.to), relation: relation("r") }),
                          } as const)
                      yield* memtable.apply([Row.fromMutation(mutation, ts, ++seq)])
                      const m = model.get(op.id)
                      const edges = new Set(m?.edges ?? edgeOnly.get(op.id) ?? [])
                      if (op.remove) edges.delete(op.to)
                      else edges.add(op.to)
                      if (m !== undefined) model.set(op.id, { type: m.type, edges })
                      else edgeOnly.set(op.id, edges)
                      break
                    }
                    case "flush": {
                      const frozen = yield* memtable.freezeActive
                      if (frozen !== undefined) {
                        yield* store.flush(frozen.entries(), frozen.maxSeq)
                        yield* memtable.releaseFrozen(frozen.id)
                        assert.strictEqual(yield* store.flushedSeq, frozen.maxSeq)
                      }
                      break
                    }
                    case "compact": {
                      const r = yield* compactor.compactNow
                      purgedTotal += r?.tombstonesPurged ?? 0
                      break
                    }
                    case "compactAll": {
                      const r = yield* compactor.compactAll
                      purgedTotal += r?.tombstonesPurged ?? 0
                      break
                    }
                    case "tick":
                      clock.advance(op.ms)
                      break
                    case "scan": {
                      const start = Row.makeKey(tenant, op.start)
                      const end = Row.makeKey(tenant, op.end)
                      const got = yield* Effect.scoped(
                        Effect.gen(function* () {
                          const mem = yield* memtable.scan(start, end)
                          const tables = yield* store.scan(start, end)
                          const rows = yield* Reader.collect(Reader.merge([Reader.fromIterable(mem), tables]))
                          return rows.flatMap(({ key, row }) => {
                            const id = Row.parseKey(key).id
                            return Row.toEntity(id, row) === undefined ? [] : [id as string]
                          })
                        }),
                      )
                      const want = ids.filter((id) => id >= op.start && id < op.end && expectedOf(id) !== undefined)
                      assert.deepStrictEqual(got, want, `scan [${op.start}, ${op.end})`)
                      break
                    }
                  }
                }
                for (const id of ids) yield* check(id)
                // and after everything is flushed and fully compacted, long past the grace period
                const frozen = yield* memtable.freezeActive
                if (frozen !== undefined) {
                  yield* store.flush(frozen.entries(), frozen.maxSeq)
                  yield* memtable.releaseFrozen(frozen.id)
                }
                clock.advance(GRACE_MS * 10)
                const r = yield* compactor.compactAll
                purgedTotal += r?.tombstonesPurged ?? 0
                for (const id of ids) yield* check(id)
                const tables = yield* store.tables
                assert.isAtMost(tables.length, 1)
                assert.strictEqual(tables[0]?.properties.tombstones ?? 0, 0, "every tombstone purged after the grace period")
              })
              await Effect.runPromise(
                program.pipe(
                  Effect.provide(stack(fs)),
                  Effect.scoped,
                  Effect.withClock(clock),
                  Logger.withMinimumLogLevel(LogLevel.None),
                ),
              )
            }),
            { numRuns: 70, seed },
          ),
        )
        console.log(`[Compactor.model] ${totalOps} random operations checked; ${purgedTotal} tombstones purged`)
        assert.isAbove(purgedTotal, 0)
      }),
    { timeout: 60_000 },
  )

  it.effect("compactNow interrupted at every disk operation leaves the live set readable and complete", () =>
    Effect.gen(function* () {
      let interrupted = 0
      for (let n = 0; n < 300; n++) {
        const fs = Disk.makeMemoryFileSystem()
        const trap = trapDisk(fs.disk())
        const expected = new Map<string, number>()
        const clock = manualClock()
        clock.advance(10_000)
        const layer = Compactor.layerManual.pipe(
          Layer.provideMerge(SSTableStore.layer),
          Layer.provideMerge(
            Layer.merge(
              Layer.succeed(Disk.Disk, trap.disk),
              StorageConfig.layer({ dataDir: "/data", blockBytes: 200, compactionMinThreshold: 3, tombstoneGraceMs: 0 }),
            ),
          ),
        )
        const result = yield* Effect.gen(function* () {
          const store = yield* SSTableStore.SSTableStore
          const compactor = yield* Compactor.Compactor
          for (let t = 0; t < 3; t++) {
            const rows = ids.map((id, i) => {
              // table t deletes every third id it wrote before, so there are tombstones to purge
              const deleted = t > 0 && (i + t) % 3 === 0
              if (deleted) expected.delete(id)
              else expected.set(id, t)
              return {
                key: Row.makeKey(tenant, id),
                row: deleted
                  ? ({ deletedAt: { wall: t + 1, node: 0 }, cells: new Map(), seq: t + 1 } as Row.Row)
                  : ({
                      deletedAt: undefined,
                      cells: new Map([["m", { ts: { wall: t + 1, node: 0 }, value: { _tag: "Meta", importance: t } }]]),
                      seq: t + 1,
                    } as Row.Row),
              }
            })
            yield* store.flush(rows, t + 1)
          }
          trap.arm(n)
          const exit = yield* Effect.exit(compactor.compactNow)
          trap.arm(-1)
          if (Exit.isSuccess(exit)) {
            // the completed compaction purged every tombstone (grace 0, clock far past them)
            assert.isAbove(exit.value?.tombstonesPurged ?? 0, 0)
            assert.strictEqual((yield* store.tables)[0]?.properties.tombstones, 0)
          }
          return exit
        }).pipe(
          Effect.zipLeft(checkCompacted(expected)),
          Effect.provide(layer),
          Effect.scoped,
          Effect.withClock(clock),
          Logger.withMinimumLogLevel(LogLevel.None),
        )
        // reopen (after a crash too) and check again
        const reopen = Compactor.layerManual.pipe(
          Layer.provideMerge(SSTableStore.layer),
          Layer.provideMerge(Layer.merge(Disk.layerMemoryFrom(fs), StorageConfig.layer({ dataDir: "/data" }))),
        )
        yield* checkCompacted(expected).pipe(Effect.provide(reopen), Effect.scoped)
        fs.crash()
        yield* checkCompacted(expected).pipe(Effect.provide(reopen), Effect.scoped)
        if (result._tag === "Success") break
        assert.isTrue(Exit.isInterrupted(result), String(result))
        interrupted++
      }
      assert.isAbove(interrupted, 5)
    }),
  )

  it.effect("the background loop compacts once a bucket fills", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* Effect.gen(function* () {
        const store = yield* SSTableStore.SSTableStore
        for (let t = 0; t < 3; t++) {
          const rows = ids.map((id) => ({
            key: Row.makeKey(tenant, id),
            row: { deletedAt: { wall: t + 1, node: 0 }, cells: new Map(), seq: t + 1 } as Row.Row,
          }))
          yield* store.flush(rows, t + 1)
        }
        assert.strictEqual((yield* store.tables).length, 3)
        yield* TestClock.adjust(Compactor.IDLE_INTERVAL)
        assert.strictEqual((yield* store.tables).length, 1)
      }).pipe(Effect.provide(stack(fs, true)), Effect.scoped)
    }),
  )
})
