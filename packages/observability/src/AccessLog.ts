/**
 * One access-log line per request, written through Effect logging so it goes to the JSON
 * logger with the request's trace and span ids. The entry type lists every field that may
 * appear: there is deliberately no place for an API key, a body, or a vector.
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Random from "effect/Random"
import type * as Metrics from "./Metrics.js"

export interface Entry {
  readonly surface: Metrics.Surface
  /** Route template or method name, never a concrete path with ids. */
  readonly route: string
  readonly method?: string | undefined
  /** HTTP status, gRPC status name or RPC outcome. */
  readonly status: number | string
  readonly durationMs: number
  /** Authenticated tenant, when known (absent for requests refused before auth). */
  readonly tenant?: string | undefined
  readonly requestId: string
  readonly bytesIn?: number | undefined
  readonly bytesOut?: number | undefined
}

/** The message every access line carries, so log tooling can select them. */
export const message = "access"

/** The log annotations of an entry, in snake_case; absent fields are left out. */
export const fields = (entry: Entry): Record<string, string | number> => {
  const out: Record<string, string | number> = {
    log: "access",
    surface: entry.surface,
    route: entry.route,
    status: entry.status,
    duration_ms: Math.round(entry.durationMs * 1000) / 1000,
    request_id: entry.requestId,
  }
  if (entry.method !== undefined) out.method = entry.method
  if (entry.tenant !== undefined) out.tenant = entry.tenant
  if (entry.bytesIn !== undefined) out.bytes_in = entry.bytesIn
  if (entry.bytesOut !== undefined) out.bytes_out = entry.bytesOut
  return out
}

/**
 * The id of the request the current fiber serves; the JSON logger (Logging) writes it as
 * `request_id` on every line. One fiber-local value instead of a log annotation: setting a
 * FiberRef is one copy of the fiber's locals, an annotation is that plus a HashMap update,
 * per request, on every surface.
 */
export const currentRequestId: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(undefined)

/** Writes the access line at INFO. */
export const log = (entry: Entry): Effect.Effect<void> => Effect.annotateLogs(Effect.logInfo(message), fields(entry))

/** Header a client (or proxy) may use to name its request; echoed back by the API. */
export const requestIdHeader = "x-request-id"

// Printable, short and free of separators that would confuse log tooling.
const acceptableId = /^[A-Za-z0-9._:-]{1,64}$/

/**
 * The request id: the caller's `x-request-id` when it is a short printable token, otherwise
 * 16 fresh hex digits from Effect's `Random` (seeded in tests).
 */
export const requestId = (incoming: string | undefined): Effect.Effect<string> =>
  incoming !== undefined && acceptableId.test(incoming)
    ? Effect.succeed(incoming)
    : Effect.map(
        Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))),
        (parts) => parts.map((n) => n.toString(16).padStart(4, "0")).join(""),
      )
