/**
 * The one interface every API surface is driven through by the conformance
 * suite: wire-neutral requests in, a common outcome out. Each adapter
 * translates a request to its own wire format and maps its own errors
 * (HTTP status + body, gRPC status, typed RPC error, embedded failure) to one
 * vocabulary, so a scenario is written once and its outcomes compared.
 *
 * An operation a surface does not offer is absent from its adapter (the
 * runner records "n.a." naming it); a request a surface offers but cannot
 * express (a filter on the compatible query, k = 0 in proto3) answers
 * `NotExpressible` with the reason. Neither is ever silently skipped.
 */
import type * as Effect from "effect/Effect"

/** gRPC status names in lower case: the common outcome vocabulary. */
export type ErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "resource_exhausted"
  | "deadline_exceeded"
  | "unavailable"
  | "internal"
  | "unknown"

export interface Ok<A> {
  readonly _tag: "Ok"
  readonly value: A
}
export interface Err {
  readonly _tag: "Err"
  readonly code: ErrorCode
  /** The field path the surface named, if it named one. */
  readonly field: string | undefined
  readonly message: string
}
export interface NotExpressible {
  readonly _tag: "NotExpressible"
  readonly reason: string
}
export type Outcome<A> = Ok<A> | Err | NotExpressible

export const ok = <A>(value: A): Outcome<A> => ({ _tag: "Ok", value })
export const err = (code: ErrorCode, message: string, field?: string): Outcome<never> => ({
  _tag: "Err",
  code,
  field,
  message,
})
export const notExpressible = (reason: string): Outcome<never> => ({ _tag: "NotExpressible", reason })

/** `ONE`-style gRPC code name → common code. */
export const codeFromName = (name: string): ErrorCode => {
  const lower = name.toLowerCase()
  switch (lower) {
    case "invalid_argument":
    case "unauthenticated":
    case "permission_denied":
    case "not_found":
    case "resource_exhausted":
    case "deadline_exceeded":
    case "unavailable":
    case "internal":
      return lower
    default:
      return "unknown"
  }
}

/** `field: rule` messages (InvalidInput, DimensionMismatch) → the field. */
export const fieldOfMessage = (message: string): string | undefined => {
  const match = /^([A-Za-z_][\w.[\]]*): /.exec(message)
  return match === null ? undefined : match[1]
}

// ---------------------------------------------------------------------------
// Wire-neutral requests and answers

export type MetadataValue = string | number | boolean

export interface DocEdge {
  readonly to: string
  readonly relation: string
  readonly weight: number
}

export interface DocChunk {
  readonly id: string
  readonly text: string
  readonly metadata?: Readonly<Record<string, string>>
}

/**
 * An entity as the scenarios write and read it. Bad-input cases put values
 * of the wrong type here on purpose (cast), and adapters pass them through.
 */
export interface Doc {
  readonly id: string
  readonly type?: string
  readonly vector?: ReadonlyArray<number>
  readonly importance?: number
  readonly metadata?: Readonly<Record<string, MetadataValue>>
  readonly chunks?: ReadonlyArray<DocChunk>
  readonly edges?: ReadonlyArray<DocEdge>
  /** Milliseconds; both created and updated time when given (so scores do not depend on write time). */
  readonly time?: number
}

export type Direction = "out" | "in" | "both"

export interface Query {
  readonly vector: ReadonlyArray<number>
  readonly k: number
  readonly expand?: {
    readonly hops: number
    readonly factor: number
    readonly relations?: ReadonlyArray<string>
    readonly direction?: Direction
  }
  readonly filter?: {
    readonly type?: string | ReadonlyArray<string>
    readonly metadata?: Readonly<Record<string, unknown>>
  }
  readonly consistency?: string
}

export interface Hit {
  readonly id: string
  readonly score: number
  /** The answered entity, normalised (surfaces that return it). */
  readonly doc: Doc | undefined
}

export interface Traverse {
  readonly from: ReadonlyArray<string>
  readonly hops: number
  readonly relations?: ReadonlyArray<string>
  readonly direction?: Direction
  readonly limit?: number
}

export interface Reached {
  readonly id: string
  readonly depth: number
}

export interface Scan {
  readonly start?: string
  readonly end?: string
  readonly limit?: number
  readonly pageToken?: string
}

export interface Page {
  readonly docs: ReadonlyArray<Doc>
  readonly next: string | undefined
}

export interface EdgeRef {
  readonly from: string
  readonly to: string
  readonly relation: string
}

export interface EdgeWrite extends EdgeRef {
  readonly weight?: number
}

export interface UpsertAnswer {
  readonly ids: ReadonlyArray<string>
  /** Entities refused while the rest were written. */
  readonly failed: ReadonlyArray<{ readonly id: string; readonly code: ErrorCode; readonly field: string | undefined }>
}

/** Options every write/read may carry; `tenant` is a tenant named in the body. */
export interface RequestOptions {
  readonly consistency?: string
  readonly tenant?: string
}

export type OpName =
  | "upsert"
  | "get"
  | "delete"
  | "putEdges"
  | "deleteEdges"
  | "query"
  | "traverse"
  | "scan"
  | "health"

type Op<I extends ReadonlyArray<unknown>, A> = (...input: I) => Effect.Effect<Outcome<A>>

/** One surface acting as one principal (a key, no key, or a tenant in-process). */
export interface Surface {
  readonly upsert?: Op<[docs: ReadonlyArray<Doc>, options?: RequestOptions], UpsertAnswer>
  readonly get?: Op<[id: string], Doc>
  readonly delete?: Op<[id: string], void>
  readonly putEdges?: Op<[edges: ReadonlyArray<EdgeWrite>, options?: RequestOptions], void>
  readonly deleteEdges?: Op<[edges: ReadonlyArray<EdgeRef>, options?: RequestOptions], void>
  readonly query?: Op<[query: Query, options?: RequestOptions], ReadonlyArray<Hit>>
  readonly traverse?: Op<[request: Traverse, options?: RequestOptions], ReadonlyArray<Reached>>
  readonly scan?: Op<[request: Scan, options?: RequestOptions], Page>
  /** Liveness without a key. */
  readonly health?: Op<[], boolean>
}

export interface Pair {
  readonly t1: string
  readonly t2: string
}

/** Who calls: the surface's own tenant, the other tenant, no key, or a key nobody issued. */
export type Principal = "t1" | "t2" | "none" | "unknown"

export interface Driver {
  /** Column name in the matrix. */
  readonly name: string
  /** The tenants behind "t1" and "t2" (what a body names to reach the other tenant). */
  readonly tenants: Pair
  /** The surface as `principal`, or undefined when the surface has no such notion (embedded: no keys). */
  readonly as: (principal: Principal) => Surface | undefined
  /** Logical field name (native spelling, e.g. `entities[0].vector`) → this surface's spelling. */
  readonly field: (logical: string) => string
  /**
   * The surface as t1 without the client-side checks a typed client makes
   * (only where such a client exists: RPC), so the server's own validation is
   * what answers.
   */
  readonly unchecked?: Surface
  /** How this surface offers an operation it emulates (printed under the matrix). */
  readonly notes: ReadonlyArray<string>
}
