/**
 * A Disk that interrupts the calling fiber at its n-th operation once armed
 * (file operations included): a way to stop a flush or compaction at every
 * possible point, deterministically.
 */
import * as Effect from "effect/Effect"
import type * as Disk from "../src/Disk.js"

export const trapDisk = (inner: Disk.DiskShape) => {
  let countdown = -1
  const gate = <A, E, R>(eff: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      if (countdown < 0) return eff
      if (countdown-- === 0) return Effect.interrupt
      return eff
    })
  const wrapFile = (f: Disk.DiskFile): Disk.DiskFile => ({
    path: f.path,
    append: (d) => gate(f.append(d)),
    read: (p, l) => gate(f.read(p, l)),
    sync: gate(f.sync),
    size: gate(f.size),
    truncate: (l) => gate(f.truncate(l)),
    close: f.close,
  })
  const disk: Disk.DiskShape = {
    open: (p, m) => gate(Effect.map(inner.open(p, m), wrapFile)),
    readFile: (p) => gate(inner.readFile(p)),
    writeFileAtomic: (p, d) => gate(inner.writeFileAtomic(p, d)),
    rename: (a, b) => gate(inner.rename(a, b)),
    remove: (p) => gate(inner.remove(p)),
    list: (d) => gate(inner.list(d)),
    mkdir: (d) => gate(inner.mkdir(d)),
    syncDir: (d) => gate(inner.syncDir(d)),
    exists: (p) => gate(inner.exists(p)),
  }
  return {
    disk,
    arm: (n: number) => {
      countdown = n
    },
  }
}

