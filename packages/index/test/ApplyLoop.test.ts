import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Entity, type EntityId, GraphEdge, type Relation, StorageFailure } from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
import * as IndexConfig from "../src/IndexConfig.js"
import * as UnifiedIndex from "../src/UnifiedIndex.js"
import * as FakeStorage from "./FakeStorage.js"
import { T } from "./Harness.js"

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-apply-"))

/** The index over a fake storage whose `getMany` fails its first `failures` calls. */
const indexOver = (failures: number) =>
  Effect.gen(function* () {
    const fake = yield* FakeStorage.make()
    let calls = 0
    const storage: StorageEngine.StorageEngineShape = {
      ...fake,
      getMany: (caller, tenant, ids) =>
        Effect.suspend(() =>
          ++calls <= failures
            ? Effect.fail(new StorageFailure({ operation: "getMany", message: "injected" }))
            : fake.getMany(caller, tenant, ids),
        ),
    }
    const context = yield* Layer.build(
      UnifiedIndex.layer.pipe(
        Layer.provide(Layer.succeed(StorageEngine.StorageEngine, storage)),
        Layer.provide(IndexConfig.layer({ snapshotIntervalMs: 0, snapshotOnClose: false, dataDir: tmp() })),
      ),
    ).pipe(Effect.orDie)
    return {
      storage,
      calls: () => calls,
      index: Context.get(context, UnifiedIndex.UnifiedIndex),
      tenants: Context.get(context, UnifiedIndex.Tenants),
    }
  })

const entities = (n: number, round: number) =>
  Array.from(
    { length: n },
    (_, i) =>
      new Entity({
        id: `e${i}` as EntityId,
        vector: [Math.cos(i + round), Math.sin(i + round), (i % 7) + round],
        edges: [new GraphEdge({ to: `e${(i + 1) % n}` as EntityId, relation: "next" as Relation, weight: 0.5 })],
      }),
  )

describe("UnifiedIndex apply loop", () => {
  // A commit of more rows than one re-read group (they are re-read in groups
  // just ahead of applying them), with reads that fail before they work.
  it.live("applies a commit re-read in several groups, retrying failed reads, and reflects every row", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const h = yield* indexOver(2)
        const n = 300
        for (const round of [0, 1]) {
          const { seq } = yield* Effect.orDie(
            h.storage.write(
              T,
              entities(n, round).map((entity) => ({ _tag: "PutEntity", tenant: T, entity })),
            ),
          )
          yield* h.index.awaitSeq(seq).pipe(Effect.timeout("20 seconds"), Effect.orDie)
          const live = h.tenants.get(T)!
          assert.strictEqual(live.liveVectors, n)
          assert.strictEqual(live.edges, n)
          for (let i = 0; i < n; i++) {
            // Each row's vector is the one of this round, at its label.
            const label = live.attrs.get(`e${i}`)!.label
            assert.strictEqual(live.labelToId[label], `e${i}`)
            assert.strictEqual(live.vectors[label * 3 + 2], (i % 7) + round)
            assert.strictEqual(live.searchKnn([Math.cos(i + round), Math.sin(i + round), (i % 7) + round], 1, 32)[0]!.id, `e${i}`)
          }
        }
        // Two failed reads, then every group of each commit read once.
        assert.isAtLeast(h.calls(), 2 + 2 * Math.ceil(n / 64))
        assert.strictEqual(h.tenants.applyStats().rows, 2 * n)
      }),
    ),
  )
})
