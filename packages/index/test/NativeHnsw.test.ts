import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { SeededRandom } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import hnswlib from "hnswlib-node"
import * as NativeHnsw from "../src/NativeHnsw.js"

// AlliDB's binding must be hnswlib-node's index with a cheaper boundary:
// the same graph for the same inserts, the same answers, the same files.

const DIM = 12
const N = 1500

const dataset = (seed: number, n: number) => {
  const random = SeededRandom.mulberry32(seed)
  return Array.from({ length: n }, () => Array.from({ length: DIM }, () => random() * 2 - 1))
}

const build = (space: NativeHnsw.Space, vectors: ReadonlyArray<ReadonlyArray<number>>) => {
  const ours = NativeHnsw.make(space, DIM)
  const theirs = new hnswlib.HierarchicalNSW(space, DIM)
  ours.initIndex(vectors.length, 8, 60, 42, false)
  theirs.initIndex(vectors.length, 8, 60, 42, false)
  vectors.forEach((v, label) => {
    ours.addPoint(Float32Array.from(v), label)
    theirs.addPoint(v as Array<number>, label)
  })
  return { ours, theirs }
}

const searchOurs = (index: NativeHnsw.Hnsw, query: ReadonlyArray<number>, k: number, filter?: (label: number) => boolean) => {
  const labels = new Uint32Array(k)
  const distances = new Float32Array(k)
  const n = index.search(Float32Array.from(query), k, labels, distances, filter)
  return { neighbors: Array.from(labels.subarray(0, n)), distances: Array.from(distances.subarray(0, n)) }
}

describe("NativeHnsw", () => {
  for (const space of ["l2", "ip", "cosine"] as const) {
    it(`answers exactly as hnswlib-node (${space}), with and without a filter, after deletes`, () => {
      const vectors = dataset(7, N)
      const { ours, theirs } = build(space, vectors)
      const queries = dataset(8, 40)
      for (const ef of [10, 50]) {
        ours.setEf(ef)
        theirs.setEf(ef)
        for (const q of queries) {
          assert.deepStrictEqual(searchOurs(ours, q, 10), theirs.searchKnn(q as Array<number>, 10))
          const even = (label: number) => label % 2 === 0
          assert.deepStrictEqual(searchOurs(ours, q, 5, even), theirs.searchKnn(q as Array<number>, 5, even))
        }
      }
      for (let label = 0; label < N; label += 3) {
        ours.markDelete(label)
        theirs.markDelete(label)
      }
      for (const q of queries) assert.deepStrictEqual(searchOurs(ours, q, 10), theirs.searchKnn(q as Array<number>, 10))
      assert.strictEqual(ours.getCurrentCount(), theirs.getCurrentCount())
    })
  }

  it("replaces a label's vector, grows, and reads and writes hnswlib-node's files both ways", async () => {
    const vectors = dataset(11, 600)
    const { ours, theirs } = build("cosine", vectors)
    ours.resizeIndex(800)
    theirs.resizeIndex(800)
    const more = dataset(12, 200)
    more.forEach((v, i) => {
      ours.addPoint(Float32Array.from(v), 600 + i)
      theirs.addPoint(v as Array<number>, 600 + i)
    })
    ours.addPoint(Float32Array.from(more[0]!), 3)
    theirs.addPoint(more[0] as Array<number>, 3)
    assert.strictEqual(ours.getMaxElements(), 800)
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-hnsw-"))
    try {
      const writing = ours.writeIndex(Path.join(dir, "ours.bin"))
      // While the file is written the index may be searched, not changed.
      assert.throws(() => ours.addPoint(Float32Array.from(more[1]!), 5), /writeIndex is running/)
      assert.throws(() => ours.markDelete(5), /writeIndex is running/)
      assert.throws(() => ours.initIndex(10, 8, 20, 1, false), /writeIndex is running/)
      assert.throws(() => ours.readIndex(Path.join(dir, "theirs.bin"), false), /writeIndex is running/)
      assert.strictEqual(searchOurs(ours, more[1]!, 3).neighbors.length, 3)
      await writing
      await theirs.writeIndex(Path.join(dir, "theirs.bin"))
      assert.deepStrictEqual(Fs.readFileSync(Path.join(dir, "ours.bin")), Fs.readFileSync(Path.join(dir, "theirs.bin")))
      const back = NativeHnsw.make("cosine", DIM)
      await back.readIndex(Path.join(dir, "theirs.bin"), false)
      const backTheirs = new hnswlib.HierarchicalNSW("cosine", DIM)
      await backTheirs.readIndex(Path.join(dir, "ours.bin"), false)
      assert.strictEqual(back.getCurrentCount(), 800)
      for (const q of dataset(13, 20)) {
        assert.deepStrictEqual(searchOurs(back, q, 10), backTheirs.searchKnn(q as Array<number>, 10))
      }
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("refuses bad arguments with clear errors instead of reading the wrong memory", () => {
    const index = NativeHnsw.make("l2", 4)
    assert.throws(() => index.search(new Float32Array(4), 1, new Uint32Array(1), new Float32Array(1)), /not initialised/)
    index.initIndex(10, 8, 20, 1, false)
    assert.throws(() => index.addPoint(new Float32Array(3), 0), /3 dimensions, the index 4/)
    assert.throws(() => index.addPoint([1, 2, 3, 4] as unknown as Float32Array, 0), /Float32Array/)
    assert.throws(() => index.addPoint(new Float32Array(4), -1), /integer/)
    assert.throws(() => index.addPoint(new Float32Array(4), 1.5), /integer/)
    index.addPoint(new Float32Array([1, 0, 0, 0]), 0)
    assert.throws(() => index.search(new Float32Array(4), 2, new Uint32Array(1), new Float32Array(2)), /shorter than k/)
    assert.throws(() => index.markDelete(5), /hnswlib: Label not found/)
    const boom = new Error("filter failed")
    assert.throws(
      () =>
        index.search(new Float32Array(4), 1, new Uint32Array(1), new Float32Array(1), () => {
          throw boom
        }),
      boom,
    )
    assert.throws(() => NativeHnsw.make("dot" as NativeHnsw.Space, 4), /space must be/)
    // Still usable after every refusal.
    const labels = new Uint32Array(1)
    assert.strictEqual(index.search(new Float32Array([1, 0, 0, 0]), 1, labels, new Float32Array(1)), 1)
    assert.strictEqual(labels[0], 0)
  })

  it("refuses any call during a readIndex", async () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-hnsw-"))
    try {
      const { ours } = build("l2", dataset(31, 300))
      await ours.writeIndex(Path.join(dir, "a.bin"))
      const index = NativeHnsw.make("l2", DIM)
      index.initIndex(10, 8, 20, 1, false)
      const reading = index.readIndex(Path.join(dir, "a.bin"), false)
      const q = Float32Array.from(dataset(32, 1)[0]!)
      assert.throws(() => index.search(q, 1, new Uint32Array(1), new Float32Array(1)), /readIndex is running/)
      assert.throws(() => index.addPoint(q, 0), /readIndex is running/)
      assert.throws(() => index.getCurrentCount(), /readIndex is running/)
      await reading
      assert.strictEqual(index.getCurrentCount(), 300)
      assert.deepStrictEqual(searchOurs(index, Array.from(q), 5), searchOurs(ours, Array.from(q), 5))
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("fails a read of a missing file without touching the index", async () => {
    const index = NativeHnsw.make("l2", 4)
    index.initIndex(10, 8, 20, 1, false)
    index.addPoint(new Float32Array([1, 2, 3, 4]), 7)
    const error = await index.readIndex(Path.join(Os.tmpdir(), "allidb-no-such-file.bin"), false).then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.match(String(error), /hnswlib/)
    assert.strictEqual(index.getCurrentCount(), 1)
  })
})
