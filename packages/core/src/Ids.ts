/**
 * Identifiers shared by every package. Ids are UTF-8 strings of 1..256 bytes
 * without control characters; the brand keeps a raw string from being passed
 * where a validated id is required.
 */
import * as Schema from "effect/Schema"
import { utf8AtMost } from "./WireChecks.js"

export const MAX_ID_BYTES = 256

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is rejected
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/

const utf8Length = (s: string): number => Buffer.byteLength(s, "utf8")

/** Why `s` is not a valid id (`what` names it in the message), or undefined when it is. */
const idProblem = (what: string, s: string): string | undefined => {
  if (s.length === 0) return `${what} must not be empty`
  if (!utf8AtMost(s, MAX_ID_BYTES)) {
    return `${what} must be at most ${MAX_ID_BYTES} bytes (got ${utf8Length(s)})`
  }
  if (CONTROL_CHARS.test(s)) return `${what} must not contain control characters`
  return undefined
}

/** The rule of every id schema below, for hand-written fast paths that must agree with them. */
export const isValidId = (u: unknown): u is string => typeof u === "string" && idProblem("id", u) === undefined

const idString = (what: string) => Schema.String.pipe(Schema.filter((s) => idProblem(what, s) ?? true))

export const TenantId = idString("tenant id").pipe(Schema.brand("@allidb/TenantId"))
export type TenantId = typeof TenantId.Type

export const EntityId = idString("entity id").pipe(Schema.brand("@allidb/EntityId"))
export type EntityId = typeof EntityId.Type

export const ChunkId = idString("chunk id").pipe(Schema.brand("@allidb/ChunkId"))
export type ChunkId = typeof ChunkId.Type

/** Edge relation names follow the same rules as ids. */
export const Relation = idString("relation").pipe(Schema.brand("@allidb/Relation"))
export type Relation = typeof Relation.Type

/** The tenant that unauthenticated loopback clients act as when no API keys are configured. */
export const DEFAULT_TENANT = "default" as TenantId

/** Unchecked constructors for values already known to be valid (tests, decoded storage). */
export const tenantId = (s: string): TenantId => Schema.decodeSync(TenantId)(s)
export const entityId = (s: string): EntityId => Schema.decodeSync(EntityId)(s)
export const relation = (s: string): Relation => Schema.decodeSync(Relation)(s)
export const chunkId = (s: string): ChunkId => Schema.decodeSync(ChunkId)(s)
