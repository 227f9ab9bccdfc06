/**
 * The one narrow door to the file system that the storage engine uses:
 * positional reads, appends, fdatasync, rename, directory fsync, list, remove.
 * `layerNode` runs on node:fs file descriptors; `layerMemory` is an in-memory
 * file system that can simulate a crash by dropping everything not yet synced
 * (file bytes past the last sync, and directory changes since the last fsyncDir).
 *
 * CONTRACT (shared by Wal, SSTableStore, Manifest, Compactor): keep these
 * signatures; add to them only.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { StorageFailure } from "@allidb/core"

export type OpenMode =
  /** read only; the file must exist */
  | "read"
  /** read + append writes; created if missing */
  | "append"
  /** read + write; created, or truncated if it exists */
  | "truncate"

export interface DiskFile {
  readonly path: string
  /** Appends at the current end of the file (append/truncate modes). */
  readonly append: (data: Uint8Array) => Effect.Effect<void, StorageFailure>
  /** Reads up to `length` bytes at `position`; shorter only at end of file. */
  readonly read: (position: number, length: number) => Effect.Effect<Uint8Array, StorageFailure>
  /** fdatasync: everything appended so far survives a crash once this succeeds. */
  readonly sync: Effect.Effect<void, StorageFailure>
  readonly size: Effect.Effect<number, StorageFailure>
  readonly truncate: (length: number) => Effect.Effect<void, StorageFailure>
  readonly close: Effect.Effect<void>
}

export interface DiskShape {
  /** Opens a file; it is closed when the scope closes (or earlier by `close`). */
  readonly open: (path: string, mode: OpenMode) => Effect.Effect<DiskFile, StorageFailure, Scope.Scope>
  readonly readFile: (path: string) => Effect.Effect<Uint8Array, StorageFailure>
  /** Writes a whole file durably: temp name, fsync, rename, fsync of the directory. */
  readonly writeFileAtomic: (path: string, data: Uint8Array) => Effect.Effect<void, StorageFailure>
  readonly rename: (from: string, to: string) => Effect.Effect<void, StorageFailure>
  readonly remove: (path: string) => Effect.Effect<void, StorageFailure>
  /** Names (not paths) of the entries of a directory; [] if it does not exist. */
  readonly list: (dir: string) => Effect.Effect<ReadonlyArray<string>, StorageFailure>
  readonly mkdir: (dir: string) => Effect.Effect<void, StorageFailure>
  /** Makes creations, renames and removals in `dir` durable. */
  readonly syncDir: (dir: string) => Effect.Effect<void, StorageFailure>
  readonly exists: (path: string) => Effect.Effect<boolean, StorageFailure>
}

export class Disk extends Context.Tag("@allidb/storage/Disk")<Disk, DiskShape>() {}
