import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { DEFAULT_TENANT, tenantId } from "@allidb/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as TestClock from "effect/TestClock"
import * as ApiConfig from "../src/ApiConfig.js"
import * as ApiKeys from "../src/ApiKeys.js"
import * as Auth from "../src/Auth.js"

const tmpFile = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "allidb-auth-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
).pipe(Effect.map((dir) => path.join(dir, "keys.jsonl")))

const withAuth = (config: Partial<ApiConfig.ApiConfigShape>) =>
  Effect.provide(Auth.layer.pipe(Layer.provide(ApiConfig.layer(config)), Layer.orDie))

const expectUnauthenticated = <A, E>(exit: Exit.Exit<A, E>) => {
  assert.isTrue(Exit.isFailure(exit))
  if (Exit.isFailure(exit)) assert.include(JSON.stringify(exit.cause), "Unauthenticated")
}

describe("Auth", () => {
  it.effect("maps configured keys to their tenants and refuses others", () =>
    Effect.gen(function* () {
      const auth = yield* Auth.Auth
      assert.strictEqual(yield* auth.authenticate("key-alpha-1", "10.0.0.1"), "alpha")
      assert.strictEqual(yield* auth.authenticate("key-beta-22", "127.0.0.1"), "beta")
      expectUnauthenticated(yield* Effect.exit(auth.authenticate("key-alpha-2", "127.0.0.1")))
      expectUnauthenticated(yield* Effect.exit(auth.authenticate(undefined, "127.0.0.1")))
      expectUnauthenticated(yield* Effect.exit(auth.authenticate("", "127.0.0.1")))
      assert.isFalse(yield* auth.keyless)
    }).pipe(
      withAuth({
        apiKeys: [
          { key: "key-alpha-1", tenant: tenantId("alpha") },
          { key: "key-beta-22", tenant: tenantId("beta") },
        ],
      }),
    ),
  )

  it.effect("with no keys accepts loopback only, as the default tenant, and warns once", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => lines.push(String(message)))
      const auth = yield* Effect.provide(
        Auth.Auth,
        Auth.layer.pipe(Layer.provide(ApiConfig.layer({})), Layer.provide(Logger.replace(Logger.defaultLogger, logger))),
      )
      assert.strictEqual(yield* auth.authenticate(undefined, "127.0.0.1"), DEFAULT_TENANT)
      assert.strictEqual(yield* auth.authenticate(undefined, "::1"), DEFAULT_TENANT)
      assert.strictEqual(yield* auth.authenticate("anything", "::ffff:127.0.0.1"), DEFAULT_TENANT)
      expectUnauthenticated(yield* Effect.exit(auth.authenticate(undefined, "192.168.1.4")))
      expectUnauthenticated(yield* Effect.exit(auth.authenticate(undefined, undefined)))
      expectUnauthenticated(yield* Effect.exit(auth.authenticate(undefined, "::ffff:10.1.1.1")))
      assert.isTrue(yield* auth.keyless)
      assert.strictEqual(lines.filter((l) => l.includes("loopback")).length, 1)
    }),
  )

  it.effect("refuses a body naming another tenant", () =>
    Effect.gen(function* () {
      const auth = yield* Auth.Auth
      yield* auth.authorizeTenant(tenantId("alpha"), undefined)
      yield* auth.authorizeTenant(tenantId("alpha"), "alpha")
      const exit = yield* Effect.exit(auth.authorizeTenant(tenantId("alpha"), "beta"))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(JSON.stringify(exit), "PermissionDenied")
    }).pipe(withAuth({})),
  )

  it.scoped("reads hashed keys from the keys file and picks up new keys", () =>
    Effect.gen(function* () {
      const file = yield* tmpFile
      const first = yield* ApiKeys.createKey(file, "alpha")
      const text = yield* Effect.promise(() => fs.readFile(file, "utf8"))
      assert.isFalse(text.includes(first), "the key itself is never stored")
      assert.include(text, ApiKeys.hashKey(first))
      const mode = (yield* Effect.promise(() => fs.stat(file))).mode & 0o777
      assert.strictEqual(mode, 0o600)

      const auth = yield* Effect.provide(
        Auth.Auth,
        Auth.layer.pipe(Layer.provide(ApiConfig.layer({ apiKeysFile: file }))),
      )
      assert.strictEqual(yield* auth.authenticate(first, "10.0.0.9"), "alpha")
      const second = yield* ApiKeys.createKey(file, "beta")
      assert.notStrictEqual(first, second)
      // re-reads are rate-limited to once a second (TestClock)
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* auth.authenticate(second, "10.0.0.9"), "beta")
    }),
  )

  it.scoped("a malformed keys file is a start error naming the line", () =>
    Effect.gen(function* () {
      const file = yield* tmpFile
      yield* Effect.promise(() => fs.writeFile(file, `# comment\n\n{"hash":"md5:00","tenant":"a","created":"x"}\n`))
      const exit = yield* Effect.exit(
        Effect.provide(Auth.Auth, Auth.layer.pipe(Layer.provide(ApiConfig.layer({ apiKeysFile: file })))),
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(JSON.stringify(exit), "line 3")
      const bad = yield* Effect.exit(ApiKeys.createKey(file, "alpha"))
      assert.isTrue(Exit.isFailure(bad))
    }),
  )

  it("recognises loopback addresses", () => {
    for (const a of ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"]) assert.isTrue(Auth.isLoopback(a), a)
    for (const a of [undefined, "", "10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "fe80::1", "127.0.0.1.evil"])
      assert.isFalse(Auth.isLoopback(a), String(a))
  })

  it("parses ALLIDB_API_KEYS", () => {
    const parsed = ApiConfig.parseApiKeys(" k1=alpha , k2==beta,")
    assert.deepStrictEqual(Either.getOrThrow(parsed), [
      { key: "k1", tenant: tenantId("alpha") },
      { key: "k2=", tenant: tenantId("beta") },
    ])
    assert.isTrue(Either.isLeft(ApiConfig.parseApiKeys("justakey")))
    assert.isTrue(Either.isLeft(ApiConfig.parseApiKeys("k=")))
    assert.isTrue(Either.isLeft(ApiConfig.parseApiKeys("k=a,k=b")))
    const left = ApiConfig.parseApiKeys("secret1=al\u0001pha")
    assert.isTrue(Either.isLeft(left))
    if (Either.isLeft(left)) assert.notInclude(left.left, "secret1")
  })
})
