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
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { StorageFailure } from "@allidb/core"

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

// ---------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------

const failure = (operation: string, path: string, cause: unknown): StorageFailure =>
  new StorageFailure({
    operation,
    message: `${path}: ${cause instanceof Error ? cause.message : String(cause)}`,
  })

/** Runs a node:fs callback-style call as an Effect (callbacks are cheaper than fs/promises on the hot path). */
const fsCall = <A>(
  operation: string,
  path: string,
  run: (callback: (error: NodeJS.ErrnoException | null, value: A) => void) => void,
): Effect.Effect<A, StorageFailure> =>
  Effect.async<A, StorageFailure>((resume) => {
    run((error, value) => {
      if (error) resume(Effect.fail(failure(operation, path, error)))
      else resume(Effect.succeed(value))
    })
  })

const openFlags = (mode: OpenMode): number => {
  const c = Fs.constants
  switch (mode) {
    case "read":
      return c.O_RDONLY
    case "append":
      return c.O_RDWR | c.O_CREAT
    case "truncate":
      return c.O_RDWR | c.O_CREAT | c.O_TRUNC
  }
}

/**
 * Writes a whole file durably through the primitives of `disk`: temp name,
 * fdatasync, rename over the target, fsync of the directory. A crash leaves
 * either the old file or the new one, never a mix.
 */
const writeFileAtomicWith =
  (disk: Omit<DiskShape, "writeFileAtomic">) =>
  (path: string, data: Uint8Array): Effect.Effect<void, StorageFailure> =>
    Effect.gen(function* () {
      const temp = `${path}.tmp`
      yield* Effect.scoped(
        Effect.gen(function* () {
          const file = yield* disk.open(temp, "truncate")
          yield* file.append(data)
          yield* file.sync
          yield* file.close
        }),
      )
      yield* disk.rename(temp, path)
      yield* disk.syncDir(Path.dirname(path))
    })

/**
 * Appends up to this size are written with write(2) on the calling thread
 * instead of libuv's pool. A write into the page cache costs ~0.5 µs per KiB
 * here; handing it to a pool thread and back costs the event loop ~14 µs
 * whatever the size (and the pool thread as much again), which made the WAL's
 * group-commit writes the largest single cost of the write path. fdatasync,
 * which waits for the device, and larger writes (table flushes) stay on the
 * pool. The trade-off is the one Redis makes for its AOF: if the kernel
 * throttles a writer (dirty-page limits), the event loop waits with it.
 */
const INLINE_WRITE_BYTES = 64 * 1024

const makeNodeFile = (path: string, fd: number, initialSize: number): DiskFile => {
  // Appends are positional writes at a tracked end offset: the offset is
  // reserved synchronously when the effect runs, so concurrent appends land
  // in the order they started even though the writes complete out of order.
  let end = initialSize
  let closed = false
  // Kernel operations on `fd` still running. An interrupted fiber stops
  // waiting, but its read/write/fdatasync keeps running in libuv's pool; if
  // the fd were closed under it, the operation would fail with EBADF or, once
  // the number is reused by the next open, land on ANOTHER file (a WAL
  // segment). So close waits for them, and nothing starts after close.
  let running = 0
  let closeNow: (() => void) | undefined

  /** Runs one kernel operation on the fd (`run` calls `done` exactly once). */
  const op = <A>(
    operation: string,
    run: (done: (error: NodeJS.ErrnoException | null, value: A) => void) => void,
  ): Effect.Effect<A, StorageFailure> =>
    Effect.async<A, StorageFailure>((resume) => {
      if (closed) return resume(Effect.fail(failure(operation, path, "file is closed")))
      running++
      run((error, value) => {
        running--
        if (running === 0 && closeNow !== undefined) closeNow()
        resume(error ? Effect.fail(failure(operation, path, error)) : Effect.succeed(value))
      })
    })

  const writeAll = (data: Uint8Array, position: number): Effect.Effect<void, StorageFailure> =>
    op<void>("append", (done) => {
      const step = (offset: number): void => {
        Fs.write(fd, data, offset, data.length - offset, position + offset, (error, written) => {
          if (error) return done(error, undefined)
          if (offset + written < data.length) return step(offset + written)
          done(null, undefined)
        })
      }
      step(0)
    })
  /** A small append as a write(2) on this thread (see INLINE_WRITE_BYTES). */
  const writeInline = (data: Uint8Array, position: number): Effect.Effect<void, StorageFailure> => {
    try {
      for (let offset = 0; offset < data.length; ) {
        const written = Fs.writeSync(fd, data, offset, data.length - offset, position + offset)
        if (written <= 0) return Effect.fail(failure("append", path, `write returned ${written}`))
        offset += written
      }
      return Effect.void
    } catch (e) {
      return Effect.fail(failure("append", path, e))
    }
  }
  return {
    path,
    append: (data) =>
      Effect.suspend(() => {
        if (closed) return Effect.fail(failure("append", path, "file is closed"))
        const position = end
        end += data.length
        if (data.length === 0) return Effect.void
        return data.length <= INLINE_WRITE_BYTES ? writeInline(data, position) : writeAll(data, position)
      }),
    read: (position, length) =>
      op<Uint8Array>("read", (done) => {
        const buffer = Buffer.allocUnsafe(length)
        const step = (offset: number): void => {
          Fs.read(fd, buffer, offset, length - offset, position + offset, (error, bytesRead) => {
            if (error) return done(error, buffer)
            if (bytesRead === 0 || offset + bytesRead === length) return done(null, buffer.subarray(0, offset + bytesRead))
            step(offset + bytesRead)
          })
        }
        if (length === 0) done(null, buffer)
        else step(0)
      }),
    sync: op<void>("fdatasync", (done) => Fs.fdatasync(fd, (e) => done(e, undefined))),
    size: Effect.sync(() => end),
    truncate: (length) =>
      Effect.suspend(() => {
        end = Math.min(end, length)
        return op<void>("truncate", (done) => Fs.ftruncate(fd, length, (e) => done(e, undefined))).pipe(
          Effect.tap(() => {
            end = length
          }),
        )
      }),
    close: Effect.suspend(() => {
      if (closed) return Effect.void
      closed = true
      return Effect.async<void>((resume) => {
        const doClose = () => Fs.close(fd, () => resume(Effect.void))
        if (running === 0) doClose()
        else closeNow = doClose
      })
    }),
  }
}

/** The Disk service on node:fs file descriptors. */
export const makeNode: Effect.Effect<DiskShape> = Effect.sync(() => {
  const base: Omit<DiskShape, "writeFileAtomic"> = {
    open: (path, mode) =>
      Effect.acquireRelease(
        fsCall<number>("open", path, (cb) => Fs.open(path, openFlags(mode), 0o644, cb)).pipe(
          Effect.flatMap((fd) =>
            fsCall<Fs.Stats>("fstat", path, (cb) => Fs.fstat(fd, cb)).pipe(
              Effect.map((stat) => makeNodeFile(path, fd, stat.size)),
              Effect.tapError(() => Effect.sync(() => Fs.closeSync(fd))),
            ),
          ),
        ),
        (file) => file.close,
      ),
    readFile: (path) =>
      fsCall<Buffer>("readFile", path, (cb) => Fs.readFile(path, cb)).pipe(Effect.map((b) => new Uint8Array(b))),
    rename: (from, to) => fsCall<void>("rename", from, (cb) => Fs.rename(from, to, (e) => cb(e, undefined))),
    remove: (path) =>
      fsCall<void>("remove", path, (cb) =>
        Fs.unlink(path, (e) => cb(e && e.code === "ENOENT" ? null : e, undefined)),
      ),
    list: (dir) =>
      fsCall<Array<string>>("list", dir, (cb) =>
        Fs.readdir(dir, (e, names) => (e && e.code === "ENOENT" ? cb(null, []) : cb(e, names))),
      ).pipe(Effect.map((names) => names.sort())),
    mkdir: (dir) =>
      // The new directory's entry must survive a crash too: fsync its parent.
      fsCall<string | undefined>("mkdir", dir, (cb) => Fs.mkdir(dir, { recursive: true }, cb)).pipe(
        Effect.zipRight(syncDirNode(Path.dirname(Path.resolve(dir)))),
      ),
    syncDir: (dir) => syncDirNode(dir),
    exists: (path) => Effect.async<boolean>((resume) => Fs.access(path, (e) => resume(Effect.succeed(!e)))),
  }
  return { ...base, writeFileAtomic: writeFileAtomicWith(base) }
})

const syncDirNode = (dir: string): Effect.Effect<void, StorageFailure> =>
  Effect.acquireUseRelease(
    fsCall<number>("syncDir", dir, (cb) => Fs.open(dir, Fs.constants.O_RDONLY, cb)),
    (fd) => fsCall<void>("syncDir", dir, (cb) => Fs.fsync(fd, (e) => cb(e, undefined))),
    (fd) => Effect.async<void>((resume) => Fs.close(fd, () => resume(Effect.void))),
  )

export const layerNode: Layer.Layer<Disk> = Layer.effect(Disk, makeNode)

// ---------------------------------------------------------------------------
// In-memory, crashable
// ---------------------------------------------------------------------------

/**
 * A file's bytes. `data[0, length)` is what readers see now; `durable[0,
 * durableLength)` is what survives a crash. Appends never rewrite bytes below
 * `length`, so `sync` can share the buffer instead of copying it; `truncate`
 * below the durable length copies first so the durable view stays intact.
 */
interface MemoryInode {
  data: Uint8Array
  length: number
  durable: Uint8Array
  durableLength: number
  /** Bytes below `durableLength` were truncated away since the last sync. */
  rewritten: boolean
}

export interface CrashOptions {
  /**
   * Keep a prefix of each file's not-yet-synced appended bytes, as a real
   * disk may have written some of them (a torn write). Called per file with the
   * number of unsynced bytes; returns how many to keep. Default: keep none.
   */
  readonly keepUnsynced?: (path: string, unsyncedBytes: number) => number
}

/** An in-memory file system whose `crash()` drops every byte not fdatasynced and every directory change not fsynced. */
export interface MemoryFileSystem {
  /** A Disk bound to the current "boot": after `crash()` it fails every call, as a dead process would. */
  readonly disk: () => DiskShape
  readonly crash: (options?: CrashOptions) => void
  /** Current (not necessarily durable) bytes of a file, for tests that damage files. */
  readonly peek: (path: string) => Uint8Array | undefined
  /** Overwrites bytes of a file in place, durably (simulates media corruption). */
  readonly corrupt: (path: string, position: number, bytes: Uint8Array) => void
  /** Number of file syncs so far (for group-commit tests). */
  readonly syncCount: () => number
}

const normalize = (path: string): string => Path.posix.normalize(path.replace(/\\/g, "/")).replace(/\/$/, "") || "/"

export const makeMemoryFileSystem = (): MemoryFileSystem => {
  // Directory namespaces: dir path → (name → inode). `durableEntries` is what a
  // crash reverts to; `syncDir` copies one directory's current entries into it.
  // Directories themselves are durable once made (Disk.mkdir is durable in both
  // implementations: the node one fsyncs the parent).
  let entries = new Map<string, Map<string, MemoryInode>>()
  const durableEntries = new Map<string, Map<string, MemoryInode>>()
  let boot = 0
  let syncs = 0

  const dirOf = (path: string) => Path.posix.dirname(path)
  const nameOf = (path: string) => Path.posix.basename(path)
  const lookup = (path: string): MemoryInode | undefined => entries.get(dirOf(path))?.get(nameOf(path))

  const ensureCapacity = (inode: MemoryInode, needed: number): void => {
    if (needed <= inode.data.length) return
    const grown = new Uint8Array(Math.max(needed, inode.data.length * 2, 4096))
    grown.set(inode.data.subarray(0, inode.length))
    inode.data = grown
  }

  const disk = (): DiskShape => {
    const myBoot = boot
    const live = <A>(operation: string, path: string, f: () => A): Effect.Effect<A, StorageFailure> =>
      Effect.suspend(() => {
        if (myBoot !== boot) return Effect.fail(failure(operation, path, "disk crashed (stale process)"))
        try {
          return Effect.succeed(f())
        } catch (e) {
          return Effect.fail(failure(operation, path, e))
        }
      })
    const dirEntries = (dir: string, operation: string, path: string): Map<string, MemoryInode> => {
      const d = entries.get(dir)
      if (d === undefined) throw new Error(`ENOENT: no such directory (${operation} ${path})`)
      return d
    }

    const makeFile = (path: string, inode: MemoryInode): DiskFile => {
      let closed = false
      const check = (operation: string) => {
        if (closed) throw new Error(`${operation}: file is closed`)
      }
      return {
        path,
        append: (data) =>
          live("append", path, () => {
            check("append")
            ensureCapacity(inode, inode.length + data.length)
            inode.data.set(data, inode.length)
            inode.length += data.length
          }),
        read: (position, length) =>
          live("read", path, () => {
            check("read")
            const from = Math.min(position, inode.length)
            return inode.data.slice(from, Math.min(inode.length, position + length))
          }),
        sync: live("fdatasync", path, () => {
          check("sync")
          syncs++
          inode.durable = inode.data
          inode.durableLength = inode.length
          inode.rewritten = false
        }),
        size: live("size", path, () => inode.length),
        truncate: (length) =>
          live("truncate", path, () => {
            check("truncate")
            if (length < inode.length) {
              const copy = new Uint8Array(Math.max(length, 4096))
              copy.set(inode.data.subarray(0, length))
              inode.data = copy
              inode.length = length
              if (length < inode.durableLength) inode.rewritten = true
            } else {
              ensureCapacity(inode, length)
              inode.data.fill(0, inode.length, length)
              inode.length = length
            }
          }),
        close: Effect.sync(() => {
          closed = true
        }),
      }
    }

    const base: Omit<DiskShape, "writeFileAtomic"> = {
      open: (rawPath, mode) => {
        const path = normalize(rawPath)
        return Effect.acquireRelease(
          live("open", path, () => {
            const dir = dirEntries(dirOf(path), "open", path)
            let inode = dir.get(nameOf(path))
            if (inode === undefined) {
              if (mode === "read") throw new Error(`ENOENT: no such file (open ${path})`)
              inode = {
                data: new Uint8Array(0),
                length: 0,
                durable: new Uint8Array(0),
                durableLength: 0,
                rewritten: false,
              }
              dir.set(nameOf(path), inode)
            } else if (mode === "truncate") {
              inode.data = new Uint8Array(0)
              inode.length = 0
              inode.rewritten = inode.durableLength > 0
            }
            return makeFile(path, inode)
          }),
          (file) => file.close,
        )
      },
      readFile: (rawPath) => {
        const path = normalize(rawPath)
        return live("readFile", path, () => {
          const inode = lookup(path)
          if (inode === undefined) throw new Error(`ENOENT: no such file (readFile ${path})`)
          return inode.data.slice(0, inode.length)
        })
      },
      rename: (rawFrom, rawTo) => {
        const from = normalize(rawFrom)
        const to = normalize(rawTo)
        return live("rename", from, () => {
          const source = dirEntries(dirOf(from), "rename", from)
          const inode = source.get(nameOf(from))
          if (inode === undefined) throw new Error(`ENOENT: no such file (rename ${from})`)
          const target = dirEntries(dirOf(to), "rename", to)
          source.delete(nameOf(from))
          target.set(nameOf(to), inode)
        })
      },
      remove: (rawPath) => {
        const path = normalize(rawPath)
        return live("remove", path, () => {
          entries.get(dirOf(path))?.delete(nameOf(path))
        })
      },
      list: (rawDir) => {
        const dir = normalize(rawDir)
        return live("list", dir, () => {
          const names = [...(entries.get(dir)?.keys() ?? [])]
          for (const d of entries.keys()) if (d !== dir && dirOf(d) === dir) names.push(nameOf(d))
          return names.sort()
        })
      },
      mkdir: (rawDir) => {
        const dir = normalize(rawDir)
        return live("mkdir", dir, () => {
          let d = dir
          const made: Array<string> = []
          while (!entries.has(d)) {
            made.push(d)
            const parent = dirOf(d)
            if (parent === d) break
            d = parent
          }
          for (const m of made) {
            entries.set(m, new Map())
            durableEntries.set(m, new Map())
          }
        })
      },
      syncDir: (rawDir) => {
        const dir = normalize(rawDir)
        return live("syncDir", dir, () => {
          const current = dirEntries(dir, "syncDir", dir)
          durableEntries.set(dir, new Map(current))
        })
      },
      exists: (rawPath) => {
        const path = normalize(rawPath)
        return live("exists", path, () => entries.has(path) || lookup(path) !== undefined)
      },
    }
    return { ...base, writeFileAtomic: writeFileAtomicWith(base) }
  }

  return {
    disk,
    crash: (options) => {
      boot++
      const next = new Map<string, Map<string, MemoryInode>>()
      const seen = new Set<MemoryInode>()
      for (const [dir, names] of durableEntries) {
        const copy = new Map(names)
        next.set(dir, copy)
        for (const [name, inode] of copy) {
          if (seen.has(inode)) continue
          seen.add(inode)
          // Unsynced appends may partly reach the media, but only when the
          // current bytes extend the durable ones (no truncation in between).
          let keep = 0
          const extendsDurable = !inode.rewritten && inode.length > inode.durableLength
          if (options?.keepUnsynced !== undefined && extendsDurable) {
            const unsynced = inode.length - inode.durableLength
            keep = Math.max(0, Math.min(unsynced, Math.floor(options.keepUnsynced(`${dir}/${name}`, unsynced))))
          }
          const length = inode.durableLength + keep
          const data = new Uint8Array(Math.max(length, 4096))
          data.set((extendsDurable ? inode.data : inode.durable).subarray(0, length))
          inode.data = data
          inode.length = length
          inode.durable = data
          inode.durableLength = length
          inode.rewritten = false
        }
      }
      entries = next
    },
    peek: (path) => {
      const inode = lookup(normalize(path))
      return inode === undefined ? undefined : inode.data.slice(0, inode.length)
    },
    corrupt: (path, position, bytes) => {
      const inode = lookup(normalize(path))
      if (inode === undefined) throw new Error(`no such file: ${path}`)
      // Copy both views so the damage is both visible now and durable.
      const data = inode.data.slice()
      data.set(bytes, position)
      inode.data = data
      const durable = inode.durable.slice()
      if (position < inode.durableLength) durable.set(bytes.subarray(0, inode.durableLength - position), position)
      inode.durable = durable
    },
    syncCount: () => syncs,
  }
}

/** A Disk on a fresh in-memory file system (no way to crash it: see `layerMemoryFrom`). */
export const makeMemory: Effect.Effect<DiskShape> = Effect.sync(() => makeMemoryFileSystem().disk())

export const layerMemory: Layer.Layer<Disk> = Layer.effect(Disk, makeMemory)

/** A Disk on the given in-memory file system, bound to its current boot (build it again after `crash()`). */
export const layerMemoryFrom = (fs: MemoryFileSystem): Layer.Layer<Disk> => Layer.sync(Disk, () => fs.disk())
