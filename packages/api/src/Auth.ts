/**
 * API-key authentication shared by every surface (HTTP, RPC, gRPC). Keys are
 * held only as SHA-256 digests; a presented key is hashed and compared with
 * every stored digest using `timingSafeEqual`, without early exit, so the
 * time taken does not reveal which (or whether a) key matched.
 *
 * With no keys configured the node accepts only loopback clients, as tenant
 * `default`, and logs a warning once at start. Keys added to the keys file
 * while the node runs (`allidbd keys create`) are picked up on the next
 * unknown key, re-reading the file at most once per second.
 */
import { timingSafeEqual } from "node:crypto"
import { DEFAULT_TENANT, PermissionDenied, type TenantId, Unauthenticated } from "@allidb/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as ApiConfig from "./ApiConfig.js"
import * as ApiKeys from "./ApiKeys.js"

/** The header (HTTP, RPC) and metadata key (gRPC, lowercase) carrying the API key. */
export const API_KEY_HEADER = "x-allidb-api-key"

export interface AuthShape {
  /** The caller's tenant, or Unauthenticated for a missing / unknown key. */
  readonly authenticate: (
    apiKey: string | undefined,
    remoteAddress: string | undefined,
  ) => Effect.Effect<TenantId, Unauthenticated>
  /**
   * A request body may name a tenant (compat `tenant_id`, a `tenant` field):
   * anything but the caller's own is refused before it reaches storage.
   */
  readonly authorizeTenant: (caller: TenantId, named: string | undefined) => Effect.Effect<void, PermissionDenied>
  /** True while no keys are configured (loopback-only mode). */
  readonly keyless: Effect.Effect<boolean>
}

export class Auth extends Context.Tag("@allidb/api/Auth")<Auth, AuthShape>() {}

interface StoredKey {
  readonly digest: Buffer
  readonly tenant: TenantId
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped IPv6 forms. An unknown address is not loopback. */
export const isLoopback = (address: string | undefined): boolean => {
  if (address === undefined) return false
  const a = address.toLowerCase()
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true
  const v4 = a.startsWith("::ffff:") ? a.slice("::ffff:".length) : a
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4)
}

/** Constant-time lookup: every stored digest is compared, whatever matches. */
export const lookup = (stored: ReadonlyArray<StoredKey>, presented: string): TenantId | undefined => {
  const digest = ApiKeys.hashBytes(ApiKeys.hashKey(presented))
  let found: TenantId | undefined
  for (const entry of stored) {
    if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry.tenant
  }
  return found
}

const RELOAD_INTERVAL_MS = 1_000

export const make: Effect.Effect<AuthShape, ApiKeys.KeysFileError, ApiConfig.ApiConfig> = Effect.gen(function* () {
  const config = yield* ApiConfig.ApiConfig
  const fromEnv: ReadonlyArray<StoredKey> = config.apiKeys.map((b) => ({
    digest: ApiKeys.hashBytes(ApiKeys.hashKey(b.key)),
    tenant: b.tenant,
  }))
  const file = config.apiKeysFile
  const loadFile = (path: string) =>
    ApiKeys.read(path).pipe(
      Effect.map((records) => records.map((r) => ({ digest: ApiKeys.hashBytes(r.hash), tenant: r.tenant }))),
    )
  const keys = yield* Ref.make<ReadonlyArray<StoredKey>>([...fromEnv, ...(file === undefined ? [] : yield* loadFile(file))])
  const lastReload = yield* Ref.make(yield* Clock.currentTimeMillis)

  const initial = yield* Ref.get(keys)
  if (initial.length === 0) {
    yield* Effect.logWarning(
      "no API keys configured: accepting unauthenticated requests from loopback clients only, as tenant \"default\"",
    )
  } else {
    yield* Effect.logInfo(`API key authentication on: ${initial.length} key(s)`)
  }

  // A key created while running: re-read the file, rate-limited so unknown
  // keys cannot turn into a file-read storm. A bad file keeps the old keys.
  const maybeReload: Effect.Effect<ReadonlyArray<StoredKey>> =
    file === undefined
      ? Ref.get(keys)
      : Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const last = yield* Ref.get(lastReload)
          if (now - last < RELOAD_INTERVAL_MS) return yield* Ref.get(keys)
          yield* Ref.set(lastReload, now)
          return yield* loadFile(file).pipe(
            Effect.tap((fromFile) => Ref.set(keys, [...fromEnv, ...fromFile])),
            Effect.map((fromFile) => [...fromEnv, ...fromFile]),
            Effect.catchAll((error) =>
              Effect.zipRight(Effect.logWarning(`keeping the loaded API keys: ${error.message}`), Ref.get(keys)),
            ),
          )
        })

  const authenticate = (apiKey: string | undefined, remoteAddress: string | undefined) =>
    Effect.gen(function* () {
      let stored = yield* Ref.get(keys)
      const presented = apiKey === undefined || apiKey === "" ? undefined : apiKey
      if (presented !== undefined) {
        const tenant = lookup(stored, presented)
        if (tenant !== undefined) return tenant
        stored = yield* maybeReload
        const reloaded = lookup(stored, presented)
        if (reloaded !== undefined) return reloaded
      }
      if (stored.length === 0) {
        if (isLoopback(remoteAddress)) return DEFAULT_TENANT
        return yield* new Unauthenticated({
          message: "no API keys are configured: only loopback clients are accepted",
        })
      }
      return yield* new Unauthenticated({
        message: presented === undefined ? `missing API key (header ${API_KEY_HEADER})` : "unknown API key",
      })
    })

  const authorizeTenant = (caller: TenantId, named: string | undefined) =>
    named === undefined || named === "" || named === caller
      ? Effect.void
      : Effect.fail(new PermissionDenied({ message: "the request names another tenant than the API key's" }))

  return {
    authenticate,
    authorizeTenant,
    keyless: Effect.map(Ref.get(keys), (k) => k.length === 0),
  } satisfies AuthShape
})

export const layer: Layer.Layer<Auth, ApiKeys.KeysFileError, ApiConfig.ApiConfig> = Layer.effect(Auth, make)
