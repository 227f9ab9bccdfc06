import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as TestClock from "effect/TestClock"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { EntityId, Relation, TenantId } from "@allidb/core"
import { edge } from "./FakeStorage.js"
import * as Snapshot from "../src/Snapshot.js"
import * as Harness from "./Harness.js"

const { entity, T } = Harness
const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-index-"))
const ids = (results: ReadonlyArray<{ readonly id: string }>) => results.map((r) => r.id)
const q = (vector: Array<number>, k = 10) =>
  Harness.request({ vector, k, weights: { graph: 0, importance: 0, recency: 0 } })

describe("UnifiedIndex", () => {
  it.scoped("upserts, deletes and vector removals show in the very next query", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([entity("a", { vector: [1, 0, 0] }), entity("b", { vector: [0, 1, 0] })])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([1, 0, 0], 1))), ["a"])
      // upsert moves a away; b is now the nearest to [1,0,0]
      yield* h.put([entity("a", { vector: [0, 0, 1] })])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([1, 0.1, 0], 1))), ["b"])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([0, 0, 1], 1))), ["a"])
      yield* h.write([{ _tag: "DeleteEntity", tenant: T, id: "a" as EntityId }])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([0, 0, 1]))), ["b"])
      // an entity that loses its vector leaves the ANN index but stays an entity
      yield* h.put([entity("b", { type: "note" })])
      assert.deepStrictEqual(yield* h.executor.query(T, q([0, 1, 0])), [])
      const [stats] = yield* h.index.stats
      assert.strictEqual(stats!.vectors, 0)
      assert.strictEqual(stats!.entities, 1)
      // The apply loop accounts for its time: 5 rows applied, 3 vectors inserted.
      const apply = h.tenants.applyStats()
      assert.strictEqual(apply.rows, 5)
      assert.isAbove(apply.addPointMs, 0)
      assert.isAtMost(apply.addPointMs, apply.applyMs)
      assert.isAbove(apply.readMs, 0)
    }),
  )

  it.scoped("reuses deleted slots instead of growing", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { initialCapacity: 4, growthFactor: 2 } })
      const vec = (i: number) => [Math.cos(i), Math.sin(i), i / 10]
      yield* h.put(Array.from({ length: 4 }, (_, i) => entity(`e${i}`, { vector: vec(i) })))
      assert.strictEqual((yield* h.index.stats)[0]!.capacity, 4)
      yield* h.write([
        { _tag: "DeleteEntity", tenant: T, id: "e0" as EntityId },
        { _tag: "DeleteEntity", tenant: T, id: "e1" as EntityId },
      ])
      yield* h.put([entity("n0", { vector: vec(10) }), entity("n1", { vector: vec(11) })])
      let stats = (yield* h.index.stats)[0]!
      assert.strictEqual(stats.capacity, 4, "the two freed slots were reused")
      assert.strictEqual(stats.vectors, 4)
      yield* h.put([entity("n2", { vector: vec(12) })])
      stats = (yield* h.index.stats)[0]!
      assert.strictEqual(stats.capacity, 8, "a full index grows by the growth factor")
      for (const [i, id] of [
        [10, "n0"],
        [11, "n1"],
        [12, "n2"],
        [2, "e2"],
      ] as const) {
        assert.deepStrictEqual(ids(yield* h.executor.query(T, q(vec(i), 1))), [id])
      }
      assert.notInclude(ids(yield* h.executor.query(T, q(vec(0), 10))), "e0")
    }),
  )

  it.scoped("edge writes and deletes change expansion immediately", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([entity("a", { vector: [1, 0] }), entity("x", { type: "ctx" })])
      const expandQuery = Harness.request({ vector: [1, 0], k: 5, expand: { hops: 1 } })
      assert.deepStrictEqual(ids(yield* h.executor.query(T, expandQuery)), ["a"])
      yield* h.write([{ _tag: "PutEdge", tenant: T, from: "a" as EntityId, edge: edge("x", "mentions", 0.5) }])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, expandQuery)), ["a", "x"])
      yield* h.write([
        { _tag: "DeleteEdge", tenant: T, from: "a" as EntityId, to: "x" as EntityId, relation: "mentions" as Relation },
      ])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, expandQuery)), ["a"])
      // PutEntity replaces the row: edges not in the new entity are gone
      yield* h.put([entity("a", { vector: [1, 0], edges: [edge("x", "mentions")] })])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, expandQuery)), ["a", "x"])
      yield* h.put([entity("a", { vector: [1, 0] })])
      assert.deepStrictEqual(ids(yield* h.executor.query(T, expandQuery)), ["a"])
    }),
  )

  it.scoped("fixes a tenant's dimension once and names both numbers on a mismatch", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp(), config: { tenantDimensions: { fixed: 4 } } })
      yield* h.index.ensureDimension(T, 3, "vector")
      yield* h.index.ensureDimension(T, 3, "vector")
      const exit = yield* Effect.exit(h.index.ensureDimension(T, 5, "entities[2].vector"))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(h.index.ensureDimension(T, 5, "entities[2].vector"))
      assert.strictEqual(error._tag, "DimensionMismatch")
      assert.strictEqual(error.expected, 3)
      assert.strictEqual(error.actual, 5)
      assert.match(error.message, /5.*3/)
      assert.strictEqual(yield* h.index.dimension("fixed" as TenantId), 4)
      const fixed = yield* Effect.flip(h.index.ensureDimension("fixed" as TenantId, 3, "vector"))
      assert.strictEqual(fixed.expected, 4)
      // the index refuses a query of the wrong dimension too
      yield* h.put([entity("a", { vector: [1, 0, 0] })])
      const queryError = yield* Effect.flip(h.executor.query(T, q([1, 0])))
      assert.strictEqual(queryError._tag, "DimensionMismatch")
    }),
  )

  it.scoped("keeps tenants apart", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      const other = "t2" as TenantId
      yield* h.put([entity("a", { vector: [1, 0] })])
      yield* h.put([entity("b", { vector: [1, 0, 0, 0] })], other)
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([1, 0]))), ["a"])
      assert.deepStrictEqual(ids(yield* h.executor.query(other, q([1, 0, 0, 0]))), ["b"])
      assert.deepStrictEqual(yield* h.executor.query("nobody" as TenantId, q([1, 0])), [])
    }),
  )

  it.scoped("awaitSeq completes once the commit is applied", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      const { seq } = yield* Effect.orDie(
        h.storage.write(T, [{ _tag: "PutEntity", tenant: T, entity: entity("a", { vector: [1, 0] }) }]),
      )
      yield* h.index.awaitSeq(seq)
      assert.isAtLeast(yield* h.index.appliedSeq, seq)
      assert.deepStrictEqual(ids(yield* h.executor.query(T, q([1, 0]))), ["a"])
      yield* h.index.awaitSeq(0)
    }),
  )

  it.scoped("hot reload: rows changed behind the write path are picked up without a restart", () =>
    Effect.gen(function* () {
      const h = yield* Harness.make({ dataDir: tmp() })
      yield* h.put([entity("a", { vector: [1, 0] }), entity("b", { vector: [0, 1] })])
      // an import adds c and a repair drops b (its tombstone already purged)
      yield* h.storage.importRows(T, [entity("c", { vector: [0.7, 0.7] }), { deleted: "b" as EntityId }])
      let found: ReadonlyArray<string> = []
      for (let i = 0; i < 200 && found.length !== 2; i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
        found = ids(yield* h.executor.query(T, q([0, 1])))
      }
      assert.sameMembers([...found], ["a", "c"])
    }),
  )

  it.scoped("writes snapshots in the background every interval", () =>
    Effect.gen(function* () {
      const dataDir = tmp()
      const h = yield* Harness.make({ dataDir, config: { snapshotIntervalMs: 60_000, snapshotOnClose: false } })
      yield* h.put([entity("a", { vector: [1, 0] })])
      const manifest = Path.join(Snapshot.tenantDir(dataDir, T), "MANIFEST")
      assert.isFalse(Fs.existsSync(manifest))
      yield* TestClock.adjust("60 seconds")
      for (let i = 0; i < 400 && !Fs.existsSync(manifest); i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      }
      assert.isTrue(Fs.existsSync(manifest), "a snapshot after one interval")
      const first = JSON.parse(Fs.readFileSync(manifest, "utf8")).generation
      // nothing changed: the next interval skips the tenant
      yield* TestClock.adjust("60 seconds")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
      assert.strictEqual(JSON.parse(Fs.readFileSync(manifest, "utf8")).generation, first)
    }),
  )
})
