import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Config from "../src/Config.js"

const load = (argv: ReadonlyArray<string>, env: Record<string, string> = {}) => Config.load(argv, env)
const errorOf = (r: ReturnType<typeof load>): string => (Either.isLeft(r) ? r.left.message : "no error")

describe("Config", () => {
  it("has the seed's defaults", () => {
    const config = Either.getOrThrow(load([]))
    assert.strictEqual(config.nodeId, "node1")
    assert.deepStrictEqual(config.grpcAddr, { host: "0.0.0.0", port: 50051 })
    assert.deepStrictEqual(config.httpAddr, { host: "0.0.0.0", port: 8080 })
    assert.deepStrictEqual(config.gossipAddr, { host: "0.0.0.0", port: 7946 })
    assert.strictEqual(config.dataDir, "./data")
    assert.strictEqual(config.logLevel, "INFO")
    assert.strictEqual(config.tls, false)
    assert.strictEqual(config.failHard, true)
    assert.strictEqual(config.shutdownTimeoutMs, 10_000)
    assert.strictEqual(config.maxBodyMb, 64)
    assert.strictEqual(config.requestTimeoutMs, 5_000)
  })

  it("reads every ALLIDB_* variable and lets flags override them", () => {
    const env = {
      ALLIDB_NODE_ID: "n7",
      ALLIDB_HTTP_ADDR: "127.0.0.1:9000",
      ALLIDB_LOG_LEVEL: "debug",
      ALLIDB_FAIL_HARD: "false",
      ALLIDB_DATA_DIR: "/var/lib/allidb",
    }
    const fromEnv = Either.getOrThrow(load([], env))
    assert.strictEqual(fromEnv.nodeId, "n7")
    assert.deepStrictEqual(fromEnv.httpAddr, { host: "127.0.0.1", port: 9000 })
    assert.strictEqual(fromEnv.logLevel, "DEBUG")
    assert.strictEqual(fromEnv.failHard, false)
    const flagged = Either.getOrThrow(load(["-node-id=n8", "--http-addr", "[::1]:0", "-fail-hard"], env))
    assert.strictEqual(flagged.nodeId, "n8")
    assert.deepStrictEqual(flagged.httpAddr, { host: "::1", port: 0 })
    assert.strictEqual(flagged.failHard, true)
    assert.strictEqual(flagged.dataDir, "/var/lib/allidb")
  })

  it("names the setting and the rule in one line for every bad value", () => {
    assert.strictEqual(errorOf(load(["-nope=1"])), "unknown flag -nope (see -help)")
    assert.strictEqual(errorOf(load(["-grpc-addr=0.0.0.0:70000"])), "invalid -grpc-addr: port 70000 is out of range 0..65535")
    assert.strictEqual(errorOf(load([], { ALLIDB_HTTP_ADDR: "localhost" })), 'invalid ALLIDB_HTTP_ADDR: expected host:port, got "localhost"')
    assert.match(errorOf(load(["-log-level=loud"])), /^invalid -log-level: expected one of DEBUG, INFO, WARN, ERROR/)
    assert.strictEqual(errorOf(load(["-tls=true"])), "invalid -tls=true: -tls-cert (ALLIDB_TLS_CERT) is required")
    assert.strictEqual(
      errorOf(load(["-tls", "-tls-cert=/c.pem"])),
      "invalid -tls=true: -tls-key (ALLIDB_TLS_KEY) is required",
    )
    assert.match(errorOf(load(["-fail-hard=maybe"])), /^invalid -fail-hard: expected true or false/)
    assert.match(errorOf(load(["-shutdown-timeout=soon"])), /^invalid -shutdown-timeout: expected a duration/)
    for (const message of [errorOf(load(["-nope"])), errorOf(load(["-http-addr=x"]))]) {
      assert.notInclude(message, "\n")
    }
  })

  it("parses durations", () => {
    assert.strictEqual(Either.getOrThrow(load(["-shutdown-timeout=1500ms"])).shutdownTimeoutMs, 1500)
    assert.strictEqual(Either.getOrThrow(load(["-shutdown-timeout=2m"])).shutdownTimeoutMs, 120_000)
    assert.strictEqual(Either.getOrThrow(load(["-tombstone-grace=1d"])).tombstoneGraceMs, 86_400_000)
  })

  it("lists every setting in -help with its variable", () => {
    const help = Config.helpText()
    for (const s of Config.settings) {
      assert.include(help, `-${s.flag}=`)
      assert.include(help, s.env)
    }
  })
})
