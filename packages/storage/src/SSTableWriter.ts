/**
 * Streams rows in key order into a new SSTable file through Disk, durably:
 * written under a temporary name, fdatasynced, renamed into place, directory
 * fsynced. Until the rename a crash leaves only a `*.tmp` file, which the
 * store removes at its next open; a table counts as live only once the
 * manifest names it.
 */
import type { StorageFailure } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { DiskShape } from "./Disk.js"
import * as Format from "./SSTableFormat.js"
import type * as Row from "./Row.js"
import type * as RowCodec from "./RowCodec.js"
import type { Cursor } from "./SSTableReader.js"

/** Bytes gathered before one append: few syscalls without holding a whole table in memory. */
const WRITE_CHUNK_BYTES = 256 * 1024

export const TEMP_SUFFIX = ".tmp"

export interface WriteOptions {
  readonly blockBytes: number
  readonly bloomBitsPerKey: number
  /** Called after each append with its size (compaction's byte-rate limit). */
  readonly onBytes?: (bytes: number) => Effect.Effect<void>
}

export interface Written {
  readonly properties: Format.TableProperties
  readonly fileBytes: number
}

/** Rows already encoded (a memtable flush), in key order. */
export interface EncodedRows {
  readonly _tag: "EncodedRows"
  readonly rows: Iterable<RowCodec.EncodedRow>
}

export const encodedRows = (rows: Iterable<RowCodec.EncodedRow>): EncodedRows => ({ _tag: "EncodedRows", rows })

/** What a table is written from: a cursor (compaction, import), rows in memory, or encoded rows. */
export type Source<E> = Cursor<E> | Iterable<Row.KeyedRow> | EncodedRows

const isEncoded = <E>(rows: Source<E>): rows is EncodedRows => "_tag" in rows && rows._tag === "EncodedRows"

const isIterable = <E>(rows: Source<E>): rows is Iterable<Row.KeyedRow> => Symbol.iterator in rows

/** A function that adds rows from `it` until a chunk is ready or the rows end, and says (true) when they ended. */
const chunkFiller =
  <T>(it: Iterator<T>, add: (row: T) => void, builder: Format.TableBuilder) =>
  (): boolean => {
    for (;;) {
      const r = it.next()
      if (r.done) return true
      add(r.value)
      if (builder.pendingBytes >= WRITE_CHUNK_BYTES) return false
    }
  }

const joinPath = (dir: string, name: string): string => (dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`)

/**
 * Writes the cursor's rows to `<dir>/<name>`. Returns undefined, leaving no
 * file, when the cursor yields no rows. On failure or interruption the
 * temporary file is removed (best effort; the store's open sweeps leftovers).
 */
export const write = <E = never>(
  disk: DiskShape,
  dir: string,
  name: string,
  rows: Source<E>,
  options: WriteOptions,
): Effect.Effect<Written | undefined, E | StorageFailure> => {
  const finalPath = joinPath(dir, name)
  const tempPath = finalPath + TEMP_SUFFIX
  const writeTemp = Effect.scoped(
    Effect.gen(function* () {
      const file = yield* disk.open(tempPath, "truncate")
      const builder = new Format.TableBuilder(options.blockBytes, options.bloomBitsPerKey)
      const flushPending = Effect.suspend(() => {
        const bytes = builder.drain()
        if (bytes.length === 0) return Effect.void
        const append = file.append(bytes)
        return options.onBytes === undefined ? append : Effect.zipRight(append, options.onBytes(bytes.length))
      })
      if (isEncoded(rows) || isIterable(rows)) {
        // Rows in memory (a memtable flush): fill a whole chunk synchronously
        // between appends instead of paying an effect step per row.
        const fill = isEncoded(rows)
          ? chunkFiller(rows.rows[Symbol.iterator](), (row) => builder.addEncoded(row), builder)
          : chunkFiller(rows[Symbol.iterator](), (row) => builder.add(row.key, row.row), builder)
        let done = false
        while (!done) {
          done = fill()
          yield* flushPending
        }
      } else {
        for (;;) {
          const next = yield* rows.next
          if (next === undefined) break
          builder.add(next.key, next.row)
          if (builder.pendingBytes >= WRITE_CHUNK_BYTES) yield* flushPending
        }
      }
      if (builder.rows === 0) return undefined
      const properties = builder.finish()
      yield* flushPending
      yield* file.sync
      const fileBytes = yield* file.size
      return { properties, fileBytes }
    }),
  )
  return Effect.gen(function* () {
    const written = yield* writeTemp
    if (written === undefined) {
      yield* disk.remove(tempPath)
      return undefined
    }
    yield* disk.rename(tempPath, finalPath)
    yield* disk.syncDir(dir)
    return written
  }).pipe(
    Effect.onExit((exit) =>
      Exit.isSuccess(exit) ? Effect.void : Effect.ignore(Effect.flatMap(disk.exists(tempPath), (e) => (e ? disk.remove(tempPath) : Effect.void))),
    ),
  )
}
