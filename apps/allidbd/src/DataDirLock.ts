/**
 * One node per data directory. `<dataDir>/LOCK` holds the owner's pid; it is
 * created with O_EXCL, so of two nodes starting together exactly one wins. A
 * lock left by a process that no longer runs (kill -9, power loss) is stale
 * and taken over. Released when the scope closes.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export class DataDirError extends Data.TaggedError("DataDirError")<{ readonly message: string }> {}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const tryCreate = (lockPath: string): "created" | "exists" => {
  try {
    const fd = fs.openSync(lockPath, "wx")
    try {
      fs.writeSync(fd, `${process.pid}\n`)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    return "created"
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return "exists"
    throw e
  }
}

const acquireSync = (dataDir: string): string => {
  fs.mkdirSync(dataDir, { recursive: true })
  const lockPath = path.join(dataDir, "LOCK")
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(lockPath) === "created") return lockPath
    const owner = Number.parseInt(fs.readFileSync(lockPath, "utf8").trim(), 10)
    if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
      throw new DataDirError({ message: `data dir ${dataDir} is in use by another allidbd (pid ${owner})` })
    }
    // Stale: remove it and race for it again; O_EXCL picks one winner.
    fs.rmSync(lockPath, { force: true })
  }
  throw new DataDirError({ message: `could not lock data dir ${dataDir}` })
}

/** Creates the data dir if missing and holds its lock for the scope's lifetime. */
export const acquire = (dataDir: string): Effect.Effect<string, DataDirError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => acquireSync(dataDir),
      catch: (e) =>
        e instanceof DataDirError
          ? e
          : new DataDirError({ message: `cannot use data dir ${dataDir}: ${(e as Error).message}` }),
    }),
    (lockPath) => Effect.sync(() => fs.rmSync(lockPath, { force: true })),
  )
