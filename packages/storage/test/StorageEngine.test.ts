import { Entity, GraphEdge, relation } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Disk from "../src/Disk.js"
import * as Metrics from "../src/Metrics.js"
import type * as StorageEngine from "../src/StorageEngine.js"
import * as TenantGuard from "../src/TenantGuard.js"
import { boot, type Config, del, entity, id, OTHER, put, rng, smallConfig, T } from "./engineHarness.js"

/** Runs `f` against one boot of the engine on `fs`, then stops it cleanly. */
const withEngine = <A, E>(
  fs: Disk.MemoryFileSystem,
  config: Config,
  f: (engine: StorageEngine.Engine) => Effect.Effect<A, E, Scope.Scope>,
) =>
  Effect.scoped(Effect.flatMap(Effect.flatMap(Effect.scope, (scope) => boot(fs, scope, config)), (b) => f(b.engine)))

const storedValue = (e: Entity | undefined): string | undefined => e?.metadata?.v as string | undefined

/** Runs `f` on a fresh in-memory engine with compaction out of the way, and a seeded random source it prints on failure. */
const withRandomWorkload = <A, E>(
  f: (engine: StorageEngine.Engine, random: () => number, seed: number) => Effect.Effect<A, E, Scope.Scope>,
) => {
  const seed = Date.now() % 100_000
  return withEngine(Disk.makeMemoryFileSystem(), { ...smallConfig, compactionMinThreshold: 1000 }, (engine) =>
    f(engine, rng(seed), seed),
  )
}

/** The n of the harness's id(n) a mutation writes. */
const numberOf = (m: StorageEngine.Mutation): number =>
  Number((m._tag === "PutEntity" ? m.entity.id : m._tag === "DeleteEntity" ? m.id : m.from).slice(1))

describe("StorageEngine", () => {
  it.live("getMany answers what get answers, for rows in memtables, in tables, in both, deleted and absent", () =>
    withRandomWorkload((engine, random, seed) =>
      Effect.gen(function* () {
        for (let step = 0; step < 600; step++) {
          const n = Math.floor(random() * 80)
          const r = random()
          if (r < 0.15) yield* engine.write(T, [del(T, n)])
          else yield* engine.write(T, [put(T, entity(n, `v${step}`, r < 0.5 ? { createdAt: step } : {}))])
          if (step % 150 === 149) yield* engine.flush
        }
        // Keys no table holds (fresh since the last flush), a deleted one, and overwrites of flushed ones.
        for (let n = 200; n < 230; n++) yield* engine.write(T, [put(T, entity(n, `fresh${n}`))])
        yield* engine.write(T, [del(T, 205), put(T, entity(3, "over")), put(T, entity(4, "over"))])
        const ids = [...Array.from({ length: 100 }, (_, n) => id(n)), ...Array.from({ length: 40 }, (_, n) => id(200 + n))]
        const one = yield* Effect.forEach(ids, (i) => engine.get(T, T, i))
        const many = yield* engine.getMany(T, T, ids)
        assert.deepStrictEqual(many, one, `seed ${seed}`)
        assert.isAbove(many.filter((e) => e !== undefined).length, 0)
      }),
    ),
  )

  it.live("a commit's stored entity is what a read right after it returns, and is offered only for fresh keys", () =>
    withRandomWorkload((engine, random, seed) =>
      Effect.gen(function* () {
        const events = yield* engine.subscribe
        let offered = 0
        let freshPuts = 0
        const written = new Set<number>()
        for (let step = 0; step < 400; step++) {
          const n = Math.floor(random() * 300)
          const r = random()
          const batch =
            r < 0.1
              ? [del(T, n)]
              : r < 0.2
                ? [put(T, entity(n, `v${step}`)), put(T, entity((n + 1) % 300, `w${step}`))]
                : [put(T, entity(n, `v${step}`, r < 0.5 ? { createdAt: step } : {}))]
          const fresh = batch.map((m) => m._tag === "PutEntity" && !written.has(numberOf(m)))
          if (batch.length === 1 && fresh[0] === true) freshPuts++
          yield* engine.write(T, batch)
          for (const m of batch) written.add(numberOf(m))
          for (const event of Chunk.toReadonlyArray(yield* Queue.takeAll(events))) {
            for (let j = 0; j < event.ids.length; j++) {
              const stored = event.stored?.(j)
              if (stored === undefined) continue
              offered++
              assert.isTrue(fresh[j], `step ${step}: offered for a key already written (seed ${seed})`)
              assert.deepStrictEqual(stored, yield* engine.get(T, T, event.ids[j]!), `step ${step} (seed ${seed})`)
            }
          }
          if (step % 100 === 99) yield* engine.flush
        }
        // Every single fresh put is offered (its key is in no memtable, and
        // no bloom filter of these few tables claims it but rarely).
        assert.isAtLeast(offered, Math.floor(freshPuts * 0.9), `seed ${seed}`)
      }),
    ),
  )

  it.live("put, get, overwrite keeps createdAt, delete, edges, getMany, commit events in order", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withEngine(fs, {}, (engine) =>
        Effect.gen(function* () {
          const events = yield* engine.subscribe
          const first = yield* engine.write(T, [put(T, entity(1, "a", { createdAt: 1000 }))])
          const second = yield* engine.write(T, [put(T, entity(1, "b")), put(T, entity(2, "c"))])
          assert.isAbove(second.seq, first.seq)
          const one = yield* engine.get(T, T, id(1))
          assert.strictEqual(storedValue(one), "b")
          assert.strictEqual(one?.createdAt, 1000, "a PutEntity without createdAt keeps the stored one")
          const edge = new GraphEdge({ to: id(2), relation: relation("cites"), weight: 0.5 })
          yield* engine.write(T, [{ _tag: "PutEdge", tenant: T, from: id(1), edge }])
          assert.deepStrictEqual(
            (yield* engine.get(T, T, id(1)))?.edges?.map((e) => [e.to, e.relation, e.weight]),
            [[id(2), "cites", 0.5]],
          )
          yield* engine.write(T, [{ _tag: "DeleteEdge", tenant: T, from: id(1), to: id(2), relation: relation("cites") }])
          assert.isUndefined((yield* engine.get(T, T, id(1)))?.edges)
          // Delete then put in ONE batch: the later mutation wins.
          yield* engine.write(T, [del(T, 2), put(T, entity(2, "again"))])
          assert.strictEqual(storedValue(yield* engine.get(T, T, id(2))), "again")
          const last = yield* engine.write(T, [del(T, 1)])
          const many = yield* engine.getMany(T, T, [id(1), id(2), id(3)])
          assert.deepStrictEqual(many.map(storedValue), [undefined, "again", undefined])
          assert.strictEqual(yield* engine.lastSeq, last.seq)
          const seen = Chunk.toReadonlyArray(yield* Queue.takeAll(events))
          assert.deepStrictEqual(
            seen.map((e) => e.seq),
            Array.from({ length: seen.length }, (_, i) => first.seq + i),
          )
          assert.deepStrictEqual(seen[1]!.ids, [id(1), id(2)])
          assert.strictEqual(seen[0]!.tenant, T)
        }),
      )
    }),
  )

  it.live("seqs and data survive clean restarts, also after the WAL was cut by a flush", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const a = yield* withEngine(fs, {}, (engine) =>
        Effect.gen(function* () {
          yield* engine.write(T, [put(T, entity(1, "x"))])
          yield* engine.flush
          return yield* engine.write(T, [put(T, entity(2, "y"))])
        }),
      )
      yield* withEngine(fs, {}, (engine) =>
        Effect.gen(function* () {
          assert.strictEqual(yield* engine.lastSeq, a.seq)
          assert.strictEqual(storedValue(yield* engine.get(T, T, id(1))), "x")
          assert.strictEqual(storedValue(yield* engine.get(T, T, id(2))), "y")
          yield* engine.flush
        }),
      )
      // Everything is in tables now and the WAL holds nothing: seq still moves on.
      const b = yield* withEngine(fs, {}, (engine) => engine.write(T, [put(T, entity(3, "z"))]))
      assert.isAbove(b.seq, a.seq)
    }),
  )

  it.live("range scans page across the memtable and several tables", () =>
    Effect.gen(function* () {
      const seed = Number(process.env.ALLIDB_SEED ?? Date.now() % 100_000)
      const random = rng(seed)
      const fs = Disk.makeMemoryFileSystem()
      const model = new Map<number, string>()
      yield* withEngine(fs, { ...smallConfig, compactionMinThreshold: 1000 }, (engine) =>
        Effect.gen(function* () {
          for (let i = 0; i < 600; i++) {
            const n = Math.floor(random() * 150)
            if (random() < 0.2) {
              yield* engine.write(T, [del(T, n)])
              model.delete(n)
            } else {
              const value = `v${i}`
              yield* engine.write(T, [put(T, entity(n, value))])
              model.set(n, value)
            }
            if (random() < 0.01) yield* engine.flush
            // Another tenant interleaved in the key space must never show up.
            if (i % 50 === 0) yield* engine.write(OTHER, [put(OTHER, entity(n, "other"))])
          }
          const expected = [...model.entries()].sort((x, y) => x[0] - y[0])
          for (const limit of [1, 7, 50, 1000]) {
            const got: Array<[string, string | undefined]> = []
            let pageToken: string | undefined
            do {
              const page: StorageEngine.ScanResult = yield* engine.scan(T, T, {
                limit,
                ...(pageToken === undefined ? {} : { pageToken }),
              })
              assert.isAtMost(page.entities.length, limit)
              for (const e of page.entities) got.push([e.id, storedValue(e)])
              pageToken = page.nextPageToken
            } while (pageToken !== undefined)
            assert.deepStrictEqual(
              got,
              expected.map(([n, v]) => [id(n), v]),
              `seed ${seed}, limit ${limit}`,
            )
          }
          const bounded = yield* engine.scan(T, T, { start: id(20), end: id(40), limit: 1000 })
          assert.deepStrictEqual(
            bounded.entities.map((e) => e.id),
            expected.filter(([n]) => n >= 20 && n < 40).map(([n]) => id(n)),
            `seed ${seed}`,
          )
          assert.deepStrictEqual(yield* engine.tenants, [T, OTHER].sort())
        }),
      )
    }),
  )

  it.live("writes stall while too many frozen memtables wait, and resume after the flush", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const before = (yield* Metric.value(Metrics.writeStalls)).count
      const flushesBefore = (yield* Metric.value(Metrics.flushes)).count
      yield* withEngine(fs, { memtableBytes: 2048, maxFrozenMemtables: 0, compactionMinThreshold: 1000 }, (engine) =>
        Effect.gen(function* () {
          yield* Effect.forEach(
            Array.from({ length: 60 }, (_, i) => i),
            (i) => engine.write(T, [put(T, entity(i, `v${i}`))]),
            { concurrency: 8 },
          )
          for (let i = 0; i < 60; i++) assert.strictEqual(storedValue(yield* engine.get(T, T, id(i))), `v${i}`)
        }),
      )
      assert.isAbove((yield* Metric.value(Metrics.writeStalls)).count, before)
      assert.isAbove((yield* Metric.value(Metrics.flushes)).count, flushesBefore)
      // After the WAL was cut by the flushes, a restart still has everything.
      yield* withEngine(fs, {}, (engine) =>
        Effect.gen(function* () {
          for (let i = 0; i < 60; i++) assert.strictEqual(storedValue(yield* engine.get(T, T, id(i))), `v${i}`)
        }),
      )
    }),
  )

  it.live("changedSince streams rows changed after a seq, deletions included", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withEngine(fs, { compactionMinThreshold: 1000 }, (engine) =>
        Effect.gen(function* () {
          yield* engine.write(T, [put(T, entity(1, "a")), put(T, entity(2, "b")), put(T, entity(3, "c"))])
          yield* engine.flush
          const mark = yield* engine.lastSeq
          yield* engine.write(T, [put(T, entity(2, "b2"))])
          yield* engine.flush
          yield* engine.write(T, [del(T, 3)])
          const changed = Chunk.toReadonlyArray(yield* Stream.runCollect(engine.changedSince(T, mark)))
          assert.deepStrictEqual(
            changed.map((c) => [c.id, storedValue(c.entity)]),
            [
              [id(2), "b2"],
              [id(3), undefined],
            ],
          )
          for (const c of changed) assert.isAbove(c.seq, mark)
          const all = Chunk.toReadonlyArray(yield* Stream.runCollect(engine.changedSince(T, 0)))
          assert.deepStrictEqual(
            all.map((c) => c.id),
            [id(1), id(2), id(3)],
          )
          // The unchanged row's entity is complete even though its table was skipped.
          assert.strictEqual(storedValue(all[0]!.entity), "a")
        }),
      )
    }),
  )

  it.live("acknowledged writes survive crashes at random points; deleted rows never return", () =>
    Effect.gen(function* () {
      const baseSeed = Number(process.env.ALLIDB_SEED ?? Date.now() % 1_000_000)
      for (let round = 0; round < 6; round++) {
        const seed = baseSeed + round
        const random = rng(seed)
        const fs = Disk.makeMemoryFileSystem()
        const KEYS = 40
        const WRITERS = 4
        // Per key: the last acknowledged value (null = deleted) and the op in flight, if any.
        const acked = new Map<number, string | null>()
        const inflight = new Map<number, string | null>()
        let opCounter = 0
        for (let bootNo = 0; bootNo < 4; bootNo++) {
          const scope = yield* Scope.make()
          const { engine } = yield* boot(fs, scope, smallConfig)
          for (let n = 0; n < KEYS; n++) {
            const got = storedValue(yield* engine.get(T, T, id(n))) ?? null
            const allowed = [acked.has(n) ? acked.get(n)! : null]
            if (inflight.has(n)) allowed.push(inflight.get(n)!)
            assert.include(allowed, got, `seed ${seed} boot ${bootNo}: key ${n} is ${got}, expected one of ${allowed}`)
            // Whatever survived is now the durable state.
            acked.set(n, got)
            inflight.delete(n)
          }
          const crashAt = opCounter + 20 + Math.floor(random() * 300)
          const writer = (w: number) =>
            Effect.gen(function* () {
              while (true) {
                const n = w + WRITERS * Math.floor(random() * (KEYS / WRITERS))
                const value = random() < 0.25 ? null : `b${bootNo}-${opCounter}`
                inflight.set(n, value)
                if (++opCounter === crashAt) fs.crash({ keepUnsynced: (_, u) => Math.floor(random() * u) })
                const exit = yield* Effect.exit(
                  engine.write(T, [value === null ? del(T, n) : put(T, entity(n, value))]),
                )
                if (Exit.isFailure(exit)) return
                acked.set(n, value)
                inflight.delete(n)
              }
            })
          const fibers = yield* Effect.forEach(Array.from({ length: WRITERS }, (_, w) => w), (w) =>
            Effect.fork(writer(w)),
          )
          yield* Fiber.joinAll(fibers)
          yield* Scope.close(scope, Exit.void)
        }
      }
    }),
  )

  it.live("a wrong tenant with failHard=false fails with TenantViolation and changes nothing", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withEngine(fs, { failHard: false }, (engine) =>
        Effect.gen(function* () {
          yield* engine.write(OTHER, [put(OTHER, entity(1, "theirs"))])
          const before = (yield* Metric.value(Metrics.tenantViolations)).count
          const w = yield* Effect.flip(engine.write(T, [put(T, entity(2, "mine")), put(OTHER, entity(1, "stolen"))]))
          assert.strictEqual(w._tag, "TenantViolation")
          const g = yield* Effect.flip(engine.get(T, OTHER, id(1)))
          assert.strictEqual(g._tag, "TenantViolation")
          const m = yield* Effect.flip(engine.getMany(T, OTHER, [id(1)]))
          assert.strictEqual(m._tag, "TenantViolation")
          const s = yield* Effect.flip(engine.scan(T, OTHER, { limit: 10 }))
          assert.strictEqual(s._tag, "TenantViolation")
          assert.strictEqual((yield* Metric.value(Metrics.tenantViolations)).count - before, 4)
          // Nothing of the refused batch was applied, and the other tenant's row is intact.
          assert.isUndefined(yield* engine.get(T, T, id(2)))
          assert.strictEqual(storedValue(yield* engine.get(OTHER, OTHER, id(1))), "theirs")
          assert.deepStrictEqual((yield* engine.scan(T, T, { limit: 10 })).entities, [])
        }),
      )
    }),
  )

  it.live("a wrong tenant with failHard=true dies, trips TenantGuard.fatal, and stops serving", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const scope = yield* Scope.make()
      const { engine, guard } = yield* boot(fs, scope, { failHard: true })
      const fatal = yield* Effect.fork(guard.fatal)
      yield* engine.write(OTHER, [put(OTHER, entity(1, "theirs"))])
      const exit = yield* Effect.exit(engine.get(T, OTHER, id(1)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.instanceOf(Option.getOrUndefined(Cause.dieOption(exit.cause)), TenantGuard.TenantIsolationBreach)
      }
      const fatalExit = yield* Fiber.await(fatal)
      assert.isTrue(Exit.isFailure(fatalExit))
      const write = yield* Effect.exit(engine.write(T, [put(OTHER, entity(2, "x"))]))
      assert.isTrue(Exit.isFailure(write) && Cause.isDie(write.cause))
      yield* Scope.close(scope, Exit.void)
    }),
  )
})

void Entity
