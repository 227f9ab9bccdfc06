/**
 * The small hand-offs between the storage fibers and plain-code callbacks
 * (the WAL's writer and syncer, the engine's flusher and stalled writes):
 * cheaper than a Deferred or Queue per wait on paths that run per batch.
 */
import * as Effect from "effect/Effect"

/** Callbacks waiting for a condition; `releaseAll` resumes the ones registered so far. */
export class Waiters {
  private list: Array<() => void> = []

  /** Waits until the next `releaseAll`. */
  readonly wait: Effect.Effect<void> = Effect.async<void>((resume) => {
    this.list.push(() => resume(Effect.void))
  })

  /** Resumes every waiter registered so far; true when there was one. */
  releaseAll(): boolean {
    if (this.list.length === 0) return false
    const waiting = this.list
    this.list = []
    for (const w of waiting) w()
    return true
  }
}

/** A wake-up that is not lost: a `notify` with nobody waiting lets the next `wait` through at once. */
export const makeSignal = () => {
  let pending = false
  let waiter: (() => void) | undefined
  return {
    notify: (): void => {
      if (waiter !== undefined) {
        const w = waiter
        waiter = undefined
        w()
      } else pending = true
    },
    wait: Effect.async<void>((resume) => {
      if (pending) {
        pending = false
        return resume(Effect.void)
      }
      waiter = () => resume(Effect.void)
    }),
  }
}
