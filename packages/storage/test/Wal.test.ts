import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import * as Disk from "../src/Disk.js"
import * as Metrics from "../src/Metrics.js"
import * as StorageConfig from "../src/StorageConfig.js"
import * as Wal from "../src/Wal.js"
import * as WalFormat from "../src/WalFormat.js"

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

type Config = Partial<StorageConfig.StorageConfigShape>

/** Opens a WAL on the in-memory file system inside `scope` (one "boot" of the process). */
const open = (fs: Disk.MemoryFileSystem, scope: Scope.Scope, config: Config = {}) =>
  Wal.make.pipe(
    Scope.extend(scope),
    Effect.provide(Disk.layerMemoryFrom(fs)),
    Effect.provide(StorageConfig.layer({ dataDir: "/data", ...config })),
  )

const withWal = <A, E>(fs: Disk.MemoryFileSystem, config: Config, f: (wal: Wal.WalShape) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(Effect.flatMap(Effect.scope, (scope) => open(fs, scope, config)), f))

const replayAll = (wal: Wal.WalShape, afterSeq = 0) =>
  Effect.gen(function* () {
    const out: Array<[number, string]> = []
    yield* wal.replay(afterSeq, (seq, payload) => Effect.sync(() => out.push([seq, text(payload)])))
    return out
  })

const counter = (metric: typeof Metrics.walTornTails) => Effect.map(Metric.value(metric), (s) => s.count)

const segmentPaths = (fs: Disk.MemoryFileSystem) =>
  Effect.map(fs.disk().list("/data/wal"), (names) => names.map((n) => `/data/wal/${n}`))

describe("WalFormat", () => {
  it("golden bytes of a header and a record", () => {
    assert.deepStrictEqual([...WalFormat.encodeHeader()], [0x41, 0x57, 0x41, 0x4c, 1, 0, 0, 0])
    const record = WalFormat.encodeRecord([
      { seq: 1, payload: bytes("a") },
      { seq: 2 ** 32 + 2, payload: bytes("") },
    ])
    assert.deepStrictEqual(
      Buffer.from(record).toString("hex"),
      // length=29 | crc32 | count=2 | seq=1 | size=1 | "a" | seq=2^32+2 | size=0
      "1d000000" + "f9b1821c" + "02000000" + "0100000000000000" + "01000000" + "61" + "0200000001000000" + "00000000",
    )
    const read = WalFormat.readRecord(record, 0)
    assert.strictEqual(read._tag, "Record")
    if (read._tag === "Record") {
      assert.deepStrictEqual(
        read.entries.map((e) => [e.seq, text(e.payload)]),
        [
          [1, "a"],
          [2 ** 32 + 2, ""],
        ],
      )
    }
    assert.strictEqual(WalFormat.segmentName(42), "00000000000000000042.wal")
    assert.strictEqual(WalFormat.parseSegmentName("00000000000000000042.wal"), 42)
    assert.strictEqual(WalFormat.parseSegmentName("42.wal"), undefined)
  })

  it("a damaged record is reported, and the scanner finds the next valid one", () => {
    const a = WalFormat.encodeRecord([{ seq: 1, payload: bytes("first") }])
    const b = WalFormat.encodeRecord([{ seq: 2, payload: bytes("second") }])
    const all = new Uint8Array(a.length + b.length)
    all.set(a)
    all.set(b, a.length)
    all[12 + 12] ^= 0x01 // a bit inside the first payload's bytes
    assert.strictEqual(WalFormat.readRecord(all, 0)._tag, "Damaged")
    assert.strictEqual(WalFormat.findNextRecord(all, 0, 0), a.length)
    assert.strictEqual(WalFormat.findNextRecord(all, 0, 2), undefined)
    assert.strictEqual(WalFormat.readRecord(all.subarray(0, a.length - 1), 0)._tag, "Damaged")
  })
})

describe("Wal", () => {
  it.effect("replays after a clean stop, in seq order, and seqs keep increasing", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const seqs = yield* withWal(fs, {}, (wal) =>
        Effect.forEach(["a", "b", "c"], (s) => wal.append(bytes(s)), { concurrency: 1 }),
      )
      assert.deepStrictEqual(seqs, [1, 2, 3])
      const after = yield* withWal(fs, {}, (wal) =>
        Effect.gen(function* () {
          const replayed = yield* replayAll(wal, 1)
          const next = yield* wal.append(bytes("d"))
          return { replayed, next }
        }),
      )
      assert.deepStrictEqual(after.replayed, [
        [2, "b"],
        [3, "c"],
      ])
      assert.strictEqual(after.next, 4)
      const third = yield* withWal(fs, {}, (wal) => replayAll(wal))
      assert.deepStrictEqual(
        third.map(([, v]) => v),
        ["a", "b", "c", "d"],
      )
    }),
  )

  it.effect("an unclean stop keeps every acknowledged append (random torn tails)", () =>
    Effect.gen(function* () {
      for (let round = 0; round < 20; round++) {
        const seed = round * 7919 + 13
        let state = seed
        const random = () => {
          state = (state * 1103515245 + 12345) % 2 ** 31
          return state / 2 ** 31
        }
        const fs = Disk.makeMemoryFileSystem()
        const acked: Array<[number, string]> = []
        let total = 0
        for (let boot = 0; boot < 3; boot++) {
          const scope = yield* Scope.make()
          const wal = yield* open(fs, scope, { walSegmentBytes: 2048 })
          const before = yield* replayAll(wal)
          // Everything acknowledged before any earlier crash is still there.
          const got = new Map(before)
          for (const [seq, value] of acked) assert.strictEqual(got.get(seq), value, `seed ${seed}: seq ${seq} lost`)
          const n = 10 + Math.floor(random() * 40)
          const fibers = yield* Effect.forEach(
            Array.from({ length: n }, (_, i) => `v${total + i}`),
            (value) =>
              Effect.fork(Effect.tap(wal.append(bytes(value)), (seq) => Effect.sync(() => acked.push([seq, value])))),
          )
          total += n
          // Let a random number of group commits finish, then pull the plug.
          const steps = Math.floor(random() * 6)
          for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
          fs.crash({ keepUnsynced: (_, unsynced) => Math.floor(random() * unsynced) })
          void fibers
          yield* Scope.close(scope, Exit.void)
        }
      }
    }),
  )

  it.effect("a torn final record is truncated and counted, not an error", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, {}, (wal) => Effect.forEach(["one", "two", "three"], (s) => wal.append(bytes(s))))
      const [path] = yield* segmentPaths(fs)
      const size = fs.peek(path!)!.length
      yield* Effect.scoped(
        Effect.flatMap(fs.disk().open(path!, "append"), (file) => Effect.andThen(file.truncate(size - 3), file.sync)),
      )
      const torn = yield* counter(Metrics.walTornTails)
      const replayed = yield* withWal(fs, {}, (wal) =>
        Effect.gen(function* () {
          const r = yield* replayAll(wal)
          assert.strictEqual(yield* wal.append(bytes("four")), 3)
          return r
        }),
      )
      assert.deepStrictEqual(
        replayed.map(([, v]) => v),
        ["one", "two"],
      )
      assert.strictEqual((yield* counter(Metrics.walTornTails)) - torn, 1)
      // The torn bytes are gone, so the next start is clean.
      const again = yield* withWal(fs, {}, (wal) => replayAll(wal))
      assert.deepStrictEqual(
        again.map(([, v]) => v),
        ["one", "two", "four"],
      )
      assert.strictEqual((yield* counter(Metrics.walTornTails)) - torn, 1)
    }),
  )

  it.effect("a flipped bit in the final record is a torn tail", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, {}, (wal) => Effect.forEach(["one", "two"], (s) => wal.append(bytes(s))))
      const [path] = yield* segmentPaths(fs)
      const data = fs.peek(path!)!
      fs.corrupt(path!, data.length - 1, Uint8Array.of(data[data.length - 1]! ^ 0x10))
      const replayed = yield* withWal(fs, {}, (wal) => replayAll(wal))
      assert.deepStrictEqual(
        replayed.map(([, v]) => v),
        ["one"],
      )
    }),
  )

  it.effect("a flipped bit mid-segment fails start-up naming segment and offset; salvage skips it", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, {}, (wal) => Effect.forEach(["one", "two", "three"], (s) => wal.append(bytes(s))))
      const [path] = yield* segmentPaths(fs)
      // First record starts right after the 8-byte header; flip a bit in its payload.
      const target = WalFormat.HEADER_BYTES + WalFormat.RECORD_HEADER_BYTES + 4 + WalFormat.ENTRY_HEADER_BYTES
      fs.corrupt(path!, target, Uint8Array.of(fs.peek(path!)![target]! ^ 0x04))
      const error = yield* Effect.flip(withWal(fs, {}, (wal) => replayAll(wal)))
      assert.strictEqual(error._tag, "Corruption")
      if (error._tag === "Corruption") {
        assert.strictEqual(error.file, path)
        assert.strictEqual(error.offset, WalFormat.HEADER_BYTES)
        assert.include(error.message, path!)
        assert.include(error.message, `offset ${WalFormat.HEADER_BYTES}`)
      }
      // Refusing to start changed nothing on disk.
      assert.strictEqual(fs.peek(path!)!.length > target, true)
      const skipped = yield* counter(Metrics.walSkippedRecords)
      const salvaged = yield* withWal(fs, { walSalvage: true }, (wal) => replayAll(wal))
      assert.deepStrictEqual(salvaged, [
        [2, "two"],
        [3, "three"],
      ])
      assert.strictEqual((yield* counter(Metrics.walSkippedRecords)) - skipped, 1)
    }),
  )

  it.effect("damage in an older segment with later segments is corruption", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, { walSegmentBytes: 64 }, (wal) =>
        Effect.forEach(["a".repeat(80), "b".repeat(80), "c".repeat(80)], (s) => wal.append(bytes(s))),
      )
      const paths = yield* segmentPaths(fs)
      assert.strictEqual(paths.length, 3)
      const data = fs.peek(paths[1]!)!
      fs.corrupt(paths[1]!, data.length - 1, Uint8Array.of(data[data.length - 1]! ^ 1))
      const error = yield* Effect.flip(withWal(fs, { walSegmentBytes: 64 }, () => Effect.void))
      assert.strictEqual(error._tag, "Corruption")
      if (error._tag === "Corruption") assert.strictEqual(error.file, paths[1])
    }),
  )

  it.effect("an unknown format version is refused", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, {}, (wal) => wal.append(bytes("x")))
      const [path] = yield* segmentPaths(fs)
      fs.corrupt(path!, 4, Uint8Array.of(9))
      const error = yield* Effect.flip(withWal(fs, { walSalvage: true }, () => Effect.void))
      assert.strictEqual(error._tag, "Corruption")
      assert.include(error.message, "version 9")
    }),
  )

  it.effect("pipelined group commit: batches written during an fdatasync wait for the next one; acks in seq order", () =>
    Effect.gen(function* () {
      // fdatasync makes what was appended BEFORE it durable and completes a few
      // scheduler turns later, so the writer writes further batches meanwhile.
      const slowSync = (fs: Disk.MemoryFileSystem): Disk.DiskShape => {
        const disk = fs.disk()
        return {
          ...disk,
          open: (path, mode) =>
            Effect.map(disk.open(path, mode), (file) => ({
              ...file,
              sync: Effect.zipLeft(file.sync, Effect.forEach([1, 2, 3, 4], () => Effect.yieldNow())),
            })),
        }
      }
      for (let round = 0; round < 20; round++) {
        const fs = Disk.makeMemoryFileSystem()
        const acked: Array<number> = []
        const scope = yield* Scope.make()
        const wal = yield* Wal.make.pipe(
          Scope.extend(scope),
          Effect.provideService(Disk.Disk, slowSync(fs)),
          Effect.provide(StorageConfig.layer({ dataDir: "/data", walSegmentBytes: 4096 })),
        )
        const n = 200
        const fibers = yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
          Effect.fork(
            Effect.zipRight(
              Effect.forEach(Array.from({ length: i % 7 }, () => 0), () => Effect.yieldNow()),
              Effect.tap(wal.append(bytes(`v${i}`)), (seq) => Effect.sync(() => acked.push(seq))),
            ),
          ),
        )
        // Stop somewhere in the middle (or at the end), then pull the plug.
        const steps = 5 + ((round * 37) % 120)
        for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
        const ackedAtCrash = [...acked]
        fs.crash()
        void fibers
        yield* Scope.close(scope, Exit.void)
        // Completions come in seq order, each after a sync that covers it.
        assert.deepStrictEqual(ackedAtCrash, [...ackedAtCrash].sort((a, b) => a - b), `round ${round}: acks out of order`)
        const replayed = new Set((yield* withWal(fs, {}, (w) => replayAll(w))).map(([seq]) => seq))
        for (const seq of ackedAtCrash) assert.isTrue(replayed.has(seq), `round ${round}: acknowledged seq ${seq} lost`)
        if (steps > 100) assert.isAbove(ackedAtCrash.length, 0)
      }
    }),
  )

  it.effect("concurrent appends share group commits (fewer fsyncs than appends)", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const syncsBefore = fs.syncCount()
      const seqs = yield* withWal(fs, {}, (wal) =>
        Effect.forEach(
          Array.from({ length: 500 }, (_, i) => i),
          (i) => wal.append(bytes(`v${i}`)),
          { concurrency: "unbounded" },
        ),
      )
      assert.deepStrictEqual(
        [...seqs].sort((a, b) => a - b),
        Array.from({ length: 500 }, (_, i) => i + 1),
      )
      const syncs = fs.syncCount() - syncsBefore
      assert.isBelow(syncs, 50, `500 appends took ${syncs} fsyncs`)
      const replayed = yield* withWal(fs, {}, (wal) => replayAll(wal))
      assert.strictEqual(replayed.length, 500)
      // Log order is seq order, and each seq carries the payload its append got back.
      for (let i = 0; i < 500; i++) assert.strictEqual(replayed[i]![0], i + 1)
      for (let i = 0; i < 500; i++) assert.strictEqual(replayed[seqs[i]! - 1]![1], `v${i}`)
    }),
  )

  it.effect("syncMode none writes without fdatasync; sync makes it durable", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const scope = yield* Scope.make()
      const wal = yield* open(fs, scope, { syncMode: "none" })
      yield* wal.append(bytes("a"))
      yield* wal.append(bytes("b"))
      yield* wal.sync
      yield* wal.append(bytes("lost"))
      fs.crash()
      yield* Scope.close(scope, Exit.void)
      const replayed = yield* withWal(fs, {}, (wal2) => replayAll(wal2))
      assert.deepStrictEqual(
        replayed.map(([, v]) => v),
        ["a", "b"],
      )
    }),
  )

  it.effect("closing the WAL makes it durable, even with syncMode none", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      yield* withWal(fs, { syncMode: "none" }, (wal) => Effect.forEach(["a", "b"], (s) => wal.append(bytes(s))))
      fs.crash() // after a clean stop
      const replayed = yield* withWal(fs, {}, (wal) => replayAll(wal))
      assert.deepStrictEqual(
        replayed.map(([, v]) => v),
        ["a", "b"],
      )
    }),
  )

  it.effect("rotates segments by size; deleteThrough removes only fully flushed ones; advanceSeq", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const config = { walSegmentBytes: 100 }
      yield* withWal(fs, config, (wal) =>
        Effect.gen(function* () {
          for (let i = 1; i <= 6; i++) yield* wal.append(bytes(`${i}`.repeat(100)))
          const segments = yield* wal.segments
          assert.strictEqual(segments.length, 6)
          assert.strictEqual(segments[0], WalFormat.segmentName(1))
          yield* wal.deleteThrough(3)
          assert.deepStrictEqual(yield* wal.segments, segments.slice(3))
          yield* wal.deleteThrough(100) // never the active segment
          assert.deepStrictEqual(yield* wal.segments, segments.slice(5))
        }),
      )
      const after = yield* withWal(fs, config, (wal) =>
        Effect.gen(function* () {
          const r = yield* replayAll(wal)
          yield* wal.advanceSeq(1000)
          return { r, next: yield* wal.append(bytes("x")) }
        }),
      )
      assert.deepStrictEqual(
        after.r.map(([s]) => s),
        [6],
      )
      assert.strictEqual(after.next, 1001)
    }),
  )

  it.effect("a closed WAL refuses appends", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const scope = yield* Scope.make()
      const wal = yield* open(fs, scope)
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(wal.append(bytes("late")))
      assert.strictEqual(error._tag, "StorageFailure")
    }),
  )
})
