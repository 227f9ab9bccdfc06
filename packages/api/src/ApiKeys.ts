/**
 * The API keys file (ALLIDB_API_KEYS_FILE): JSON lines, one key per line,
 *
 *   {"hash":"sha256:<64 hex>","tenant":"acme","created":"2025-01-01T00:00:00.000Z"}
 *
 * Only SHA-256 hashes are stored; a key is shown once, by `createKey`, and
 * never again. Blank lines and lines starting with `#` are ignored.
 *
 * Plain node:fs (not the storage Disk service): a small text file read at
 * start and by the `keys create` command, with no durability protocol.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { TenantId } from "@allidb/core"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const HASH_PREFIX = "sha256:"

export const KeyHash = Schema.String.pipe(
  Schema.pattern(/^sha256:[0-9a-f]{64}$/, { message: () => "hash must be sha256:<64 lowercase hex digits>" }),
)

export const KeyRecord = Schema.Struct({
  hash: KeyHash,
  tenant: TenantId,
  created: Schema.String,
})
export type KeyRecord = typeof KeyRecord.Type

/** The keys file could not be read or written, or a line is malformed. Never leaves the process. */
export class KeysFileError extends Data.TaggedError("KeysFileError")<{
  readonly file: string
  readonly reason: string
}> {
  override get message(): string {
    return `API keys file ${this.file}: ${this.reason}`
  }
}

/** `sha256:<hex>` of a key. */
export const hashKey = (key: string): string => HASH_PREFIX + createHash("sha256").update(key, "utf8").digest("hex")

/** The raw 32 digest bytes of a stored `sha256:<hex>` hash. */
export const hashBytes = (hash: string): Buffer => Buffer.from(hash.slice(HASH_PREFIX.length), "hex")

/**
 * A new key: 32 bytes from the OS CSPRNG, base64url. Effect's seeded Random
 * is for reproducible tests and must not be used for secrets.
 */
export const generateKey = (): string => `allidb_${randomBytes(32).toString("base64url")}`

const decodeRecord = Schema.decodeUnknownEither(Schema.parseJson(KeyRecord))

/** Parses the file's text; the first bad line is an error naming its number. */
export const parse = (file: string, text: string): Either.Either<ReadonlyArray<KeyRecord>, KeysFileError> => {
  const records: Array<KeyRecord> = []
  const lines = text.split("\n")
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const decoded = decodeRecord(line)
    if (Either.isLeft(decoded)) {
      return Either.left(new KeysFileError({ file, reason: `line ${index + 1} is not a valid key record` }))
    }
    records.push(decoded.right)
  }
  return Either.right(records)
}

export const formatRecord = (record: KeyRecord): string =>
  `${JSON.stringify({ hash: record.hash, tenant: record.tenant, created: record.created })}\n`

/** Reads the keys file; a missing file holds no keys. */
export const read = (file: string): Effect.Effect<ReadonlyArray<KeyRecord>, KeysFileError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (cause) => cause,
  }).pipe(
    Effect.catchIf(
      (cause) => (cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT",
      () => Effect.succeed(""),
    ),
    Effect.mapError((cause) => new KeysFileError({ file, reason: `cannot read: ${String(cause)}` })),
    Effect.flatMap((text) => parse(file, text)),
  )

/**
 * Creates a key for `tenant`, appends its hash to `file` (created with mode
 * 0600 if absent) and returns the key — the only time it exists in clear.
 */
export const createKey = (file: string, tenant: string): Effect.Effect<string, KeysFileError> =>
  Effect.gen(function* () {
    const decodedTenant = Schema.decodeUnknownEither(TenantId)(tenant)
    if (Either.isLeft(decodedTenant)) {
      return yield* new KeysFileError({ file, reason: `invalid tenant id ${JSON.stringify(tenant)}` })
    }
    // Refuse to append to a damaged file: the server would refuse to start on it.
    yield* read(file)
    const key = generateKey()
    const created = new Date(yield* Clock.currentTimeMillis).toISOString()
    const line = formatRecord({ hash: hashKey(key), tenant: decodedTenant.right, created })
    yield* Effect.tryPromise({
      try: () => fs.appendFile(file, line, { encoding: "utf8", mode: 0o600 }),
      catch: (cause) => new KeysFileError({ file, reason: `cannot write: ${String(cause)}` }),
    })
    return key
  })
