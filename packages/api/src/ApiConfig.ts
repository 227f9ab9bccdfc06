/**
 * Settings of the API surfaces: keys, body/batch/k limits, per-key rate
 * limit and the per-request deadline. The server maps its flags and ALLIDB_*
 * variables onto this (`parseApiKeys` reads the ALLIDB_API_KEYS syntax);
 * embedders and tests provide it directly with `layer`.
 */
import { MAX_K, TenantId } from "@allidb/core"
import * as Context from "effect/Context"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

export interface ApiKeyBinding {
  readonly key: string
  readonly tenant: TenantId
}

export interface ApiConfigShape {
  /** Plain keys from ALLIDB_API_KEYS (`key=tenant,…`); hashed at start, never kept in clear by Auth. */
  readonly apiKeys: ReadonlyArray<ApiKeyBinding>
  /** ALLIDB_API_KEYS_FILE: JSON lines of `{hash, tenant, created}` (see ApiKeys). */
  readonly apiKeysFile: string | undefined
  /** ALLIDB_MAX_BODY_MB: request bodies above this are refused with 413. */
  readonly maxBodyMb: number
  /** Most entities / edges in one write request; more is a 400. */
  readonly maxBatch: number
  /** Largest `k` (and traverse / scan `limit`) a request may ask for. */
  readonly maxK: number
  /** Sustained requests per second per API key (per tenant for keyless loopback); 0 disables. */
  readonly rateLimitPerSec: number
  /** Token-bucket capacity: requests a key may burst above the sustained rate. */
  readonly rateLimitBurst: number
  /** Deadline of one request; the work is interrupted and the client gets 504. */
  readonly requestTimeoutMs: number
}

export const defaults: ApiConfigShape = {
  apiKeys: [],
  apiKeysFile: undefined,
  maxBodyMb: 64,
  maxBatch: 10_000,
  maxK: MAX_K,
  rateLimitPerSec: 0,
  rateLimitBurst: 0,
  requestTimeoutMs: 5_000,
}

export class ApiConfig extends Context.Tag("@allidb/api/ApiConfig")<ApiConfig, ApiConfigShape>() {}

export const layer = (config: Partial<ApiConfigShape> = {}): Layer.Layer<ApiConfig> =>
  Layer.succeed(ApiConfig, { ...defaults, ...config })

export const maxBodyBytes = (config: ApiConfigShape): number => Math.floor(config.maxBodyMb * 1024 * 1024)

/** The bucket capacity actually used: at least one request, at least the per-second rate. */
export const effectiveBurst = (config: ApiConfigShape): number =>
  Math.max(1, config.rateLimitBurst, Math.ceil(config.rateLimitPerSec))

const decodeTenant = Schema.decodeUnknownEither(TenantId)

/**
 * Parses ALLIDB_API_KEYS: `key=tenant[,key=tenant…]`, whitespace around
 * items ignored. Returns a one-line reason on bad input (the server turns it
 * into its "bad setting" exit), never echoing a key.
 */
export const parseApiKeys = (raw: string): Either.Either<ReadonlyArray<ApiKeyBinding>, string> => {
  const bindings: Array<ApiKeyBinding> = []
  const items = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
  for (const [index, item] of items.entries()) {
    const eq = item.lastIndexOf("=")
    if (eq <= 0 || eq === item.length - 1) {
      return Either.left(`ALLIDB_API_KEYS item ${index + 1} must be key=tenant`)
    }
    const key = item.slice(0, eq).trim()
    const tenant = decodeTenant(item.slice(eq + 1).trim())
    if (Either.isLeft(tenant)) return Either.left(`ALLIDB_API_KEYS item ${index + 1}: invalid tenant id`)
    if (bindings.some((b) => b.key === key)) return Either.left(`ALLIDB_API_KEYS item ${index + 1}: duplicate key`)
    bindings.push({ key, tenant: tenant.right })
  }
  return Either.right(bindings)
}
