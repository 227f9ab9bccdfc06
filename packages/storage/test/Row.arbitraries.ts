/**
 * fast-check arbitraries of rows shared by the storage property tests. Small
 * name and timestamp domains on purpose: collisions and exact ties are where
 * merge bugs live.
 */
import type { Hlc } from "@allidb/core"
import * as fc from "fast-check"
import type * as Row from "../src/Row.js"

/** A seed from FC_SEED or the clock, printed so a failing run can be replayed with FC_SEED=<seed>. */
export const seed = (name: string): number => {
  const s = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31
  console.log(`[${name}] fast-check seed ${s} (replay with FC_SEED=${s})`)
  return s
}

export const timestamp: fc.Arbitrary<Hlc.Timestamp> = fc.record({
  wall: fc.integer({ min: 0, max: 6 }),
  node: fc.integer({ min: 0, max: 2 }),
})

const meta = fc.string({ maxLength: 3 })
const smallMap = fc.dictionary(fc.constantFrom("a", "b", "c"), fc.constantFrom("x", "y"), { maxKeys: 2 })

const metaValue: fc.Arbitrary<Row.MetaValue> = fc.record(
  {
    _tag: fc.constant("Meta" as const),
    type: meta,
    metadata: fc.dictionary(fc.constantFrom("k", "l"), fc.oneof(fc.string({ maxLength: 2 }), fc.integer(), fc.boolean()), {
      maxKeys: 2,
    }),
    importance: fc.double({ min: 0, max: 1, noNaN: true }),
    createdAt: fc.integer({ min: 0, max: 10 }),
    updatedAt: fc.integer({ min: 0, max: 10 }),
  },
  { requiredKeys: ["_tag"] },
)

const vectorValue: fc.Arbitrary<Row.VectorValue> = fc.record({
  _tag: fc.constant("Vector" as const),
  version: fc.integer({ min: 0, max: 3 }),
  values: fc.float32Array({ minLength: 1, maxLength: 4, noDefaultInfinity: true, noNaN: true }),
})

const chunkValue: fc.Arbitrary<Row.ChunkValue> = fc.record(
  { _tag: fc.constant("Chunk" as const), index: fc.integer({ min: 0, max: 3 }), text: fc.string({ maxLength: 4 }), metadata: smallMap },
  { requiredKeys: ["_tag", "index", "text"] },
)

const edgeValue: fc.Arbitrary<Row.EdgeValue> = fc.record(
  { _tag: fc.constant("Edge" as const), weight: fc.double({ min: 0, max: 1, noNaN: true }), metadata: smallMap },
  { requiredKeys: ["_tag", "weight"] },
)

const cellOf = <V extends Row.CellValue>(value: fc.Arbitrary<V>): fc.Arbitrary<Row.Cell> =>
  fc.record({ ts: timestamp, value: fc.option(value, { nil: undefined, freq: 3 }) })

const namedCell: fc.Arbitrary<readonly [string, Row.Cell]> = fc.oneof(
  fc.tuple(fc.constant("m"), cellOf(metaValue)),
  fc.tuple(fc.constant("v"), cellOf(vectorValue)),
  fc.tuple(fc.constantFrom("ca", "cb"), cellOf(chunkValue)),
  fc.tuple(fc.constantFrom("er\u0000x", "er\u0000y", "es\u0000x"), cellOf(edgeValue)),
)

export const row: fc.Arbitrary<Row.Row> = fc.record({
  deletedAt: fc.option(timestamp, { nil: undefined, freq: 2 }),
  cells: fc.array(namedCell, { maxLength: 5 }).map((cells) => new Map(cells)),
  seq: fc.integer({ min: 0, max: 20 }),
})
