/**
 * Cooperative time slicing. hnswlib inserts are synchronous native calls; a
 * long run of them would starve every other request on the event loop. Long
 * index work runs in slices of at most `sliceMs` and then yields a full
 * macrotask turn (setImmediate, after pending I/O), which a microtask-based
 * `Effect.yieldNow` would not give.
 *
 * Slices are measured with performance.now(), not Clock: this is scheduling
 * of real CPU time, and a TestClock must not freeze it.
 */
import * as Effect from "effect/Effect"

/** Lets timers and I/O callbacks run; also an interruption point. */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Tracks the current slice; `due` is true once the slice has used its time. */
export class Slice {
  private started = performance.now()
  constructor(private readonly sliceMs: number) {}
  get due(): boolean {
    return performance.now() - this.started >= this.sliceMs
  }
  /** Yields if the slice is used up, then starts a new one. */
  readonly yieldIfDue: Effect.Effect<void> = Effect.suspend(() =>
    this.due ? Effect.zipRight(yieldToEventLoop, Effect.sync(() => this.restart())) : Effect.void,
  )
  restart(): void {
    this.started = performance.now()
  }
}
