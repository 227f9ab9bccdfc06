/**
 * The listeners come up before recovery (WAL replay, index load) is done, so
 * /health answers at once. Until the node is built, the API surfaces see this
 * Coordinator, which refuses every call with Unavailable (503 / UNAVAILABLE);
 * once `open` hands it the real one, every call goes straight through.
 */
import type { Coordinator } from "@allidb/cluster"
import { Unavailable } from "@allidb/core"
import * as Effect from "effect/Effect"

export interface StartingCoordinator {
  readonly coordinator: Coordinator.CoordinatorShape
  readonly open: (real: Coordinator.CoordinatorShape) => void
  readonly close: (reason: string) => void
}

export const make = (): StartingCoordinator => {
  let state: { readonly _tag: "closed"; readonly reason: string } | { readonly _tag: "open"; readonly real: Coordinator.CoordinatorShape } = {
    _tag: "closed",
    reason: "the node is starting (recovering storage and index)",
  }
  const current = Effect.suspend(() =>
    state._tag === "open" ? Effect.succeed(state.real) : Effect.fail(new Unavailable({ message: state.reason })),
  )
  const coordinator: Coordinator.CoordinatorShape = {
    upsert: (...args) => Effect.flatMap(current, (c) => c.upsert(...args)),
    get: (...args) => Effect.flatMap(current, (c) => c.get(...args)),
    remove: (...args) => Effect.flatMap(current, (c) => c.remove(...args)),
    putEdges: (...args) => Effect.flatMap(current, (c) => c.putEdges(...args)),
    removeEdges: (...args) => Effect.flatMap(current, (c) => c.removeEdges(...args)),
    query: (...args) => Effect.flatMap(current, (c) => c.query(...args)),
    traverse: (...args) => Effect.flatMap(current, (c) => c.traverse(...args)),
    scan: (...args) => Effect.flatMap(current, (c) => c.scan(...args)),
  }
  return {
    coordinator,
    open: (real) => {
      state = { _tag: "open", real }
    },
    close: (reason) => {
      state = { _tag: "closed", reason }
    },
  }
}
