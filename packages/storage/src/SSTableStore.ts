/**
 * The set of live SSTables of a node (`<dataDir>/sst`) and the manifest that
 * names them. Every change of the live set — a flush adding a table and
 * advancing `flushedSeq`, a compaction swapping inputs for its output — is
 * ONE atomic manifest rewrite followed by an in-memory swap; until the
 * manifest names a file it is not live, and files the manifest does not name
 * are deleted at the next open.
 *
 * Readers take a reference on the tables they read, so a compaction can
 * retire a table while a scan is still walking it: the file is closed and
 * deleted when the last reference goes.
 */
import { Corruption, type StorageFailure } from "@allidb/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import { Disk, type DiskShape } from "./Disk.js"
import * as BlockCache from "./BlockCache.js"
import * as Bloom from "./Bloom.js"
import * as Manifest from "./Manifest.js"
import * as Metrics from "./Metrics.js"
import * as Row from "./Row.js"
import * as RowCodec from "./RowCodec.js"
import { StorageConfig } from "./StorageConfig.js"
import type * as Format from "./SSTableFormat.js"
import * as Reader from "./SSTableReader.js"
import * as Writer from "./SSTableWriter.js"

export type ReadError = Reader.ReadError

export interface TableInfo {
  readonly id: number
  readonly name: string
  readonly fileBytes: number
  readonly properties: Format.TableProperties
  /** Size tier for the metrics gauge (see tierOf). */
  readonly tier: number
}

export interface SSTableStoreShape {
  /** `<dataDir>/sst` */
  readonly dir: string
  /**
   * Writes rows (in key order) as a new table and, in the same manifest
   * change, advances flushedSeq to `maxSeq`. With no rows only flushedSeq
   * moves. Flush memtables oldest first.
   */
  readonly flush: (
    rows: Iterable<Row.KeyedRow> | Writer.EncodedRows,
    maxSeq: number,
  ) => Effect.Effect<TableInfo | undefined, StorageFailure | Corruption>
  /** The key's row merged across all live tables (bloom → index → block). */
  readonly get: (key: Row.Key) => Effect.Effect<Row.Row | undefined, ReadError>
  /**
   * Merged rows with start ≤ key < end in key order over the live tables (or
   * the given subset). The tables stay readable until the scope closes.
   */
  readonly scan: (
    start?: Row.Key,
    end?: Row.Key,
    options?: { readonly tableIds?: ReadonlyArray<number>; readonly fillCache?: boolean },
  ) => Effect.Effect<Reader.Cursor<ReadError>, never, Scope.Scope>
  /** Live tables, newest first. */
  readonly tables: Effect.Effect<ReadonlyArray<TableInfo>>
  /** Live tables holding a change with seq > `seq` (the others can be skipped by catch-up). */
  readonly tablesChangedSince: (seq: number) => Effect.Effect<ReadonlyArray<TableInfo>>
  readonly flushedSeq: Effect.Effect<number>
  /**
   * Compaction's commit: writes `rows` as one new table and swaps it for
   * `oldIds` in one manifest change (no table when `rows` is empty). If it
   * fails or is interrupted before the manifest change, the live set is
   * untouched and the partial file is removed (or swept at the next open).
   */
  readonly replace: <E>(
    oldIds: ReadonlyArray<number>,
    rows: Reader.Cursor<E>,
    options?: { readonly onBytes?: (bytes: number) => Effect.Effect<void> },
  ) => Effect.Effect<TableInfo | undefined, E | StorageFailure | Corruption>
  /**
   * Whether a live table outside `exclude` may hold a version of `key` with a
   * timestamp older than `beforeWall` (bloom + timestamp range): a tombstone
   * may only be purged when none does.
   */
  readonly mayHoldOlder: (key: Row.Key, beforeWall: number, exclude: ReadonlySet<number>) => Effect.Effect<boolean>
  /** Whether any live table's bloom filter may hold `key` (synchronous: the engine's write path asks it). */
  readonly mayContainUnsafe: (key: Row.Key) => boolean
  /** Tenants with rows in any live table. */
  readonly tenants: Effect.Effect<ReadonlyArray<string>>
  readonly cache: BlockCache.BlockCache
}

export class SSTableStore extends Context.Tag("@allidb/storage/SSTableStore")<SSTableStore, SSTableStoreShape>() {}

const MiB = 1024 * 1024

/** Tier of a table by size: 0 up to 1 MiB, then one tier per ×4. */
export const tierOf = (bytes: number): number => (bytes <= MiB ? 0 : Math.ceil(Math.log(bytes / MiB) / Math.log(4)))

interface Handle {
  readonly info: TableInfo
  readonly table: Reader.Table
  readonly scope: Scope.CloseableScope
  /** The live set holds one reference; each reader one more while it reads. */
  refs: number
  retired: boolean
}

const infoOf = (id: number, table: Reader.Table): TableInfo => ({
  id,
  name: Manifest.tableFileName(id),
  fileBytes: table.fileBytes,
  properties: table.properties,
  tier: tierOf(table.fileBytes),
})

export const make: Effect.Effect<SSTableStoreShape, StorageFailure | Corruption, Disk | StorageConfig | Scope.Scope> =
  Effect.gen(function* () {
    const disk: DiskShape = yield* Disk
    const config = yield* StorageConfig
    const storeScope = yield* Effect.scope
    const dir = `${config.dataDir.replace(/\/+$/, "")}/sst`
    const manifestPath = `${dir}/${Manifest.FILE_NAME}`
    const cache = new BlockCache.BlockCache(config.blockCacheBytes)
    const lock = yield* Effect.makeSemaphore(1)

    const pathOf = (id: number) => `${dir}/${Manifest.tableFileName(id)}`

    const openTable = (id: number): Effect.Effect<Handle, ReadError> =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(storeScope, ExecutionStrategy.sequential)
        const table = yield* Reader.open(disk, pathOf(id), id, cache).pipe(
          Scope.extend(scope),
          Effect.onError(() => Scope.close(scope, Exit.void)),
        )
        return { info: infoOf(id, table), table, scope, refs: 1, retired: false }
      })

    // ---- open: manifest, live tables, sweep -------------------------------

    yield* disk.mkdir(dir)
    const names = yield* disk.list(dir)
    let manifest: Manifest.Manifest
    if (names.includes(Manifest.FILE_NAME)) {
      const bytes = yield* disk.readFile(manifestPath)
      manifest = yield* Effect.try({
        try: () => Manifest.decode(bytes),
        catch: (e) =>
          new Corruption({
            file: manifestPath,
            offset: e instanceof RowCodec.DecodeError ? e.offset : 0,
            message: e instanceof Error ? e.message : String(e),
          }),
      })
    } else {
      const orphans = names.filter((n) => Manifest.parseTableFileName(n) !== undefined)
      if (orphans.length > 0) {
        // Tables exist but nothing says which are live: refuse rather than guess (or delete data).
        return yield* new Corruption({
          file: manifestPath,
          offset: 0,
          message: `manifest missing while ${orphans.length} table files exist in ${dir}`,
        })
      }
      manifest = Manifest.initial
      yield* disk.writeFileAtomic(manifestPath, Manifest.encode(manifest))
    }

    let live: ReadonlyArray<Handle> = []
    for (const entry of manifest.tables) {
      const handle = yield* openTable(entry.id)
      if (handle.info.fileBytes !== entry.fileBytes) {
        return yield* new Corruption({
          file: pathOf(entry.id),
          offset: handle.info.fileBytes,
          message: `table is ${handle.info.fileBytes} bytes, the manifest says ${entry.fileBytes}`,
        })
      }
      live = [handle, ...live]
    }
    live = [...live].sort((a, b) => b.info.id - a.info.id)
    let flushedSeq = manifest.flushedSeq
    let nextTableId = manifest.nextTableId
    let generation = manifest.generation

    const keep = new Set([Manifest.FILE_NAME, ...manifest.tables.map((t) => Manifest.tableFileName(t.id))])
    const garbage = names.filter((n) => !keep.has(n))
    if (garbage.length > 0) {
      yield* Effect.forEach(garbage, (n) => disk.remove(`${dir}/${n}`), { discard: true })
      yield* disk.syncDir(dir)
      yield* Effect.logInfo("SSTableStore: removed files not in the manifest").pipe(
        Effect.annotateLogs({ dir, files: garbage.join(",") }),
      )
    }

    // ---- live-set bookkeeping ----------------------------------------------

    let reportedTiers = new Set<number>()
    const publishGauges = Effect.suspend(() => {
      const perTier = new Map<number, number>()
      let bytes = 0
      for (const h of live) {
        perTier.set(h.info.tier, (perTier.get(h.info.tier) ?? 0) + 1)
        bytes += h.info.fileBytes
      }
      const tiers = new Set([...reportedTiers, ...perTier.keys()])
      reportedTiers = new Set(perTier.keys())
      return Effect.zipRight(
        Effect.forEach(
          tiers,
          (t) => Metric.set(Metric.tagged(Metrics.tablesPerTier, "tier", String(t)), perTier.get(t) ?? 0),
          { discard: true },
        ),
        Metric.set(Metrics.tableBytes, bytes),
      )
    })
    yield* publishGauges

    const release = (handles: ReadonlyArray<Handle>): Effect.Effect<void> =>
      Effect.forEach(
        handles,
        (h) =>
          Effect.suspend(() => {
            h.refs--
            if (h.refs > 0) return Effect.void
            cache.dropTable(h.info.id)
            return Effect.zipRight(
              Scope.close(h.scope, Exit.void),
              h.retired ? Effect.ignore(disk.remove(pathOf(h.info.id))) : Effect.void,
            )
          }),
        { discard: true },
      )

    const acquire = (pick: (all: ReadonlyArray<Handle>) => ReadonlyArray<Handle>) =>
      Effect.sync(() => {
        const handles = pick(live)
        for (const h of handles) h.refs++
        return handles
      })

    /** Writes the next manifest; on success swaps the in-memory state. Call under `lock`, uninterruptibly. */
    const commit = (next: {
      readonly live: ReadonlyArray<Handle>
      readonly flushedSeq: number
    }): Effect.Effect<void, StorageFailure> => {
      const m: Manifest.Manifest = {
        generation: generation + 1,
        flushedSeq: next.flushedSeq,
        nextTableId,
        tables: [...next.live].reverse().map((h) => ({ id: h.info.id, fileBytes: h.info.fileBytes })),
      }
      return Effect.zipRight(
        disk.writeFileAtomic(manifestPath, Manifest.encode(m)),
        Effect.suspend(() => {
          generation = m.generation
          flushedSeq = m.flushedSeq
          live = [...next.live].sort((a, b) => b.info.id - a.info.id)
          return publishGauges
        }),
      )
    }

    /** Writes rows into a new, not yet live table; its handle is closed and its file removed if what follows fails. */
    const writeNew = <E>(
      rows: Writer.Source<E>,
      onBytes: ((bytes: number) => Effect.Effect<void>) | undefined,
    ): Effect.Effect<Handle | undefined, E | StorageFailure | Corruption> =>
      Effect.gen(function* () {
        const id = nextTableId++
        const written = yield* Writer.write(disk, dir, Manifest.tableFileName(id), rows, {
          blockBytes: config.blockBytes,
          bloomBitsPerKey: config.bloomBitsPerKey,
          ...(onBytes !== undefined ? { onBytes } : {}),
        })
        if (written === undefined) return undefined
        return yield* openTable(id)
      })

    const discard = (handle: Handle | undefined) =>
      handle === undefined
        ? Effect.void
        : Effect.zipRight(Scope.close(handle.scope, Exit.void), Effect.ignore(disk.remove(pathOf(handle.info.id))))

    const slowGet = (key: Row.Key, hash: number): Effect.Effect<Row.Row | undefined, ReadError> =>
      Effect.acquireUseRelease(
        acquire((all) => all.filter((h) => h.table.mayContain(key, hash))),
        (handles) =>
          Effect.reduce(handles, undefined as Row.Row | undefined, (acc, h) =>
            Effect.map(h.table.get(key, hash), (row) =>
              row === undefined ? acc : acc === undefined ? row : Row.merge(acc, row),
            ),
          ),
        release,
      )

    const shape: SSTableStoreShape = {
      dir,
      cache,
      flush: (rows, maxSeq) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const handle = yield* restore(writeNew<never>(rows, undefined))
            // suspend: read `live` and `flushedSeq` only once the lock is held
            yield* lock
              .withPermits(1)(
                Effect.suspend(() =>
                  commit({
                    live: handle === undefined ? live : [handle, ...live],
                    flushedSeq: Math.max(flushedSeq, maxSeq),
                  }),
                ),
              )
              .pipe(Effect.onError(() => discard(handle)))
            // (the flushes counter and timing belong to the engine, which owns the whole flush)
            if (handle !== undefined) {
              yield* Effect.logDebug("SSTableStore: flushed").pipe(
                Effect.annotateLogs({ table: handle.info.name, rows: handle.info.properties.rowCount, maxSeq }),
              )
            }
            return handle?.info
          }),
        ).pipe(Effect.withSpan("SSTableStore.flush")),

      get: (key) =>
        Effect.suspend(() => {
          const hash = Bloom.hashKey(key)
          // Fast path: bloom filters and cached blocks answer most point reads
          // synchronously; only a block that must come from disk takes the
          // reference-counted effectful path (a file may close under it).
          let row: Row.Row | undefined
          let negatives = 0
          let hits = 0
          let needsIo = false
          for (const h of live) {
            if (!h.table.mayContain(key, hash)) {
              negatives++
              continue
            }
            const r = h.table.getCached(key, hash)
            if (r === Reader.NEEDS_IO) {
              needsIo = true
              break
            }
            hits++
            if (r !== undefined) row = row === undefined ? r : Row.merge(row, r)
          }
          if (!needsIo) {
            const count = Effect.zipRight(
              Metric.incrementBy(Metrics.bloomNegatives, negatives),
              Metric.incrementBy(Metrics.blockCacheHits, hits),
            )
            return Effect.as(count, row)
          }
          return slowGet(key, hash)
        }),

      scan: (start, end, options) =>
        Effect.map(
          Effect.acquireRelease(
            acquire((all) => {
              const ids = options?.tableIds
              return ids === undefined ? all : all.filter((h) => ids.includes(h.info.id))
            }),
            release,
          ),
          (handles) =>
            Reader.merge(
              handles
                .filter(
                  (h) =>
                    (end === undefined || h.info.properties.minKey < end) &&
                    (start === undefined || h.info.properties.maxKey >= start),
                )
                .map((h) => h.table.cursor(start, end, { fillCache: options?.fillCache ?? true })),
            ),
        ),

      tables: Effect.sync(() => live.map((h) => h.info)),

      tablesChangedSince: (seq) => Effect.sync(() => live.filter((h) => h.info.properties.maxSeq > seq).map((h) => h.info)),

      flushedSeq: Effect.sync(() => flushedSeq),

      replace: (oldIds, rows, options) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const handle = yield* restore(writeNew(rows, options?.onBytes))
            const result = yield* lock
              .withPermits(1)(
                Effect.gen(function* () {
                  const old = live.filter((h) => oldIds.includes(h.info.id))
                  if (old.length !== oldIds.length) {
                    return yield* Effect.dieMessage(`SSTableStore.replace: tables ${oldIds.join(",")} are not all live`)
                  }
                  const kept = live.filter((h) => !oldIds.includes(h.info.id))
                  yield* commit({ live: handle === undefined ? kept : [handle, ...kept], flushedSeq })
                  return old
                }),
              )
              .pipe(Effect.onError(() => discard(handle)))
            for (const h of result) h.retired = true
            yield* release(result)
            return handle?.info
          }),
        ).pipe(Effect.withSpan("SSTableStore.replace")),

      mayHoldOlder: (key, beforeWall, exclude) =>
        Effect.sync(() =>
          live.some(
            (h) =>
              !exclude.has(h.info.id) &&
              h.info.properties.minTimestamp.wall < beforeWall &&
              h.table.mayContain(key),
          ),
        ),

      mayContainUnsafe: (key) => {
        if (live.length === 0) return false
        const hash = Bloom.hashKey(key)
        return live.some((h) => h.table.mayContain(key, hash))
      },

      tenants: Effect.sync(() => [...new Set(live.flatMap((h) => h.info.properties.tenants))].sort()),
    }
    return shape
  })

export const layer: Layer.Layer<SSTableStore, StorageFailure | Corruption, Disk | StorageConfig> = Layer.scoped(
  SSTableStore,
  make,
)
