/**
 * Hybrid logical clock. A timestamp is `wall` (physical milliseconds × 4096 +
 * a logical counter, a safe integer until the year 6429) plus the writing
 * node's tiebreak. Timestamps from one clock strictly increase even if the
 * system clock steps back; `observe` folds in a remote timestamp so causally
 * later writes always order later. Ordering: wall, then node.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

export const LOGICAL_BITS = 12
export const LOGICAL_SPAN = 1 << LOGICAL_BITS

export interface Timestamp {
  /** physicalMillis × 4096 + logical counter */
  readonly wall: number
  /** 32-bit unsigned tiebreak of the writing node */
  readonly node: number
}

export const compare = (a: Timestamp, b: Timestamp): -1 | 0 | 1 =>
  a.wall < b.wall ? -1 : a.wall > b.wall ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : 0

export const physicalMillis = (ts: Timestamp): number => Math.floor(ts.wall / LOGICAL_SPAN)

export const fromMillis = (millis: number, node = 0): Timestamp => ({ wall: millis * LOGICAL_SPAN, node })

/** A stable 32-bit tiebreak for a node id (FNV-1a). */
export const nodeTiebreak = (nodeId: string): number => {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(nodeId, "utf8")) {
    h ^= byte
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

/** Pure step: the next wall value given the last one and the physical time. */
export const nextWall = (last: number, nowMillis: number): number => Math.max(last + 1, nowMillis * LOGICAL_SPAN)

export interface HlcShape {
  readonly now: Effect.Effect<Timestamp>
  readonly observe: (remote: Timestamp) => Effect.Effect<void>
}

export class Hlc extends Context.Tag("@allidb/core/Hlc")<Hlc, HlcShape>() {}

export const make = (nodeId: string): Effect.Effect<HlcShape> =>
  Effect.sync(() => {
    const node = nodeTiebreak(nodeId)
    let last = 0
    return {
      now: Effect.map(Clock.currentTimeMillis, (millis) => {
        last = nextWall(last, millis)
        return { wall: last, node }
      }),
      observe: (remote) =>
        Effect.sync(() => {
          if (remote.wall > last) last = remote.wall
        }),
    }
  })

export const layer = (nodeId: string): Layer.Layer<Hlc> => Layer.effect(Hlc, make(nodeId))
