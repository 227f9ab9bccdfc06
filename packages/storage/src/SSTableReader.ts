/**
 * Reads one SSTable through Disk: footer, properties, index and bloom filter
 * are loaded at open (small, checked once); data blocks are read on demand,
 * checked against their crc32 and kept in the shared BlockCache. Every
 * checksum or structure failure becomes core `Corruption` naming the file and
 * the offset — a reader never returns bytes it could not verify.
 *
 * Also home of `Cursor`, the effectful pull iterator that table scans,
 * merges and compaction share (tables are read through effects, so a plain
 * Iterator cannot do).
 */
import { Corruption, type StorageFailure } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BlockCache from "./BlockCache.js"
import * as Bloom from "./Bloom.js"
import type { DiskFile, DiskShape } from "./Disk.js"
import * as Metrics from "./Metrics.js"
import * as Row from "./Row.js"
import * as RowCodec from "./RowCodec.js"
import * as Format from "./SSTableFormat.js"

export type ReadError = Corruption | StorageFailure

// ---------------------------------------------------------------------------
// Cursors

/** A pull iterator over rows in key order; `next` yields undefined at the end (and forever after). */
export interface Cursor<E = ReadError> {
  readonly next: Effect.Effect<Row.KeyedRow | undefined, E>
}

export const fromIterable = (rows: Iterable<Row.KeyedRow>): Cursor<never> => {
  const it = rows[Symbol.iterator]()
  return {
    next: Effect.sync(() => {
      const r = it.next()
      return r.done ? undefined : r.value
    }),
  }
}

export const empty: Cursor<never> = { next: Effect.succeed(undefined) }

/**
 * Merges cursors in key order; equal keys are combined with Row.merge (the
 * order of cursors does not matter, merge commutes).
 */
export const merge = <E>(cursors: ReadonlyArray<Cursor<E>>): Cursor<E> => {
  if (cursors.length === 0) return empty
  if (cursors.length === 1) return cursors[0] as Cursor<E>
  let heads: Array<Row.KeyedRow | undefined> | undefined
  const prime = Effect.suspend(() =>
    heads !== undefined
      ? Effect.void
      : Effect.map(
          Effect.forEach(cursors, (c) => c.next),
          (h) => {
            heads = h
          },
        ),
  )
  const step = Effect.suspend(() => {
    const hs = heads as Array<Row.KeyedRow | undefined>
    let min: Row.Key | undefined
    for (const h of hs) if (h !== undefined && (min === undefined || h.key < min)) min = h.key
    if (min === undefined) return Effect.succeed(undefined)
    const key = min
    let row: Row.Row | undefined
    const advance: Array<number> = []
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]
      if (h === undefined || h.key !== key) continue
      row = row === undefined ? h.row : Row.merge(row, h.row)
      advance.push(i)
    }
    const out = { key, row: row as Row.Row }
    return Effect.as(
      Effect.forEach(
        advance,
        (i) =>
          Effect.map((cursors[i] as Cursor<E>).next, (n) => {
            hs[i] = n
          }),
        { discard: true },
      ),
      out,
    )
  })
  return { next: Effect.zipRight(prime, step) }
}

/** Drains a cursor (bounded sources only: tests, small ranges). */
export const collect = <E>(cursor: Cursor<E>, limit = Number.POSITIVE_INFINITY): Effect.Effect<Array<Row.KeyedRow>, E> =>
  Effect.gen(function* () {
    const out: Array<Row.KeyedRow> = []
    while (out.length < limit) {
      const r = yield* cursor.next
      if (r === undefined) break
      out.push(r)
    }
    return out
  })

export const toStream = <E>(cursor: Cursor<E>): Stream.Stream<Row.KeyedRow, E> =>
  Stream.repeatEffectOption(
    cursor.next.pipe(
      Effect.mapError(Option.some),
      Effect.flatMap((r) => (r === undefined ? Effect.fail(Option.none()) : Effect.succeed(r))),
    ),
  )

// ---------------------------------------------------------------------------
// Tables

/** `Table.getCached` could not answer without reading a block from disk. */
export const NEEDS_IO: unique symbol = Symbol.for("@allidb/storage/SSTableReader/NEEDS_IO")
export type NeedsIo = typeof NEEDS_IO

export interface Table {
  readonly id: number
  readonly path: string
  readonly fileBytes: number
  readonly properties: Format.TableProperties
  /** False when the key range or the bloom filter rules the key out (`hash`: Bloom.hashKey(key), if known). */
  readonly mayContain: (key: Row.Key, hash?: number) => boolean
  readonly get: (key: Row.Key, hash?: number) => Effect.Effect<Row.Row | undefined, ReadError>
  /**
   * The point read's fast path, synchronous: answers from the bloom filter and
   * the block cache, or NEEDS_IO when a block must come from disk (or does not
   * decode — the effectful `get` then reports the Corruption). Does not count
   * cache hits; the caller does.
   */
  readonly getCached: (key: Row.Key, hash?: number) => Row.Row | undefined | NeedsIo
  /** Rows with start ≤ key < end; `fillCache: false` keeps a compaction from flushing the cache. */
  readonly cursor: (
    start?: Row.Key,
    end?: Row.Key,
    options?: { readonly fillCache?: boolean },
  ) => Cursor<ReadError>
}

const corruption = (path: string, offset: number, message: string): Effect.Effect<never, Corruption> =>
  Effect.zipRight(Metric.increment(Metrics.corruptionsDetected), Effect.fail(new Corruption({ file: path, offset, message })))

/** Runs a pure decoder; a DecodeError becomes Corruption at `base + its offset`. */
const decodeAt = <A>(path: string, base: number, f: () => A): Effect.Effect<A, Corruption> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (e) {
      if (e instanceof RowCodec.DecodeError) return corruption(path, base + e.offset, e.message)
      return Effect.die(e)
    }
  })

const readRegion = (
  file: DiskFile,
  path: string,
  handle: Format.BlockHandle,
  fileBytes: number,
  what: string,
): Effect.Effect<Uint8Array, ReadError> =>
  Effect.suspend(() => {
    if (handle.offset < 0 || handle.length < 4 || handle.offset + handle.length > fileBytes) {
      return corruption(path, handle.offset, `${what} [${handle.offset}, +${handle.length}) outside the file of ${fileBytes} bytes`)
    }
    return Effect.flatMap(file.read(handle.offset, handle.length), (bytes) =>
      bytes.length === handle.length
        ? Effect.succeed(bytes)
        : corruption(path, handle.offset + bytes.length, `${what}: short read (${bytes.length} of ${handle.length} bytes)`),
    )
  })

/**
 * Opens a table file; it stays open until the scope closes. Fails with
 * Corruption when the footer, properties, index or bloom block do not verify
 * (including an unknown format version).
 */
export const open = (
  disk: DiskShape,
  path: string,
  id: number,
  cache: BlockCache.BlockCache,
): Effect.Effect<Table, ReadError, Scope.Scope> =>
  Effect.gen(function* () {
    const file = yield* disk.open(path, "read")
    const fileBytes = yield* file.size
    if (fileBytes < Format.FOOTER_BYTES) {
      return yield* corruption(path, 0, `file of ${fileBytes} bytes is shorter than a footer`)
    }
    const footerAt = fileBytes - Format.FOOTER_BYTES
    const footerBytes = yield* readRegion(file, path, { offset: footerAt, length: Format.FOOTER_BYTES }, fileBytes, "footer")
    const footer = yield* decodeAt(path, footerAt, () => Format.decodeFooter(footerBytes))
    const propsBytes = yield* readRegion(file, path, footer.properties, fileBytes, "properties")
    const properties = yield* decodeAt(path, footer.properties.offset, () => Format.decodeProperties(propsBytes))
    const indexBytes = yield* readRegion(file, path, footer.index, fileBytes, "index")
    const index = yield* decodeAt(path, footer.index.offset, () => Format.decodeIndex(indexBytes))
    const bloomBytes = yield* readRegion(file, path, footer.bloom, fileBytes, "bloom")
    const bloom = yield* decodeAt(path, footer.bloom.offset, () => Format.decodeBloom(bloomBytes))
    if (index.length !== properties.blockCount) {
      return yield* corruption(path, footer.index.offset, `index has ${index.length} blocks, properties say ${properties.blockCount}`)
    }

    const loadBlock = (i: number, fillCache: boolean): Effect.Effect<Format.DataBlock, ReadError> => {
      const entry = index[i] as Format.IndexEntry
      return Effect.flatMap(BlockCache.lookup(cache, id, entry.offset), (cached) =>
        cached !== undefined
          ? Effect.succeed(cached)
          : Effect.flatMap(readRegion(file, path, entry, fileBytes, "data block"), (bytes) =>
              Effect.map(
                decodeAt(path, entry.offset, () => Format.decodeDataBlock(bytes)),
                (block) => {
                  if (fillCache) cache.set(id, entry.offset, block)
                  return block
                },
              ),
            ),
      )
    }

    /** First block whose lastKey ≥ key. */
    const blockFor = (key: Row.Key): number => {
      let lo = 0
      let hi = index.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if ((index[mid] as Format.IndexEntry).lastKey < key) lo = mid + 1
        else hi = mid
      }
      return lo
    }

    const rowAt = (block: Format.DataBlock, i: number, blockIndex: number): Effect.Effect<Row.Row, Corruption> =>
      decodeAt(path, (index[blockIndex] as Format.IndexEntry).offset, () => block.rowAt(i))

    const mayContain = (key: Row.Key, hash?: number): boolean =>
      key >= properties.minKey && key <= properties.maxKey && Bloom.mayContain(bloom, hash ?? Bloom.hashKey(key))

    const table: Table = {
      id,
      path,
      fileBytes,
      properties,
      mayContain,
      get: (key, hash) =>
        Effect.suspend(() => {
          if (!mayContain(key, hash)) {
            return Effect.as(Metric.increment(Metrics.bloomNegatives), undefined)
          }
          const b = blockFor(key)
          const entry = index[b]
          if (entry === undefined || entry.firstKey > key) return Effect.succeed(undefined)
          return Effect.flatMap(loadBlock(b, true), (block) => {
            const i = block.find(key)
            return i < 0 ? Effect.succeed(undefined) : rowAt(block, i, b)
          })
        }),
      getCached: (key, hash) => {
        if (!mayContain(key, hash)) return undefined
        const b = blockFor(key)
        const entry = index[b]
        if (entry === undefined || entry.firstKey > key) return undefined
        const block = cache.peek(id, entry.offset)
        if (block === undefined) return NEEDS_IO
        const i = block.find(key)
        if (i < 0) return undefined
        try {
          return block.rowAt(i)
        } catch {
          return NEEDS_IO
        }
      },
      cursor: (start, end, options) => {
        const fillCache = options?.fillCache ?? true
        let blockIndex = start === undefined ? 0 : blockFor(start)
        let block: Format.DataBlock | undefined
        let pos = 0
        let done = false
        const next: Effect.Effect<Row.KeyedRow | undefined, ReadError> = Effect.suspend(() => {
          if (done) return Effect.succeed(undefined)
          if (block !== undefined && pos < block.keys.length) {
            const key = block.keys[pos] as Row.Key
            if (end !== undefined && key >= end) {
              done = true
              return Effect.succeed(undefined)
            }
            const i = pos++
            return Effect.map(rowAt(block, i, blockIndex - 1), (row) => ({ key, row }))
          }
          if (blockIndex >= index.length) {
            done = true
            return Effect.succeed(undefined)
          }
          const b = blockIndex++
          return Effect.flatMap(loadBlock(b, fillCache), (loaded) => {
            block = loaded
            pos = start === undefined ? 0 : loaded.lowerBound(start)
            return next
          })
        })
        return { next }
      },
    }
    return table
  })
