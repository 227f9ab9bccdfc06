import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Disk from "../src/Disk.js"
import * as Manifest from "../src/Manifest.js"
import * as Row from "../src/Row.js"
import * as RowCodec from "../src/RowCodec.js"
import * as StorageConfig from "../src/StorageConfig.js"
import * as Reader from "../src/SSTableReader.js"
import * as SSTableStore from "../src/SSTableStore.js"
import { trapDisk } from "./SSTableStore.trapDisk.js"

const config = { dataDir: "/data", blockBytes: 256, blockCacheBytes: 64 * 1024, bloomBitsPerKey: 10 }

const storeOn = (fs: Disk.MemoryFileSystem) =>
  SSTableStore.layer.pipe(Layer.provide(Layer.merge(Disk.layerMemoryFrom(fs), StorageConfig.layer(config))))

/** Opens a store on `fs` for the duration of `f`. */
const withStore = <A, E>(
  fs: Disk.MemoryFileSystem,
  f: (store: SSTableStore.SSTableStoreShape) => Effect.Effect<A, E, Scope.Scope>,
) => Effect.scoped(Effect.flatMap(SSTableStore.SSTableStore, f)).pipe(Effect.provide(storeOn(fs)))

const row = (wall: number, type: string | undefined, seq: number): Row.Row =>
  type === undefined
    ? { deletedAt: { wall, node: 0 }, cells: new Map(), seq }
    : {
        deletedAt: undefined,
        cells: new Map([["m", { ts: { wall, node: 0 }, value: { _tag: "Meta", type } }]]),
        seq,
      }

const rowsOf = (entries: ReadonlyArray<readonly [string, Row.Row]>): Array<Row.KeyedRow> =>
  entries.map(([id, r]) => ({ key: Row.makeKey("t", id), row: r })).sort((a, b) => Row.compareKeys(a.key, b.key))

const typeOf = (r: Row.Row | undefined): string | undefined => {
  const v = r?.cells.get("m")?.value
  return v?._tag === "Meta" ? v.type : undefined
}

describe("Manifest", () => {
  it("round-trips and has golden bytes", () => {
    const m: Manifest.Manifest = { generation: 3, flushedSeq: 300, nextTableId: 9, tables: [{ id: 7, fileBytes: 1000 }] }
    const bytes = Manifest.encode(m)
    assert.deepStrictEqual(Manifest.decode(bytes), m)
    assert.strictEqual(
      Buffer.from(bytes).toString("hex"),
      `414c4c494d414e0a010800000003ac02090107e807${crcHex(bytes)}`,
    )
    const bumped = Uint8Array.from(bytes)
    bumped[8] = 2
    assert.throws(() => Manifest.decode(bumped), /checksum/)
    const flipped = Uint8Array.from(bytes)
    flipped[12] = (flipped[12] as number) ^ 4
    assert.throws(() => Manifest.decode(flipped), /checksum/)
    assert.strictEqual(Manifest.parseTableFileName(Manifest.tableFileName(42)), 42)
    assert.isUndefined(Manifest.parseTableFileName("00000042.sst.tmp"))
  })
})

const crcHex = (bytes: Uint8Array): string => Buffer.from(bytes.subarray(bytes.length - 4)).toString("hex")

describe("SSTableStore", () => {
  it.effect("flush adds a table and advances flushedSeq in one change; reopen restores both", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withStore(fs, (store) =>
        Effect.gen(function* () {
          assert.strictEqual(yield* store.flushedSeq, 0)
          const t1 = yield* store.flush(rowsOf([["a", row(1, "a1", 1)], ["b", row(1, "b1", 2)]]), 2)
          const t2 = yield* store.flush(rowsOf([["a", row(2, "a2", 3)], ["c", row(2, undefined, 4)]]), 4)
          assert.strictEqual(yield* store.flushedSeq, 4)
          assert.deepStrictEqual((yield* store.tables).map((t) => t.id), [t2?.id, t1?.id])
          assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "a"))), "a2")
          assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "b"))), "b1")
          assert.deepStrictEqual((yield* store.get(Row.makeKey("t", "c")))?.deletedAt, { wall: 2, node: 0 })
          assert.isUndefined(yield* store.get(Row.makeKey("t", "zz")))
          assert.deepStrictEqual((yield* store.tablesChangedSince(2)).map((t) => t.id), [t2?.id])
          assert.deepStrictEqual(yield* store.tenants, ["t"])
          // an empty flush only moves flushedSeq
          assert.isUndefined(yield* store.flush([], 9))
          assert.strictEqual(yield* store.flushedSeq, 9)
        }),
      )
      // leftovers of an unfinished flush or compaction are swept at open
      const disk = fs.disk()
      yield* disk.writeFileAtomic("/data/sst/00000077.sst", Uint8Array.of(1, 2, 3))
      yield* disk.writeFileAtomic("/data/sst/00000078.sst.tmp", Uint8Array.of(1))
      fs.crash()
      yield* withStore(fs, (store) =>
        Effect.gen(function* () {
          assert.strictEqual(yield* store.flushedSeq, 9)
          assert.strictEqual((yield* store.tables).length, 2)
          const all = yield* Reader.collect(yield* store.scan())
          assert.deepStrictEqual(
            all.map((e) => [Row.parseKey(e.key).id, typeOf(e.row)]),
            [
              ["a", "a2"],
              ["b", "b1"],
              ["c", undefined],
            ],
          )
          const bounded = yield* Reader.collect(yield* store.scan(Row.makeKey("t", "b"), Row.makeKey("t", "c")))
          assert.deepStrictEqual(bounded.map((e) => Row.parseKey(e.key).id), ["b"])
        }),
      )
      assert.deepStrictEqual([...(yield* fs.disk().list("/data/sst"))].sort(), [
        "00000001.sst",
        "00000002.sst",
        "MANIFEST",
      ])
    }),
  )

  it.effect("refuses to open when tables exist but the manifest is gone", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withStore(fs, (store) => store.flush(rowsOf([["a", row(1, "a", 1)]]), 1))
      yield* fs.disk().remove("/data/sst/MANIFEST")
      const exit = yield* Effect.exit(withStore(fs, () => Effect.void))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.strictEqual(exit.cause.error._tag, "Corruption")
        assert.match(exit.cause.error.message, /manifest missing/)
      }
    }),
  )

  it.effect("a corrupt live table fails the open with Corruption instead of serving partial data", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withStore(fs, (store) => store.flush(rowsOf([["a", row(1, "a", 1)]]), 1))
      const bytes = fs.peek("/data/sst/00000001.sst") as Uint8Array
      fs.corrupt("/data/sst/00000001.sst", bytes.length - 3, Uint8Array.of(((bytes[bytes.length - 3] as number) ^ 0x20) & 0xff))
      const exit = yield* Effect.exit(withStore(fs, () => Effect.void))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") assert.strictEqual(exit.cause.error._tag, "Corruption")
    }),
  )

  it.effect("replace swaps tables atomically; a scan holding old tables keeps reading them", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withStore(fs, (store) =>
        Effect.gen(function* () {
          yield* store.flush(rowsOf([["a", row(1, "a1", 1)], ["b", row(1, "b1", 1)]]), 1)
          yield* store.flush(rowsOf([["a", row(2, "a2", 2)]]), 2)
          const ids = (yield* store.tables).map((t) => t.id)
          const oldScan = yield* store.scan()
          const first = yield* oldScan.next
          const merged = yield* Effect.scoped(
            Effect.flatMap(store.scan(undefined, undefined, { fillCache: false }), (c) =>
              store.replace(ids, c),
            ),
          )
          assert.deepStrictEqual((yield* store.tables).map((t) => t.id), [merged?.id])
          // the old files stay until the scan that holds them ends
          assert.strictEqual((yield* fs.disk().list("/data/sst")).length, 4)
          assert.strictEqual(typeOf(first?.row), "a2")
          assert.strictEqual(typeOf((yield* oldScan.next)?.row), "b1")
          assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "a"))), "a2")
          assert.strictEqual(yield* store.flushedSeq, 2)
        }),
      )
      // scope closed: retired files are gone
      assert.deepStrictEqual([...(yield* fs.disk().list("/data/sst"))].sort(), ["00000003.sst", "MANIFEST"])
    }),
  )

  it.effect("a replace interrupted at any point leaves the live set readable and complete", () =>
    Effect.gen(function* () {
      const outcomes = { interrupted: 0, completed: 0, failed: 0 }
      // Interrupt at the n-th disk operation of the replace, for every n until one completes.
      for (let n = 0; n < 200; n++) {
        const fs = Disk.makeMemoryFileSystem()
        const trap = trapDisk(fs.disk())
        const expected = new Map<string, string>()
        const exit = yield* Effect.exit(
          Effect.scoped(
            Effect.gen(function* () {
              const store = yield* SSTableStore.SSTableStore
              for (let t = 0; t < 4; t++) {
                const entries: Array<readonly [string, Row.Row]> = []
                for (let i = 0; i < 40; i++) {
                  const id = `k${(i * 7 + t * 13) % 60}`
                  entries.push([id, row(t + 1, `v${t}`, t + 1)])
                  expected.set(id, `v${t}`)
                }
                yield* store.flush(rowsOf(entries), t + 1)
              }
              const ids = (yield* store.tables).map((t) => t.id)
              trap.arm(n)
              const result = yield* Effect.exit(
                Effect.scoped(Effect.flatMap(store.scan(undefined, undefined, { fillCache: false }), (c) => store.replace(ids, c))),
              )
              trap.arm(-1)
              yield* checkAll(store, expected)
              return result
            }),
          ).pipe(
            Effect.provide(
              SSTableStore.layer.pipe(Layer.provide(Layer.merge(Layer.succeed(Disk.Disk, trap.disk), StorageConfig.layer(config)))),
            ),
          ),
        )
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        const result = Exit.isSuccess(exit) ? exit.value : undefined
        const kind = result === undefined ? "failed" : Exit.isSuccess(result) ? "completed" : Exit.isInterrupted(result) ? "interrupted" : "failed"
        outcomes[kind]++
        yield* withStore(fs, (store) => checkAll(store, expected))
        fs.crash()
        yield* withStore(fs, (store) => checkAll(store, expected))
        const left = yield* fs.disk().list("/data/sst")
        assert.isFalse(left.some((name) => name.endsWith(".tmp")))
        if (kind === "completed") break
      }
      console.log("[SSTableStore] interrupted replace outcomes", outcomes)
      assert.isAbove(outcomes.interrupted, 5)
      assert.strictEqual(outcomes.completed, 1)
      assert.strictEqual(outcomes.failed, 0)
    }),
  )
})

const checkAll = (store: SSTableStore.SSTableStoreShape, expected: ReadonlyMap<string, string>) =>
  Effect.gen(function* () {
    for (const [id, type] of expected) assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", id))), type, id)
    const all = yield* Effect.scoped(Effect.flatMap(store.scan(), (c) => Reader.collect(c)))
    assert.strictEqual(all.length, expected.size)
    for (const e of all) {
      assert.strictEqual(typeOf(e.row), expected.get(Row.parseKey(e.key).id))
      RowCodec.encodeRow(e.row)
    }
  })

describe("SSTableStore on the node file system", () => {
  it.effect("flushes, compacts and reopens from a real directory", () =>
    Effect.gen(function* () {
      const dataDir = mkdtempSync(join(tmpdir(), "allidb-sst-"))
      const layer = SSTableStore.layer.pipe(
        Layer.provide(Layer.merge(Disk.layerNode, StorageConfig.layer({ ...config, dataDir }))),
      )
      const use = <A, E>(f: (store: SSTableStore.SSTableStoreShape) => Effect.Effect<A, E, Scope.Scope>) =>
        Effect.scoped(Effect.flatMap(SSTableStore.SSTableStore, f)).pipe(Effect.provide(layer))
      try {
        yield* use((store) =>
          Effect.gen(function* () {
            for (let t = 0; t < 3; t++) {
              yield* store.flush(
                rowsOf(Array.from({ length: 50 }, (_, i) => [`k${i + t * 25}`, row(t + 1, `v${t}`, t + 1)] as const)),
                t + 1,
              )
            }
            const ids = (yield* store.tables).map((t) => t.id)
            yield* Effect.scoped(Effect.flatMap(store.scan(undefined, undefined, { fillCache: false }), (c) => store.replace(ids, c)))
          }),
        )
        yield* use((store) =>
          Effect.gen(function* () {
            assert.strictEqual((yield* store.tables).length, 1)
            assert.strictEqual(yield* store.flushedSeq, 3)
            assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "k0"))), "v0")
            assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "k30"))), "v1")
            assert.strictEqual(typeOf(yield* store.get(Row.makeKey("t", "k60"))), "v2")
            const all = yield* Effect.scoped(Effect.flatMap(store.scan(), (c) => Reader.collect(c)))
            assert.strictEqual(all.length, 100)
          }),
        )
        assert.deepStrictEqual(readdirSync(join(dataDir, "sst")).sort(), ["00000004.sst", "MANIFEST"])
      } finally {
        rmSync(dataDir, { recursive: true, force: true })
      }
    }),
  )
})
