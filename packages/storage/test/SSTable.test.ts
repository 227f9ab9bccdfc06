import { crc32 } from "node:zlib"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "fast-check"
import * as BlockCache from "../src/BlockCache.js"
import * as Disk from "../src/Disk.js"
import * as Row from "../src/Row.js"
import * as RowCodec from "../src/RowCodec.js"
import * as Memtable from "../src/Memtable.js"
import * as Format from "../src/SSTableFormat.js"
import * as Reader from "../src/SSTableReader.js"
import * as Writer from "../src/SSTableWriter.js"
import * as Arb from "./Row.arbitraries.js"

const same = (a: Row.Row | undefined, b: Row.Row | undefined): boolean =>
  a === undefined || b === undefined
    ? a === b
    : Buffer.compare(RowCodec.encodeRow(a), RowCodec.encodeRow(b)) === 0

const rowAt = (i: number): Row.Row => ({
  deletedAt: i % 5 === 0 ? { wall: i, node: 1 } : undefined,
  cells: new Map<string, Row.Cell>([
    ["m", { ts: { wall: i + 1, node: 1 }, value: { _tag: "Meta", type: `type-${i % 3}` } }],
    ["v", { ts: { wall: i + 1, node: 1 }, value: { _tag: "Vector", version: 1, values: Float32Array.of(i, -i, 0.5) } }],
  ]),
  seq: 10 + i,
})

const keyAt = (i: number): Row.Key => Row.makeKey(i % 2 === 0 ? "even" : "odd", `id-${String(i).padStart(5, "0")}`)

const sortedRows = (n: number): Array<Row.KeyedRow> =>
  Array.from({ length: n }, (_, i) => ({ key: keyAt(i), row: rowAt(i) })).sort((a, b) => Row.compareKeys(a.key, b.key))

const writeTable = (fs: Disk.MemoryFileSystem, rows: ReadonlyArray<Row.KeyedRow>, blockBytes = 512) =>
  Effect.gen(function* () {
    const disk = fs.disk()
    yield* disk.mkdir("/sst")
    return yield* Writer.write(disk, "/sst", "1.sst", Reader.fromIterable(rows), { blockBytes, bloomBitsPerKey: 10 })
  })

describe("SSTable", () => {
  it("a memtable flushed from its encoded rows gives the same table, byte for byte, as from its decoded rows", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), Arb.row), { minLength: 1, maxLength: 120 }), (changes) => {
        // Keys change more than once: overwrites go through merge and re-encoding.
        const map = new Memtable.RowMap(1)
        changes.forEach(([k, row], i) => {
          map.apply(Row.makeKey("t", `k${k}`), { ...row, seq: i + 1 })
        })
        map.freeze()
        const fromRows = Format.buildTable(map.entries(), 256, 10)
        const b = new Format.TableBuilder(256, 10)
        for (const row of map.encodedEntries()) b.addEncoded(row)
        const properties = b.finish()
        assert.deepStrictEqual(properties, fromRows.properties)
        return Buffer.compare(b.drain(), fromRows.bytes) === 0
      }),
      { numRuns: 300, seed: Arb.seed("SSTable.encoded") },
    )
  })

  it.scoped("writes, then reads every row back by get and by cursor with bounds", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const rows = sortedRows(600)
      const written = yield* writeTable(fs, rows)
      assert.isDefined(written)
      const p = written?.properties as Format.TableProperties
      assert.strictEqual(p.rowCount, 600)
      assert.isAbove(p.blockCount, 10)
      assert.strictEqual(p.minSeq, 10)
      assert.strictEqual(p.maxSeq, 609)
      assert.deepStrictEqual(p.tenants, ["even", "odd"])
      assert.strictEqual(p.tombstones, 120)
      assert.deepStrictEqual(p.minTimestamp, { wall: 0, node: 1 })
      assert.deepStrictEqual(p.maxTimestamp, { wall: 600, node: 1 })
      assert.deepStrictEqual(yield* fs.disk().list("/sst"), ["1.sst"])

      const cache = new BlockCache.BlockCache(1 << 20)
      const table = yield* Reader.open(fs.disk(), "/sst/1.sst", 1, cache)
      for (const { key, row } of rows) assert.isTrue(same(yield* table.get(key), row))
      assert.isUndefined(yield* table.get(Row.makeKey("even", "id-00001")))
      assert.isUndefined(yield* table.get(Row.makeKey("zzz", "x")))
      assert.isAbove(cache.hits, 0)

      const all = yield* Reader.collect(table.cursor())
      assert.deepStrictEqual(
        all.map((e) => e.key),
        rows.map((e) => e.key),
      )
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.nat(700), fc.nat(700), async (a, b) => {
            const start = Row.makeKey("even", `id-${String(a).padStart(5, "0")}`)
            const end = Row.makeKey("odd", `id-${String(b).padStart(5, "0")}`)
            const got = await Effect.runPromise(Reader.collect(table.cursor(start, end, { fillCache: false })))
            const want = rows.filter((r) => r.key >= start && r.key < end)
            return got.map((e) => e.key).join() === want.map((e) => e.key).join()
          }),
          { numRuns: 100, seed: Arb.seed("SSTable.cursor") },
        ),
      )
    }),
  )

  it.scoped("round-trips random rows (property)", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), Arb.row), {
          selector: ([id]) => id,
          minLength: 1,
          maxLength: 80,
        }), async (entries) => {
          const rows = entries
            .map(([id, row]) => ({ key: Row.makeKey("t", id), row }))
            .sort((a, b) => Row.compareKeys(a.key, b.key))
          const { bytes } = Format.buildTable(rows, 128, 10)
          const fs = Disk.makeMemoryFileSystem()
          return Effect.runPromise(
            Effect.scoped(
              Effect.gen(function* () {
                const disk = fs.disk()
                yield* disk.mkdir("/d")
                yield* disk.writeFileAtomic("/d/t.sst", bytes)
                const table = yield* Reader.open(disk, "/d/t.sst", 7, new BlockCache.BlockCache(4096))
                for (const { key, row } of rows) if (!same(yield* table.get(key), row)) return false
                const back = yield* Reader.collect(table.cursor())
                return back.length === rows.length && back.every((e, i) => same(e.row, rows[i]?.row))
              }),
            ),
          )
        }),
        { numRuns: 150, seed: Arb.seed("SSTable.roundtrip") },
      ),
    ),
  )

  it("golden bytes of a tiny table", () => {
    const row: Row.Row = {
      deletedAt: undefined,
      cells: new Map([["m", { ts: { wall: 4096, node: 2 }, value: { _tag: "Meta", type: "x" } }]]),
      seq: 3,
    }
    const { bytes } = Format.buildTable([{ key: Row.makeKey("t", "a"), row }], 4096, 10)
    const hex = Buffer.from(bytes).toString("hex")
    const dataBlock =
      "03" + "740061" + // key "t\0a"
      "16" + "0103000100016d" + "0010000000000000" + "02000000" + "01" + "0178" // row: v1 seq3 no-tombstone 1 cell "m"
    const dataCrc = Buffer.alloc(4)
    dataCrc.writeUInt32LE(crc32(Buffer.from(dataBlock, "hex")))
    assert.strictEqual(hex.slice(0, dataBlock.length + 8), dataBlock + dataCrc.toString("hex"))
    // footer: 49 bytes ending in version 1, magic, crc
    const footer = hex.slice(hex.length - Format.FOOTER_BYTES * 2)
    assert.strictEqual(footer.slice(72, 90), "01" + "414c4c495353540a")
    assert.strictEqual(
      hex,
      "03740061160103000100016d001000000000000002000000010178" +
        dataCrc.toString("hex") +
        GOLDEN_TAIL,
    )
  })

  const damagedOpen = (damage: (bytes: Uint8Array) => { readonly at: number; readonly value: Uint8Array }) =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* writeTable(fs, sortedRows(200))
      const bytes = fs.peek("/sst/1.sst") as Uint8Array
      const { at, value } = damage(bytes)
      fs.corrupt("/sst/1.sst", at, value)
      return { fs, at, size: bytes.length }
    })

  it.scoped("a flipped bit in a data block is reported as Corruption at that block", () =>
    Effect.gen(function* () {
      const { fs, at } = yield* damagedOpen((bytes) => ({ at: 700, value: Uint8Array.of((bytes[700] as number) ^ 0x10) }))
      const table = yield* Reader.open(fs.disk(), "/sst/1.sst", 1, new BlockCache.BlockCache(1 << 20))
      const results = yield* Effect.forEach(sortedRows(200), ({ key }) => Effect.exit(table.get(key)))
      const failures = results.filter(Exit.isFailure)
      assert.isAbove(failures.length, 0)
      for (const f of failures) {
        const err = f.cause._tag === "Fail" ? f.cause.error : undefined
        assert.strictEqual(err?._tag, "Corruption")
        if (err?._tag === "Corruption") {
          assert.strictEqual(err.file, "/sst/1.sst")
          assert.isAtMost(err.offset, at)
          assert.match(err.message, /checksum mismatch/)
        }
      }
      // the scan fails too, rather than skipping the block
      const scan = yield* Effect.exit(Reader.collect(table.cursor()))
      assert.isTrue(Exit.isFailure(scan))
    }),
  )

  it.scoped("a flipped bit in the footer, index or properties fails the open with Corruption", () =>
    Effect.gen(function* () {
      for (const fromEnd of [1, 10, 30, 45, 60, 100]) {
        const { fs, size } = yield* damagedOpen((bytes) => ({
          at: bytes.length - fromEnd,
          value: Uint8Array.of((bytes[bytes.length - fromEnd] as number) ^ 0x01),
        }))
        const exit = yield* Effect.exit(Reader.open(fs.disk(), "/sst/1.sst", 1, new BlockCache.BlockCache(1 << 20)))
        assert.isTrue(Exit.isFailure(exit), `flip at -${fromEnd}`)
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
          assert.strictEqual(exit.cause.error._tag, "Corruption")
          if (exit.cause.error._tag === "Corruption") assert.isBelow(exit.cause.error.offset, size)
        }
      }
    }),
  )

  it.scoped("an unknown format version is refused, naming the version", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* writeTable(fs, sortedRows(3))
      const bytes = fs.peek("/sst/1.sst") as Uint8Array
      const footer = Uint8Array.prototype.slice.call(bytes, bytes.length - Format.FOOTER_BYTES)
      footer[36] = 9
      const crc = Buffer.alloc(4)
      crc.writeUInt32LE(crc32(footer.subarray(0, 45)))
      footer.set(crc, 45)
      fs.corrupt("/sst/1.sst", bytes.length - Format.FOOTER_BYTES, footer)
      const exit = yield* Effect.exit(Reader.open(fs.disk(), "/sst/1.sst", 1, new BlockCache.BlockCache(1 << 20)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") assert.match(exit.cause.error.message, /version 9/)
    }),
  )

  it.effect("writing no rows leaves no file", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const written = yield* writeTable(fs, [])
      assert.isUndefined(written)
      assert.deepStrictEqual(yield* fs.disk().list("/sst"), [])
    }),
  )
})

describe("BlockCache", () => {
  it("evicts least recently used blocks past its byte budget", () => {
    const { bytes, properties } = Format.buildTable(sortedRows(4), 1 << 20, 10)
    const region = bytes.subarray(0, properties.dataBytes)
    const b = Format.decodeDataBlock(region)
    const cache = new BlockCache.BlockCache(b.byteSize * 2)
    cache.set(1, 0, b)
    cache.set(2, 0, b)
    assert.strictEqual(cache.get(1, 0), b) // 1 is now most recent
    cache.set(3, 0, b)
    assert.isUndefined(cache.get(2, 0))
    assert.strictEqual(cache.get(1, 0), b)
    assert.strictEqual(cache.get(3, 0), b)
    assert.isAtMost(cache.size, b.byteSize * 2)
    cache.dropTable(1)
    assert.isUndefined(cache.get(1, 0))
    assert.strictEqual(cache.hits, 3)
    assert.strictEqual(cache.misses, 2)
  })
})

// bloom (64 bits, k=7, crc) | index (1 block: "t\0a".."t\0a" at 0, 31 bytes, crc) |
// properties (1 row, 1 block, 31 data bytes, 0 tombstones, seq 3..3, ts, keys, tenants ["t"], crc) |
// footer (index @44+15, bloom @31+13, properties @59+45, version 1, magic, crc)
const GOLDEN_TAIL =
  "4110000000411004" + "07" + "4efedd96" +
  "01" + "03740061" + "03740061" + "00" + "1f" + "e4986b8f" +
  "01011f000303" + "0010000000000000" + "02000000" + "0010000000000000" + "02000000" + "03740061" + "03740061" +
  "01" + "0174" + "191652e1" +
  "2c00000000000000" + "0f000000" + "1f00000000000000" + "0d000000" + "3b00000000000000" + "2d000000" +
  "01" + "414c4c495353540a" + "ee392246"
