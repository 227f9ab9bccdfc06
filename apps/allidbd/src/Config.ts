/**
 * The node's settings: one table drives flag parsing, environment variables,
 * defaults, validation, `-help` and docs/CONFIGURATION.md. Precedence: flags
 * override ALLIDB_* variables, which override defaults. A bad value is a
 * ConfigError whose message is one line naming the setting.
 */
import { ApiConfig } from "@allidb/api"
import * as Data from "effect/Data"
import * as Either from "effect/Either"

export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly message: string }> {}

export interface HostPort {
  readonly host: string
  readonly port: number
}

export type LogLevel = "DEBUG" | "INFO" | "WARN" | "ERROR"
export type SyncMode = "always" | "none"
export type Metric = "cosine" | "l2" | "ip"
export type ClientAuth = "none" | "request" | "require"

export interface NodeConfig {
  readonly nodeId: string
  readonly grpcAddr: HostPort
  readonly httpAddr: HostPort
  readonly gossipAddr: HostPort
  readonly dataDir: string
  readonly logLevel: LogLevel
  readonly tls: boolean
  readonly tlsCert: string | undefined
  readonly tlsKey: string | undefined
  readonly tlsCa: string | undefined
  readonly tlsClientAuth: ClientAuth
  readonly failHard: boolean
  readonly shutdownTimeoutMs: number
  readonly syncMode: SyncMode
  readonly walSalvage: boolean
  readonly memtableMb: number
  readonly compactionMbPerS: number
  readonly compactionMinThreshold: number
  readonly compactionMaxThreshold: number
  readonly tombstoneGraceMs: number
  readonly blockCacheMb: number
  readonly metric: Metric
  readonly hnswM: number
  readonly efConstruction: number
  readonly efSearch: number
  readonly snapshotIntervalMs: number
  readonly apiKeys: ReadonlyArray<ApiConfig.ApiKeyBinding>
  readonly apiKeysFile: string | undefined
  readonly maxBodyMb: number
  readonly maxBatch: number
  readonly requestTimeoutMs: number
  readonly rateLimit: number
  readonly rateBurst: number
  readonly debugRoutes: boolean
}

type Parse<A> = (raw: string) => Either.Either<A, string>

interface Setting<K extends keyof NodeConfig = keyof NodeConfig> {
  readonly key: K
  readonly flag: string
  readonly env: string
  readonly default: string | undefined
  readonly description: string
  readonly parse: Parse<NodeConfig[K]>
  /** A boolean flag may be given bare (`-tls` means `-tls=true`). */
  readonly boolean?: true
}

const ok = Either.right
const fail = Either.left

const parseBool: Parse<boolean> = (raw) => {
  const v = raw.trim().toLowerCase()
  if (["true", "1", "yes", "on"].includes(v)) return ok(true)
  if (["false", "0", "no", "off"].includes(v)) return ok(false)
  return fail(`expected true or false, got ${JSON.stringify(raw)}`)
}

const parseHostPort: Parse<HostPort> = (raw) => {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(raw.trim())
  if (match === null) return fail(`expected host:port, got ${JSON.stringify(raw)}`)
  const host = match[1] ?? match[2] ?? ""
  const port = Number(match[3])
  if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(`port ${match[3]} is out of range 0..65535`)
  return ok({ host: host === "" ? "0.0.0.0" : host, port })
}

const parseString: Parse<string> = (raw) => (raw.length === 0 ? fail("must not be empty") : ok(raw))

const parseOptionalString: Parse<string | undefined> = (raw) => ok(raw.length === 0 ? undefined : raw)

const parseNodeId: Parse<string> = (raw) =>
  raw.length === 0
    ? fail("must not be empty")
    : raw.length > 128
      ? fail("must be at most 128 characters")
      : /^[A-Za-z0-9._-]+$/.test(raw)
        ? ok(raw)
        : fail("may contain only letters, digits, '.', '_' and '-'")

const parseEnum =
  <A extends string>(values: ReadonlyArray<A>, normalize: (s: string) => string = (s) => s): Parse<A> =>
  (raw) => {
    const v = normalize(raw.trim())
    return (values as ReadonlyArray<string>).includes(v)
      ? ok(v as A)
      : fail(`expected one of ${values.join(", ")}, got ${JSON.stringify(raw)}`)
  }

const parseNumber =
  (options: { readonly min: number; readonly max: number; readonly integer?: boolean }): Parse<number> =>
  (raw) => {
    const n = Number(raw.trim())
    if (raw.trim() === "" || !Number.isFinite(n)) return fail(`expected a number, got ${JSON.stringify(raw)}`)
    if (options.integer === true && !Number.isInteger(n)) return fail(`expected a whole number, got ${raw}`)
    if (n < options.min || n > options.max) return fail(`${raw} is out of range ${options.min}..${options.max}`)
    return ok(n)
  }

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Durations: `500ms`, `10s`, `5m`, `2h`, `10d`, or a bare number of milliseconds. */
const parseDuration =
  (options: { readonly min: number; readonly max: number }): Parse<number> =>
  (raw) => {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim())
    if (match === null) return fail(`expected a duration such as 500ms, 10s or 5m, got ${JSON.stringify(raw)}`)
    const ms = Number(match[1]) * (DURATION_UNITS[match[2] ?? "ms"] ?? 1)
    if (ms < options.min || ms > options.max) return fail(`${raw} is out of range`)
    return ok(Math.round(ms))
  }

const setting = <K extends keyof NodeConfig>(s: Setting<K>): Setting => s as unknown as Setting

/** Every setting of the node, in the order `-help` lists them. */
export const settings: ReadonlyArray<Setting> = [
  setting({
    key: "nodeId",
    flag: "node-id",
    env: "ALLIDB_NODE_ID",
    default: "node1",
    description: "Node identifier",
    parse: parseNodeId,
  }),
  setting({
    key: "grpcAddr",
    flag: "grpc-addr",
    env: "ALLIDB_GRPC_ADDR",
    default: "0.0.0.0:50051",
    description: "gRPC server address (port 0 picks a free port)",
    parse: parseHostPort,
  }),
  setting({
    key: "httpAddr",
    flag: "http-addr",
    env: "ALLIDB_HTTP_ADDR",
    default: "0.0.0.0:8080",
    description: "HTTP server address: REST, /v1, /rpc, /metrics (port 0 picks a free port)",
    parse: parseHostPort,
  }),
  setting({
    key: "dataDir",
    flag: "data-dir",
    env: "ALLIDB_DATA_DIR",
    default: "./data",
    description: "Data directory (created if missing; one node per directory)",
    parse: parseString,
  }),
  setting({
    key: "logLevel",
    flag: "log-level",
    env: "ALLIDB_LOG_LEVEL",
    default: "INFO",
    description: "Log level: DEBUG, INFO, WARN, ERROR",
    parse: parseEnum<LogLevel>(["DEBUG", "INFO", "WARN", "ERROR"], (s) =>
      s.toUpperCase() === "WARNING" ? "WARN" : s.toUpperCase(),
    ),
  }),
  setting({
    key: "tls",
    flag: "tls",
    env: "ALLIDB_ENABLE_TLS",
    default: "false",
    description: "Serve HTTPS, gRPC and RPC over TLS (needs -tls-cert and -tls-key)",
    parse: parseBool,
    boolean: true,
  }),
  setting({
    key: "tlsCert",
    flag: "tls-cert",
    env: "ALLIDB_TLS_CERT",
    default: undefined,
    description: "TLS certificate file (PEM)",
    parse: parseOptionalString,
  }),
  setting({
    key: "tlsKey",
    flag: "tls-key",
    env: "ALLIDB_TLS_KEY",
    default: undefined,
    description: "TLS private key file (PEM)",
    parse: parseOptionalString,
  }),
  setting({
    key: "tlsCa",
    flag: "tls-ca",
    env: "ALLIDB_TLS_CA",
    default: undefined,
    description: "CA certificate file (PEM) for client certificates (mTLS)",
    parse: parseOptionalString,
  }),
  setting({
    key: "tlsClientAuth",
    flag: "tls-client-auth",
    env: "ALLIDB_TLS_CLIENT_AUTH",
    default: "none",
    description: "Client certificates: none, request, require (require needs -tls-ca)",
    parse: parseEnum<ClientAuth>(["none", "request", "require"], (s) => s.toLowerCase()),
  }),
  setting({
    key: "failHard",
    flag: "fail-hard",
    env: "ALLIDB_FAIL_HARD",
    default: "true",
    description: "Stop the node when a tenant violation reaches storage (false: fail the call)",
    parse: parseBool,
    boolean: true,
  }),
  setting({
    key: "gossipAddr",
    flag: "gossip-addr",
    env: "ALLIDB_GOSSIP_ADDR",
    default: "0.0.0.0:7946",
    description: "Gossip protocol address (reserved for the cluster milestone; not opened by a single node)",
    parse: parseHostPort,
  }),
  setting({
    key: "shutdownTimeoutMs",
    flag: "shutdown-timeout",
    env: "ALLIDB_SHUTDOWN_TIMEOUT",
    default: "10s",
    description: "How long SIGTERM/SIGINT waits for in-flight requests to finish",
    parse: parseDuration({ min: 0, max: 3_600_000 }),
  }),
  setting({
    key: "syncMode",
    flag: "sync-mode",
    env: "ALLIDB_SYNC_MODE",
    default: "always",
    description: "WAL durability: always (fdatasync before acknowledging) or none (development only)",
    parse: parseEnum<SyncMode>(["always", "none"], (s) => s.toLowerCase()),
  }),
  setting({
    key: "walSalvage",
    flag: "wal-salvage",
    env: "ALLIDB_WAL_SALVAGE",
    default: "false",
    description: "Skip corrupt WAL records found before valid ones instead of refusing to start (logged, counted)",
    parse: parseBool,
    boolean: true,
  }),
  setting({
    key: "memtableMb",
    flag: "memtable-mb",
    env: "ALLIDB_MEMTABLE_MB",
    default: "64",
    description: "Memtable size in MiB before it is flushed to an SSTable",
    parse: parseNumber({ min: 1, max: 65_536 }),
  }),
  setting({
    key: "compactionMbPerS",
    flag: "compaction-mb-per-s",
    env: "ALLIDB_COMPACTION_MB_PER_S",
    default: "64",
    description: "Compaction I/O limit in MiB/s (0 = unlimited)",
    parse: parseNumber({ min: 0, max: 1_000_000 }),
  }),
  setting({
    key: "compactionMinThreshold",
    flag: "compaction-min-threshold",
    env: "ALLIDB_COMPACTION_MIN_THRESHOLD",
    default: "4",
    description: "Size-tiered compaction: tables of similar size needed to compact",
    parse: parseNumber({ min: 2, max: 1000, integer: true }),
  }),
  setting({
    key: "compactionMaxThreshold",
    flag: "compaction-max-threshold",
    env: "ALLIDB_COMPACTION_MAX_THRESHOLD",
    default: "32",
    description: "Size-tiered compaction: most tables merged at once",
    parse: parseNumber({ min: 2, max: 1000, integer: true }),
  }),
  setting({
    key: "tombstoneGraceMs",
    flag: "tombstone-grace",
    env: "ALLIDB_TOMBSTONE_GRACE",
    default: "10d",
    description: "How long compaction keeps tombstones before purging them",
    parse: parseDuration({ min: 0, max: 3650 * 86_400_000 }),
  }),
  setting({
    key: "blockCacheMb",
    flag: "block-cache-mb",
    env: "ALLIDB_BLOCK_CACHE_MB",
    default: "64",
    description: "SSTable block cache size in MiB",
    parse: parseNumber({ min: 0, max: 65_536 }),
  }),
  setting({
    key: "metric",
    flag: "metric",
    env: "ALLIDB_METRIC",
    default: "cosine",
    description: "Default vector metric of new tenants: cosine, l2, ip",
    parse: parseEnum<Metric>(["cosine", "l2", "ip"], (s) => s.toLowerCase()),
  }),
  setting({
    key: "hnswM",
    flag: "hnsw-m",
    env: "ALLIDB_HNSW_M",
    default: "16",
    description: "HNSW graph degree M",
    parse: parseNumber({ min: 2, max: 128, integer: true }),
  }),
  setting({
    key: "efConstruction",
    flag: "ef-construction",
    env: "ALLIDB_EF_CONSTRUCTION",
    default: "200",
    description: "HNSW efConstruction",
    parse: parseNumber({ min: 1, max: 10_000, integer: true }),
  }),
  setting({
    key: "efSearch",
    flag: "ef-search",
    env: "ALLIDB_EF_SEARCH",
    default: "64",
    description: "HNSW efSearch (a query's ef is at least its candidate count)",
    parse: parseNumber({ min: 1, max: 100_000, integer: true }),
  }),
  setting({
    key: "snapshotIntervalMs",
    flag: "snapshot-interval",
    env: "ALLIDB_SNAPSHOT_INTERVAL",
    default: "5m",
    description: "How often the index snapshots itself for fast restarts",
    parse: parseDuration({ min: 1000, max: 7 * 86_400_000 }),
  }),
  setting({
    key: "apiKeys",
    flag: "api-keys",
    env: "ALLIDB_API_KEYS",
    default: "",
    description: "API keys bound to tenants: key=tenant,key2=tenant2 (none: loopback clients only, as tenant default)",
    parse: (raw) => Either.mapLeft(ApiConfig.parseApiKeys(raw), (why) => why.replace(/^ALLIDB_API_KEYS /, "")),
  }),
  setting({
    key: "apiKeysFile",
    flag: "api-keys-file",
    env: "ALLIDB_API_KEYS_FILE",
    default: undefined,
    description: "File of API key hashes written by `allidbd keys create` (default: <data-dir>/api-keys when it exists)",
    parse: parseOptionalString,
  }),
  setting({
    key: "maxBodyMb",
    flag: "max-body-mb",
    env: "ALLIDB_MAX_BODY_MB",
    default: "64",
    description: "Largest accepted request body in MiB (413 above)",
    parse: parseNumber({ min: 0.001, max: 4096 }),
  }),
  setting({
    key: "maxBatch",
    flag: "max-batch",
    env: "ALLIDB_MAX_BATCH",
    default: "10000",
    description: "Most entities or edges in one batch request",
    parse: parseNumber({ min: 1, max: 1_000_000, integer: true }),
  }),
  setting({
    key: "requestTimeoutMs",
    flag: "request-timeout",
    env: "ALLIDB_REQUEST_TIMEOUT",
    default: "5s",
    description: "Per-request deadline (504 / DEADLINE_EXCEEDED past it)",
    parse: parseDuration({ min: 1, max: 3_600_000 }),
  }),
  setting({
    key: "rateLimit",
    flag: "rate-limit",
    env: "ALLIDB_RATE_LIMIT",
    default: "0",
    description: "Requests per second per API key (token bucket; 0 = unlimited)",
    parse: parseNumber({ min: 0, max: 10_000_000 }),
  }),
  setting({
    key: "rateBurst",
    flag: "rate-burst",
    env: "ALLIDB_RATE_BURST",
    default: "0",
    description: "Token bucket size per API key (0 = one second of -rate-limit)",
    parse: parseNumber({ min: 0, max: 10_000_000, integer: true }),
  }),
  setting({
    key: "debugRoutes",
    flag: "debug-routes",
    env: "ALLIDB_DEBUG_ROUTES",
    default: "false",
    description: "Serve /debug/sleep (used by the shutdown tests); never in production",
    parse: parseBool,
    boolean: true,
  }),
]

const byFlag = new Map(settings.map((s) => [s.flag, s]))

/** Reads `-flag=value`, `--flag=value`, `-flag value` and bare boolean flags. */
const parseFlags = (argv: ReadonlyArray<string>): Either.Either<Map<Setting, string>, ConfigError> => {
  const given = new Map<Setting, string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const match = /^--?([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg)
    if (match === null) return fail(new ConfigError({ message: `unexpected argument ${JSON.stringify(arg)} (see -help)` }))
    const name = match[1]!
    const s = byFlag.get(name)
    if (s === undefined) return fail(new ConfigError({ message: `unknown flag -${name} (see -help)` }))
    let value = match[2]
    if (value === undefined) {
      const next = argv[i + 1]
      if (s.boolean === true && (next === undefined || next.startsWith("-") || parseBool(next)._tag === "Left")) {
        value = "true"
      } else if (next === undefined) {
        return fail(new ConfigError({ message: `-${name}: missing value` }))
      } else {
        value = next
        i++
      }
    }
    given.set(s, value)
  }
  return ok(given)
}

const resolveSetting = (
  s: Setting,
  flags: Map<Setting, string>,
  env: Readonly<Record<string, string | undefined>>,
): Either.Either<unknown, ConfigError> => {
  const fromFlag = flags.get(s)
  const fromEnv = env[s.env]
  const [raw, source] =
    fromFlag !== undefined ? [fromFlag, `-${s.flag}`] : fromEnv !== undefined ? [fromEnv, s.env] : [s.default, `-${s.flag}`]
  if (raw === undefined) return ok(undefined)
  return Either.mapLeft(s.parse(raw), (why) => new ConfigError({ message: `invalid ${source}: ${why}` }))
}

/** Cross-setting rules, checked after every value parsed. */
const validate = (config: NodeConfig): Either.Either<NodeConfig, ConfigError> => {
  const problem = (message: string) => fail(new ConfigError({ message }))
  if (config.tls) {
    if (config.tlsCert === undefined) return problem("invalid -tls=true: -tls-cert (ALLIDB_TLS_CERT) is required")
    if (config.tlsKey === undefined) return problem("invalid -tls=true: -tls-key (ALLIDB_TLS_KEY) is required")
  }
  if (config.tlsClientAuth === "require" && config.tlsCa === undefined) {
    return problem("invalid -tls-client-auth=require: -tls-ca (ALLIDB_TLS_CA) is required")
  }
  if (config.tlsClientAuth !== "none" && !config.tls) {
    return problem(`invalid -tls-client-auth=${config.tlsClientAuth}: needs -tls=true`)
  }
  if (config.compactionMinThreshold > config.compactionMaxThreshold) {
    return problem("invalid -compaction-min-threshold: must not exceed -compaction-max-threshold")
  }
  return ok(config)
}

/** Flags override environment variables, which override defaults. */
export const load = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
): Either.Either<NodeConfig, ConfigError> =>
  Either.gen(function* () {
    const flags = yield* parseFlags(argv)
    const config: Record<string, unknown> = {}
    for (const s of settings) config[s.key] = yield* resolveSetting(s, flags, env)
    return yield* validate(config as unknown as NodeConfig)
  })

export const formatHostPort = (a: HostPort): string => (a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)

export const helpText = (): string => {
  const lines = [
    "allidbd — the AlliDB server",
    "",
    "Usage:",
    "  allidbd [flags]                     start a node",
    "  allidbd keys create --tenant T      print a new API key for tenant T once; store only its hash",
    "                                      (in -api-keys-file / ALLIDB_API_KEYS_FILE)",
    "",
    "Flags (each also an environment variable; flags override the environment):",
  ]
  for (const s of settings) {
    const def = s.default === undefined || s.default === "" ? "" : ` (default ${s.default})`
    const flag = `  -${s.flag}=${s.boolean === true ? "true|false" : "VALUE"}`
    lines.push(`${flag.padEnd(40)}${s.env}`)
    lines.push(`      ${s.description}${def}`)
  }
  return lines.join("\n")
}
