/**
 * The index over the real storage engine stack (WAL, memtable, SSTables):
 * writes become visible through awaitSeq, deletes and edge changes follow,
 * and a restart — from the snapshot, or rebuilt when there is none — answers
 * the same.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { EntityId, Relation } from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
import * as IndexConfig from "../src/IndexConfig.js"
import * as QueryExecutor from "../src/QueryExecutor.js"
import * as UnifiedIndex from "../src/UnifiedIndex.js"
import { edge } from "./FakeStorage.js"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const N = 600
const vectors = Harness.clustered({ seed: 11, count: N + 10, dim: 8, clusters: 6, spread: 0.3 })

const open = (dataDir: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const stack = QueryExecutor.layer.pipe(
      Layer.provideMerge(UnifiedIndex.layer),
      Layer.provideMerge(
        Layer.merge(
          StorageEngine.layerFrom({ dataDir, syncMode: "none" }),
          IndexConfig.layer({ dataDir, snapshotIntervalMs: 0 }),
        ),
      ),
    )
    const context = yield* Layer.buildWithScope(stack, scope).pipe(Effect.orDie)
    const storage = Context.get(context, StorageEngine.StorageEngine)
    const index = Context.get(context, UnifiedIndex.UnifiedIndex)
    const executor = Context.get(context, QueryExecutor.QueryExecutor)
    const tenants = Context.get(context, UnifiedIndex.Tenants)
    const write = (mutations: ReadonlyArray<StorageEngine.Mutation>) =>
      Effect.gen(function* () {
        const { seq } = yield* Effect.orDie(storage.write(T, mutations))
        yield* index.awaitSeq(seq)
      })
    return { scope, storage, index, executor, tenants, write }
  })

const answers = (executor: QueryExecutor.QueryExecutorShape) =>
  Effect.forEach(vectors.slice(N), (vector) =>
    executor
      // recency weight 0: storage stamps updatedAt, and real time moves between the runs
      .query(T, request({ vector, k: 10, ef: 200, expand: { hops: 1 }, explain: true, weights: { recency: 0 } }))
      .pipe(Effect.map((rs) => rs.map((r) => `${r.id}:${r.score.toFixed(6)}:${r.explain!.origin}`))),
  )

describe("UnifiedIndex over the real StorageEngine", () => {
  it.live(
    "reflects writes, deletes and edges, and restarts from a snapshot or a rebuild with the same answers",
    () =>
      Effect.gen(function* () {
        const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-real-"))
        const first = yield* open(dataDir)
        for (let i = 0; i < N; i += 200) {
          yield* first.write(
            vectors.slice(i, i + 200).map((vector, j) => ({
              _tag: "PutEntity" as const,
              tenant: T,
              entity: entity(`e${i + j}`, {
                vector,
                type: (i + j) % 2 === 0 ? "even" : "odd",
                edges: [edge(`e${(i + j + 1) % N}`, "next", 0.5)],
              }),
            })),
          )
        }
        const probe = vectors[5]!
        const top = yield* first.executor.query(T, request({ vector: probe, k: 1 }))
        assert.strictEqual(top[0]!.id, "e5")
        assert.deepStrictEqual(top[0]!.entity!.edges!.map((e) => e.to), ["e6"])

        yield* first.write([{ _tag: "DeleteEntity", tenant: T, id: "e5" as EntityId }])
        const afterDelete = yield* first.executor.query(T, request({ vector: probe, k: 5 }))
        assert.notInclude(
          afterDelete.map((r): string => r.id),
          "e5",
        )
        yield* first.write([
          { _tag: "DeleteEdge", tenant: T, from: "e7" as EntityId, to: "e8" as EntityId, relation: "next" as Relation },
          { _tag: "PutEdge", tenant: T, from: "e7" as EntityId, edge: edge("e100", "far", 1) },
        ])
        const traversal = yield* first.executor.traverse(T, Harness.traverseRequest({ from: ["e7"], hops: 1 }))
        assert.deepStrictEqual(
          traversal.map((r) => [r.id, r.path[0]!.relation]),
          [["e100", "far"]],
        )
        // Fresh keys came with their commits: only the deleted and edge-changed rows were read back.
        assert.strictEqual(first.tenants.applyStats().rowsRead, 2)
        const before = yield* answers(first.executor)
        yield* Scope.close(first.scope, Exit.void) // writes the snapshot

        assert.isTrue(Fs.existsSync(Path.join(dataDir, "index")))
        const second = yield* open(dataDir)
        assert.deepStrictEqual(yield* answers(second.executor), before, "same answers from the snapshot")
        yield* second.write([{ _tag: "PutEntity", tenant: T, entity: entity("late", { vector: probe }) }])
        const late = yield* second.executor.query(T, request({ vector: probe, k: 1 }))
        assert.strictEqual(late[0]!.id, "late")
        yield* second.write([{ _tag: "DeleteEntity", tenant: T, id: "late" as EntityId }])
        yield* Scope.close(second.scope, Exit.void)

        Fs.rmSync(Path.join(dataDir, "index"), { recursive: true, force: true })
        const third = yield* open(dataDir)
        assert.deepStrictEqual(yield* answers(third.executor), before, "same answers after a rebuild")
        yield* Scope.close(third.scope, Exit.void)
      }),
    120_000,
  )
})
