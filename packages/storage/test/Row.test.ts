import { chunkId, Entity, entityId, GraphEdge, Hlc, relation, TextChunk, tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Row from "../src/Row.js"
import * as RowCodec from "../src/RowCodec.js"
import * as Arb from "./Row.arbitraries.js"

const ts = (wall: number, node = 0): Hlc.Timestamp => ({ wall, node })
const same = (a: Row.Row, b: Row.Row): boolean =>
  Buffer.compare(RowCodec.encodeRow(a), RowCodec.encodeRow(b)) === 0

describe("Row keys", () => {
  it("sort by tenant, then id, in byte order", () => {
    const keys = [
      Row.makeKey("b", "a"),
      Row.makeKey("a", "zz"),
      Row.makeKey("ab", "a"),
      Row.makeKey("a", "é"),
      Row.makeKey("a", "z"),
      Row.makeKey("a", "\u{1F600}"),
      Row.makeKey("a", "\uFFFD"),
    ]
    const byString = [...keys].sort(Row.compareKeys)
    const byBytes = [...keys].sort((x, y) => Buffer.compare(Row.keyToBytes(x), Row.keyToBytes(y)))
    assert.deepStrictEqual(byString, byBytes)
    assert.deepStrictEqual(
      byString.map((k) => Row.parseKey(k)),
      [
        { tenant: "a", id: "z" },
        { tenant: "a", id: "zz" },
        { tenant: "a", id: "é" },
        { tenant: "a", id: "\uFFFD" },
        { tenant: "a", id: "\u{1F600}" },
        { tenant: "ab", id: "a" },
        { tenant: "b", id: "a" },
      ].map((x) => ({ tenant: tenantId(x.tenant), id: entityId(x.id) })),
    )
    // a tenant's range holds its keys and no other tenant's
    const start = Row.tenantStart("a")
    const end = Row.tenantEnd("a")
    assert.deepStrictEqual(
      byString.filter((k) => k >= start && k < end).length,
      5,
    )
    assert.strictEqual(Row.keyFromBytes(Row.keyToBytes(keys[3] as Row.Key)), keys[3])
  })
})

describe("Row.merge", () => {
  const runs = { numRuns: 2000, seed: Arb.seed("Row.merge") }

  it("is commutative", () => {
    fc.assert(
      fc.property(Arb.row, Arb.row, (a, b) => same(Row.merge(a, b), Row.merge(b, a))),
      runs,
    )
  })
  it("is associative", () => {
    fc.assert(
      fc.property(Arb.row, Arb.row, Arb.row, (a, b, c) =>
        same(Row.merge(Row.merge(a, b), c), Row.merge(a, Row.merge(b, c))),
      ),
      runs,
    )
  })
  it("is idempotent", () => {
    fc.assert(
      fc.property(Arb.row, Arb.row, (a, b) => {
        const m = Row.merge(a, b)
        return same(Row.merge(m, m), m) && same(Row.merge(m, a), m) && same(Row.merge(Row.merge(a, a), Row.empty), Row.merge(a, Row.empty))
      }),
      runs,
    )
  })
  it("keeps the newest cell; a row tombstone shadows only older cells", () => {
    const older: Row.Row = {
      deletedAt: undefined,
      cells: new Map([
        ["m", { ts: ts(1), value: { _tag: "Meta", type: "old" } }],
        ["eR\u0000x", { ts: ts(5), value: { _tag: "Edge", weight: 0.5 } }],
      ]),
      seq: 3,
    }
    const newer: Row.Row = {
      deletedAt: ts(4),
      cells: new Map([["m", { ts: ts(4), value: { _tag: "Meta", type: "new" } }]]),
      seq: 7,
    }
    const m = Row.merge(older, newer)
    assert.strictEqual(m.seq, 7)
    assert.deepStrictEqual(m.deletedAt, ts(4))
    assert.deepStrictEqual(m.cells.get("m")?.value, { _tag: "Meta", type: "new" })
    assert.strictEqual(m.cells.get("eR\u0000x")?.ts.wall, 5)
    // equal timestamps: the tombstone wins
    const del: Row.Row = { deletedAt: undefined, cells: new Map([["m", { ts: ts(4), value: undefined }]]), seq: 1 }
    assert.isTrue(Row.isTombstone(Row.merge(newer, del).cells.get("m") as Row.Cell))
    assert.isTrue(Row.isTombstone(Row.merge(del, newer).cells.get("m") as Row.Cell))
  })
})

describe("RowCodec", () => {
  it("round-trips any row", () => {
    fc.assert(
      fc.property(Arb.row, (row) => {
        const bytes = RowCodec.encodeRow(row)
        const back = RowCodec.decodeRow(bytes)
        return same(back, row) && back.cells.size === row.cells.size && back.seq === row.seq
      }),
      { numRuns: 2000, seed: Arb.seed("RowCodec") },
    )
  })

  it("estimateSize is at least the encoded size (encode buffers sized from it need not grow)", () => {
    fc.assert(
      fc.property(Arb.row, (row) => RowCodec.estimateSize(row) >= RowCodec.encodeRow(row).length),
      { seed: Arb.seed("RowCodec.estimateSize"), numRuns: 500 },
    )
    // Large parts and characters of 3 UTF-8 bytes, where a loose guess falls short.
    const wide = "€".repeat(300)
    const big = Row.fromEntity(
      new Entity({
        id: entityId("big"),
        type: wide.slice(0, 60),
        vector: Array.from({ length: 1024 }, (_, i) => i / 7),
        metadata: { [wide.slice(0, 20)]: wide, n: 1.5, ok: true },
        chunks: [new TextChunk({ id: chunkId("c"), text: wide, metadata: { [wide.slice(0, 5)]: wide } })],
        edges: [new GraphEdge({ to: entityId(wide.slice(0, 30)), relation: relation("r"), weight: 0.5, metadata: { k: wide } })],
      }),
      Hlc.fromMillis(5),
      3,
    )
    assert.isAtLeast(RowCodec.estimateSize(big), RowCodec.encodeRow(big).length)
  })

  it("writeRowWithSeq is the length-prefixed encoding of the row with that seq", () => {
    fc.assert(
      fc.property(Arb.row, fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 40 }), (row, old, seq) => {
        // the stored seq field (`old`, any width) is replaced by `seq`
        const w = new RowCodec.Writer()
        RowCodec.writeRowWithSeq(w, RowCodec.encodeRow({ ...row, seq: old }), seq)
        const expected = new RowCodec.Writer().bytes(RowCodec.encodeRow({ ...row, seq }))
        return Buffer.compare(w.finish(), expected.finish()) === 0
      }),
      { numRuns: 1000, seed: Arb.seed("RowCodec.writeRowWithSeq") },
    )
  })

  it("Writer.f32array writes plain numbers as the float32 bytes a Float32Array holds, past its scratch size", () => {
    const values = Array.from({ length: 10_001 }, (_, i) => Math.sin(i) * 1e3 + 1 / 3)
    const fromNumbers = new RowCodec.Writer(8).u8(7).f32array(values).view()
    const fromFloats = new RowCodec.Writer(8).u8(7).f32array(Float32Array.from(values)).view()
    assert.strictEqual(fromNumbers.length, 1 + 4 * values.length)
    assert.isTrue(Buffer.from(fromNumbers).equals(Buffer.from(fromFloats)))
  })

  it("Writer.str and Writer.latin1 write what Buffer's encoders write, short or long (property)", () => {
    const varint = (n: number): Array<number> => {
      const out: Array<number> = []
      for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80)
      return [...out, n]
    }
    const lengths = { minLength: 0, maxLength: 80 } as const
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ ...lengths, unit: "binary" }),
          fc.string({ ...lengths, unit: "grapheme-ascii" }),
          // Mostly ASCII with some latin1 and a few wider chars: where a short-string path could go wrong.
          fc.string({ ...lengths, unit: fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0x17f })).map((c) => String.fromCharCode(c)) }),
        ),
        fc.string({ ...lengths, unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)) }),
        (text, binary) => {
          const utf8 = Buffer.from(text, "utf8")
          const got = new RowCodec.Writer(4).u8(9).str(text).view()
          assert.deepStrictEqual(Buffer.from(got), Buffer.from([9, ...varint(utf8.length), ...utf8]))
          const bytes = Buffer.from(binary, "latin1")
          const gotBinary = new RowCodec.Writer(4).latin1(binary).view()
          assert.deepStrictEqual(Buffer.from(gotBinary), Buffer.from([...varint(bytes.length), ...bytes]))
        },
      ),
      { seed: Arb.seed("Writer strings"), numRuns: 1000 },
    )
  })

  it("golden bytes of a small row", () => {
    const row: Row.Row = {
      deletedAt: ts(0x1000, 7),
      cells: new Map<string, Row.Cell>([
        ["v", { ts: ts(0x1000, 7), value: { _tag: "Vector", version: 2, values: Float32Array.from([1, -0.5]) } }],
        ["m", { ts: ts(0x1000, 7), value: { _tag: "Meta", type: "doc", metadata: { b: 1, a: "x" }, importance: 0.5 } }],
        ["eR\u0000y", { ts: ts(0x2001, 1), value: undefined }],
      ]),
      seq: 300,
    }
    const hex = Buffer.from(RowCodec.encodeRow(row)).toString("hex")
    assert.strictEqual(
      hex,
      // version 1, seq varint 300, flags 1, deletedAt wall=0x1000 node=7, 3 cells sorted by name
      "01ac0201" +
        "0010000000000000" +
        "07000000" +
        "03" +
        // "eR\0y": tombstone
        "01" + "04" + "6552007" + "9" + "0120000000000000" + "01000000" +
        // "m": meta with type, metadata {a,b} sorted, importance
        "00" + "01" + "6d" + "0010000000000000" + "07000000" + "07" + "03" + "646f63" + "08" + "82a161a178a16201" +
        "000000000000e03f" +
        // "v": version 2, dim 2, float32 LE 1 and -0.5
        "00" + "01" + "76" + "0010000000000000" + "07000000" + "02" + "02" + "0000803f" + "000000bf",
    )
    assert.isTrue(same(RowCodec.decodeRow(Buffer.from(hex, "hex")), row))
  })

  it("refuses an unknown version and truncated input", () => {
    const bytes = RowCodec.encodeRow(Row.empty)
    const bumped = Uint8Array.from(bytes)
    bumped[0] = 2
    assert.throws(() => RowCodec.decodeRow(bumped), /unknown row format version 2/)
    const full = RowCodec.encodeRow({ deletedAt: ts(1), cells: new Map(), seq: 1 })
    assert.throws(() => RowCodec.decodeRow(full.subarray(0, full.length - 1)), /truncated/)
  })
})

describe("Row mutations and entities", () => {
  const tenant = tenantId("t1")
  const entity = new Entity({
    id: entityId("e1"),
    type: "doc",
    vector: [0.25, 0.5, -1],
    vectorVersion: 3,
    metadata: { lang: "en", n: 2, ok: true },
    importance: 0.75,
    chunks: [
      new TextChunk({ id: chunkId("z"), text: "first" }),
      new TextChunk({ id: chunkId("a"), text: "second", metadata: { page: "2" } }),
    ],
    edges: [new GraphEdge({ to: entityId("e2"), relation: relation("cites"), weight: 0.5 })],
    createdAt: 10,
  })

  it("PutEntity round-trips to the same entity", () => {
    const { key, row } = Row.fromMutation({ _tag: "PutEntity", tenant, entity }, Hlc.fromMillis(1000, 1), 5)
    assert.strictEqual(key, Row.makeKey(tenant, "e1"))
    const back = Row.toEntity(entity.id, RowCodec.decodeRow(RowCodec.encodeRow(row)))
    assert.deepStrictEqual(back, new Entity({ ...entity, updatedAt: 1000 }))
  })

  // Entities as the write path gets them: vectors of plain numbers, repeated
  // chunk ids and edges, optional parts.
  const id = fc.constantFrom("a", "b", "é", "z\u00ff")
  const meta = fc.dictionary(fc.constantFrom("k", "l"), fc.constantFrom("x", "ÿ"), { maxKeys: 2 })
  const chunk = fc
    .record({ id, text: fc.string({ maxLength: 4, unit: "grapheme" }), metadata: fc.option(meta, { nil: undefined }) })
    .map(({ id, text, metadata }) =>
      new TextChunk(metadata === undefined ? { id: chunkId(id), text } : { id: chunkId(id), text, metadata }),
    )
  const edge = fc
    .record({
      to: id,
      relation: fc.constantFrom("r", "s"),
      weight: fc.double({ min: 0, max: 1, noNaN: true }),
      metadata: fc.option(meta, { nil: undefined }),
    })
    .map(({ to, relation: r, weight, metadata }) =>
      new GraphEdge(
        metadata === undefined
          ? { to: entityId(to), relation: relation(r), weight }
          : { to: entityId(to), relation: relation(r), weight, metadata },
      ),
    )
  const anEntity = fc
    .record(
      {
        type: fc.string({ maxLength: 3 }),
        // Plain numbers that float32 rounds, as a decoded request carries them.
        vector: fc.oneof(
          fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 1, maxLength: 6 }),
          fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 200, maxLength: 300 }),
        ),
        vectorVersion: fc.integer({ min: 0, max: 3 }),
        metadata: fc.dictionary(fc.constantFrom("k", "l"), fc.oneof(fc.string({ maxLength: 2 }), fc.integer(), fc.boolean()), {
          maxKeys: 2,
        }),
        importance: fc.double({ min: 0, max: 1, noNaN: true }),
        // Repeated chunk ids and edges: the later one replaces the earlier.
        chunks: fc.array(chunk, { maxLength: 4 }),
        // Past 32 edges the cell order takes its Map-and-sort path.
        edges: fc.oneof(fc.array(edge, { maxLength: 5 }), fc.array(edge, { minLength: 30, maxLength: 40 })),
        createdAt: fc.integer({ min: 0, max: 10 }),
        updatedAt: fc.integer({ min: 0, max: 10 }),
      },
      { requiredKeys: [] },
    )
    .map((props) => new Entity({ id: entityId("e1"), ...props }))

  it("writeEntityRow writes fromEntity's row byte for byte, with its stats (property)", () => {
    fc.assert(
      fc.property(
        anEntity,
        Arb.timestamp,
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
        (entity, at, seq, keptCreatedAt) => {
          const w = new RowCodec.Writer(8)
          const stats = Row.writeEntityRow(w, entity, at, seq, keptCreatedAt ?? entity.createdAt)
          const expected = Row.fromEntity(
            keptCreatedAt === undefined ? entity : new Entity({ ...entity, createdAt: keptCreatedAt }),
            at,
            seq,
          )
          assert.deepStrictEqual(Buffer.from(w.view()), Buffer.from(RowCodec.encodeRow(expected)))
          assert.deepStrictEqual(stats, Row.rowStats(expected))
          // The write path sizes its payload buffer from this guess.
          assert.isAtLeast(Row.entityRowSizeEstimate(entity), w.length)
        },
      ),
      { seed: Arb.seed("writeEntityRow"), numRuns: 500 },
    )
  })

  it("storedEntity is what reading back a fresh PutEntity's row gives (property)", () => {
    fc.assert(
      fc.property(anEntity, Arb.timestamp, fc.integer({ min: 0, max: 2 ** 40 }), (entity, at, seq) => {
        const row = Row.fromEntity(entity, at, seq)
        const readBack = Row.toEntity(entity.id, RowCodec.decodeRow(RowCodec.encodeRow(row)))
        const stored = Row.storedEntity(entity, at)
        assert.deepStrictEqual(stored, readBack)
        // Key order too (metadata reads back with its keys sorted).
        assert.strictEqual(JSON.stringify(stored), JSON.stringify(readBack))
      }),
      { seed: Arb.seed("storedEntity"), numRuns: 500 },
    )
  })

  it("a later PutEntity replaces everything; edges are added and removed cell by cell", () => {
    const put1 = Row.fromMutation({ _tag: "PutEntity", tenant, entity }, Hlc.fromMillis(1000), 1).row
    const put2 = Row.fromMutation(
      { _tag: "PutEntity", tenant, entity: new Entity({ id: entityId("e1"), type: "note" }) },
      Hlc.fromMillis(2000),
      2,
    ).row
    const edge = Row.fromMutation(
      { _tag: "PutEdge", tenant, from: entityId("e1"), edge: new GraphEdge({ to: entityId("e9"), relation: relation("r") }) },
      Hlc.fromMillis(3000),
      3,
    ).row
    const merged = Row.mergeAll([edge, put1, put2])
    const e = Row.toEntity(entityId("e1"), merged)
    assert.strictEqual(e?.type, "note")
    assert.isUndefined(e?.vector)
    assert.isUndefined(e?.chunks)
    assert.deepStrictEqual(e?.edges?.map((x) => [x.relation, x.to, x.weight]), [["r", "e9", 1]])
    assert.strictEqual(merged.seq, 3)

    const delEdge = Row.fromMutation(
      { _tag: "DeleteEdge", tenant, from: entityId("e1"), to: entityId("e9"), relation: relation("r") },
      Hlc.fromMillis(4000),
      4,
    ).row
    assert.isUndefined(Row.toEntity(entityId("e1"), Row.merge(merged, delEdge))?.edges)

    const del = Row.fromMutation({ _tag: "DeleteEntity", tenant, id: entityId("e1") }, Hlc.fromMillis(5000), 5).row
    assert.isUndefined(Row.toEntity(entityId("e1"), Row.mergeAll([merged, delEdge, del])))
    // an edge written before the delete does not revive it
    assert.isUndefined(Row.toEntity(entityId("e1"), Row.mergeAll([del, edge])))
  })

  it("purgeTombstones never changes what a row shows (property)", () => {
    const live = (r: Row.Row | undefined): string =>
      r === undefined
        ? "none"
        : JSON.stringify(
            [...r.cells]
              .filter(([, c]) => c.value !== undefined && (r.deletedAt === undefined || Hlc.compare(c.ts, r.deletedAt) >= 0))
              .map(([name, c]) => `${name}@${c.ts.wall}.${c.ts.node}=${Buffer.from(RowCodec.encodeValue(c.value as Row.CellValue)).toString("hex")}`)
              .sort(),
          )
    fc.assert(
      fc.property(Arb.row, fc.integer({ min: 0, max: 8 }), (row, cutoff) => {
        const purged = Row.purgeTombstones(row, cutoff)
        const shown = live(row)
        return purged === undefined ? shown === "[]" : live(purged) === shown
      }),
      { numRuns: 2000, seed: Arb.seed("Row.purgeTombstones") },
    )
  })

  it("purgeTombstones drops only tombstones older than the cutoff", () => {
    const row: Row.Row = {
      deletedAt: ts(10),
      cells: new Map<string, Row.Cell>([
        ["m", { ts: ts(20), value: { _tag: "Meta" } }],
        ["ea\u0000b", { ts: ts(12), value: undefined }],
        ["ea\u0000c", { ts: ts(30), value: undefined }],
      ]),
      seq: 9,
    }
    const purged = Row.purgeTombstones(row, 15) as Row.Row
    assert.isUndefined(purged.deletedAt)
    assert.deepStrictEqual([...purged.cells.keys()], ["m", "ea\u0000c"])
    assert.strictEqual(Row.purgeTombstones(row, 5), row)
    assert.isUndefined(Row.purgeTombstones({ deletedAt: ts(1), cells: new Map(), seq: 1 }, 2))
    // a row that never went through merge may hold a cell its tombstone shadows: it goes too
    const unmerged: Row.Row = {
      deletedAt: ts(10),
      cells: new Map<string, Row.Cell>([
        ["m", { ts: ts(5), value: { _tag: "Meta", type: "old" } }],
        ["v", { ts: ts(10), value: { _tag: "Vector", version: 1, values: Float32Array.of(1) } }],
      ]),
      seq: 2,
    }
    assert.deepStrictEqual([...(Row.purgeTombstones(unmerged, 11) as Row.Row).cells.keys()], ["v"])
    // and reads never show a shadowed cell, merged or not
    assert.isUndefined(Row.toEntity(entityId("e"), unmerged)?.type)
    assert.deepStrictEqual(Row.toEntity(entityId("e"), unmerged)?.vector, [1])
  })
})
