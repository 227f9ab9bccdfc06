import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Disk from "../src/Disk.js"

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** The same behavioural suite runs against both implementations. */
const suite = (name: string, makeDisk: () => { disk: Disk.DiskShape; root: string }) =>
  describe(name, () => {
    it.scoped("append, read, size, sync, truncate", () =>
      Effect.gen(function* () {
        const { disk, root } = makeDisk()
        yield* disk.mkdir(`${root}/a/b`)
        const file = yield* disk.open(`${root}/a/b/f.log`, "append")
        yield* file.append(bytes("hello "))
        yield* Effect.all([file.append(bytes("big ")), file.append(bytes("world"))], { concurrency: "unbounded" })
        yield* file.sync
        assert.strictEqual(yield* file.size, 15)
        assert.strictEqual(text(yield* file.read(0, 100)), "hello big world")
        assert.strictEqual(text(yield* file.read(6, 3)), "big")
        assert.strictEqual((yield* file.read(100, 3)).length, 0)
        yield* file.truncate(5)
        assert.strictEqual(yield* file.size, 5)
        yield* file.append(bytes("!"))
        assert.strictEqual(text(yield* disk.readFile(`${root}/a/b/f.log`)), "hello!")
        yield* file.close
        // Reopening in append mode continues at the end.
        const again = yield* disk.open(`${root}/a/b/f.log`, "append")
        yield* again.append(bytes("?"))
        assert.strictEqual(text(yield* disk.readFile(`${root}/a/b/f.log`)), "hello!?")
        const trunc = yield* disk.open(`${root}/a/b/f.log`, "truncate")
        assert.strictEqual(yield* trunc.size, 0)
      }),
    )

    it.scoped("small and large appends started together land in the order they started", () =>
      Effect.gen(function* () {
        const { disk, root } = makeDisk()
        yield* disk.mkdir(`${root}/m`)
        const file = yield* disk.open(`${root}/m/f.log`, "append")
        // Sizes on both sides of the node implementation's inline-write limit (64 KiB).
        const sizes = [10, 200_000, 65_536, 65_537, 1, 1_000_000, 3]
        const parts = sizes.map((n, i) => new Uint8Array(n).fill(i + 1))
        yield* Effect.all(
          parts.map((p) => file.append(p)),
          { concurrency: "unbounded", discard: true },
        )
        yield* file.sync
        const all = yield* disk.readFile(`${root}/m/f.log`)
        assert.strictEqual(all.length, sizes.reduce((a, b) => a + b, 0))
        let at = 0
        parts.forEach((p, i) => {
          assert.isTrue(Buffer.from(all.subarray(at, at + p.length)).equals(Buffer.from(p)), `part ${i}`)
          at += p.length
        })
      }),
    )

    it.scoped("namespace: list, rename, remove, exists, writeFileAtomic", () =>
      Effect.gen(function* () {
        const { disk, root } = makeDisk()
        assert.deepStrictEqual(yield* disk.list(`${root}/missing`), [])
        yield* disk.mkdir(`${root}/d`)
        yield* disk.writeFileAtomic(`${root}/d/x`, bytes("one"))
        yield* disk.writeFileAtomic(`${root}/d/x`, bytes("two"))
        assert.strictEqual(text(yield* disk.readFile(`${root}/d/x`)), "two")
        yield* disk.rename(`${root}/d/x`, `${root}/d/y`)
        assert.deepStrictEqual(yield* disk.list(`${root}/d`), ["y"])
        assert.isTrue(yield* disk.exists(`${root}/d/y`))
        assert.isFalse(yield* disk.exists(`${root}/d/x`))
        yield* disk.remove(`${root}/d/y`)
        yield* disk.remove(`${root}/d/y`) // removing a missing file is not an error
        assert.deepStrictEqual(yield* disk.list(`${root}/d`), [])
        const missing = yield* Effect.exit(disk.open(`${root}/d/nope`, "read"))
        assert.isTrue(Exit.isFailure(missing))
        const failed = yield* Effect.flip(disk.readFile(`${root}/d/nope`))
        assert.strictEqual(failed._tag, "StorageFailure")
      }),
    )
  })

const nodeRoots: Array<string> = []
afterAll(() => {
  for (const root of nodeRoots) Fs.rmSync(root, { recursive: true, force: true })
})
suite("Disk.layerNode", () => {
  const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-disk-"))
  nodeRoots.push(root)
  return { disk: Effect.runSync(Disk.makeNode), root }
})
suite("Disk.layerMemory", () => ({ disk: Effect.runSync(Disk.makeMemory), root: "/data" }))

describe("Disk memory crash", () => {
  it.scoped("drops unsynced bytes, keeps synced ones", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const disk = fs.disk()
      yield* disk.mkdir("/d")
      const file = yield* disk.open("/d/wal", "append")
      yield* disk.syncDir("/d")
      yield* file.append(bytes("durable"))
      yield* file.sync
      yield* file.append(bytes("-lost"))
      fs.crash()
      const after = fs.disk()
      assert.strictEqual(text(yield* after.readFile("/d/wal")), "durable")
      // The old boot's handles and disk are dead, like a killed process.
      assert.isTrue(Exit.isFailure(yield* Effect.exit(file.append(bytes("x")))))
      assert.isTrue(Exit.isFailure(yield* Effect.exit(disk.remove("/d/wal"))))
      assert.strictEqual(text(yield* after.readFile("/d/wal")), "durable")
    }),
  )

  it.scoped("a directory change is lost unless the directory is synced", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const disk = fs.disk()
      yield* disk.mkdir("/d")
      const a = yield* disk.open("/d/a", "append")
      yield* a.append(bytes("a"))
      yield* a.sync // file data synced, but its name is not
      yield* disk.writeFileAtomic("/d/b", bytes("b")) // syncs the directory: a and b both become durable
      const c = yield* disk.open("/d/c", "append")
      yield* c.append(bytes("c"))
      yield* c.sync
      yield* disk.remove("/d/a")
      fs.crash()
      const after = fs.disk()
      assert.deepStrictEqual(yield* after.list("/d"), ["a", "b"])
      assert.strictEqual(text(yield* after.readFile("/d/a")), "a")
      assert.strictEqual(text(yield* after.readFile("/d/b")), "b")
    }),
  )

  it.scoped("rename is atomic at syncDir; truncate below the durable length is undone by a crash", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const disk = fs.disk()
      yield* disk.mkdir("/d")
      yield* disk.writeFileAtomic("/d/m", bytes("old"))
      const f = yield* disk.open("/d/m", "append")
      yield* f.truncate(1)
      yield* f.append(bytes("zz"))
      yield* disk.rename("/d/m", "/d/n")
      fs.crash()
      const after = fs.disk()
      assert.deepStrictEqual(yield* after.list("/d"), ["m"])
      assert.strictEqual(text(yield* after.readFile("/d/m")), "old")
    }),
  )

  it.scoped("keepUnsynced simulates a torn write", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const disk = fs.disk()
      yield* disk.mkdir("/d")
      const f = yield* disk.open("/d/w", "append")
      yield* disk.syncDir("/d")
      yield* f.append(bytes("abc"))
      yield* f.sync
      yield* f.append(new Uint8Array(10_000).fill(1)) // grows the buffer past the synced one
      fs.crash({ keepUnsynced: (_, n) => n / 2 })
      const data = yield* fs.disk().readFile("/d/w")
      assert.strictEqual(data.length, 3 + 5000)
      assert.strictEqual(text(data.subarray(0, 3)), "abc")
      assert.strictEqual(data[4000], 1)
      assert.isTrue(fs.syncCount() >= 1)
    }),
  )

  it.scoped("corrupt damages bytes durably", () =>
    Effect.gen(function* () {
      const fs = Disk.makeMemoryFileSystem()
      const disk = fs.disk()
      yield* disk.mkdir("/d")
      yield* disk.writeFileAtomic("/d/f", bytes("abcdef"))
      fs.corrupt("/d/f", 2, bytes("X"))
      assert.strictEqual(text(yield* disk.readFile("/d/f")), "abXdef")
      fs.crash()
      assert.strictEqual(text(yield* fs.disk().readFile("/d/f")), "abXdef")
    }),
  )
})

describe("Disk.layerNode file lifetime", () => {
  it.scoped("a closed file refuses every operation instead of touching a reused descriptor", () =>
    Effect.gen(function* () {
      const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-disk-"))
      nodeRoots.push(root)
      const disk = yield* Disk.makeNode
      const a = yield* disk.open(`${root}/a`, "truncate")
      yield* a.append(bytes("aaaa"))
      yield* a.close
      // The kernel hands the freed descriptor number to the next open: before
      // the fix, a.read/a.sync here acted on b's descriptor.
      const b = yield* disk.open(`${root}/b`, "truncate")
      yield* b.append(bytes("bbbb"))
      for (const attempt of [a.read(0, 4), a.sync, a.truncate(0), a.append(bytes("x"))]) {
        const exit = yield* Effect.exit(attempt)
        assert.isTrue(Exit.isFailure(exit))
        assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "file is closed")
      }
      assert.strictEqual(text(yield* b.read(0, 10)), "bbbb")
      assert.strictEqual(text(yield* disk.readFile(`${root}/a`)), "aaaa")
    }),
  )

  it.scopedLive("close waits for kernel operations of interrupted fibers", () =>
    Effect.gen(function* () {
      const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-disk-"))
      nodeRoots.push(root)
      const disk = yield* Disk.makeNode
      const a = yield* disk.open(`${root}/a`, "truncate")
      const chunk = new Uint8Array(4 * 1024 * 1024).fill(7)
      for (let round = 0; round < 5; round++) {
        // Start appends + syncs, give up on them at once (as an interrupted
        // compaction does), close, and open another file right away.
        const fiber = yield* Effect.fork(Effect.all([a.append(chunk), a.sync, a.read(0, chunk.length)], { concurrency: "unbounded" }))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber)
        if (round === 4) yield* a.close
      }
      const b = yield* disk.open(`${root}/b`, "truncate")
      yield* b.append(bytes("bbbb"))
      yield* b.sync
      // Whatever a's stray operations did, they finished before a's descriptor was released.
      yield* Effect.sleep("50 millis")
      assert.strictEqual(text(yield* disk.readFile(`${root}/b`)), "bbbb")
      assert.strictEqual((yield* disk.readFile(`${root}/a`)).length % chunk.length, 0)
    }),
  )
})
