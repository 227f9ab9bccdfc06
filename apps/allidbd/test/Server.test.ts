import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Allidbd from "./support/Allidbd.js"

describe("allidbd process", () => {
  it.scopedLive("serves /health at once and /ready once recovered; logs JSON lines", () =>
    Effect.gen(function* () {
      const node = yield* Allidbd.start()
      const health = yield* Effect.promise(() => fetch(`${node.httpUrl}/health`))
      assert.strictEqual(health.status, 200)
      const body = (yield* Effect.promise(() => health.json())) as Record<string, unknown>
      assert.strictEqual(body.healthy, true)
      assert.strictEqual(body.status, "SERVING")
      assert.isNumber(body.timestamp_nanos)
      assert.isString(body.version)
      const ready = yield* Effect.promise(() => fetch(`${node.httpUrl}/ready`))
      assert.strictEqual(ready.status, 200)
      for (const line of node.lines()) {
        const record = JSON.parse(line) as Record<string, unknown>
        assert.isString(record.time)
        assert.isString(record.level)
        assert.strictEqual(record.node, "node1")
        assert.isString(record.message)
      }
      assert.isTrue(fs.existsSync(path.join(node.dataDir, "LOCK")))
      const code = yield* node.stop("SIGTERM")
      assert.strictEqual(code, 0)
      assert.isFalse(fs.existsSync(path.join(node.dataDir, "LOCK")), "the lock is released on shutdown")
    }))

  it.live("honours the log level", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(() => Allidbd.freePort())
      const dataDir = Allidbd.makeTempDir()
      const child = spawn(process.execPath, [Allidbd.MAIN, `-http-addr=127.0.0.1:${port}`, "-grpc-addr=127.0.0.1:0", `-data-dir=${dataDir}`, "-log-level=WARN"], { stdio: ["ignore", "pipe", "inherit"] })
      let stdout = ""
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString()
      })
      yield* Effect.promise(() => Allidbd.waitHttp(`http://127.0.0.1:${port}/ready`))
      child.kill("SIGTERM")
      const code = yield* Effect.promise(() => new Promise((resolve) => child.once("exit", resolve)))
      assert.strictEqual(code, 0)
      const levels = stdout.split("\n").filter((l) => l !== "").map((l) => (JSON.parse(l) as { level: string }).level)
      assert.deepStrictEqual(levels.filter((l) => l === "INFO" || l === "DEBUG"), [], "nothing below WARN is logged")
      fs.rmSync(dataDir, { recursive: true, force: true })
    }))

  it.live("refuses each bad setting with exit code 2 and one line naming it", () =>
    Effect.gen(function* () {
      const dataDir = Allidbd.makeTempDir()
      const cases: ReadonlyArray<[ReadonlyArray<string>, Record<string, string>, RegExp]> = [
        [["-no-such-flag=1"], {}, /unknown flag -no-such-flag/],
        [["-http-addr=127.0.0.1:65536"], {}, /-http-addr: port 65536 is out of range/],
        [[], { ALLIDB_GRPC_ADDR: "127.0.0.1:-1" }, /ALLIDB_GRPC_ADDR/],
        [["-log-level=chatty"], {}, /-log-level/],
        [["-tls=true"], {}, /-tls-cert/],
      ]
      for (const [args, env, pattern] of cases) {
        const result = yield* Allidbd.runToExit([`-data-dir=${dataDir}`, "-http-addr=127.0.0.1:0", ...args].filter((a, i, all) => !(a.startsWith("-http-addr") && all.slice(i + 1).some((b) => b.startsWith("-http-addr")))), env)
        assert.strictEqual(result.code, 2, `exit code for ${args.join(" ")} ${JSON.stringify(env)}: ${result.stderr}`)
        const lines = result.stderr.trim().split("\n")
        assert.strictEqual(lines.length, 1, `one line for ${args.join(" ")}: ${result.stderr}`)
        assert.match(lines[0]!, pattern)
        assert.notMatch(result.stderr, /\bat .*\.js:\d+/, "no stack trace")
      }
      fs.rmSync(dataDir, { recursive: true, force: true })
    }))

  it.live("-help lists every flag and exits 0", () =>
    Effect.gen(function* () {
      const result = yield* Allidbd.runToExit(["-help"])
      assert.strictEqual(result.code, 0)
      for (const flag of ["-node-id", "-grpc-addr", "-http-addr", "-data-dir", "-log-level", "-tls=", "-tls-cert", "-tls-key", "-fail-hard", "-gossip-addr"]) {
        assert.include(result.stdout, flag)
      }
    }))

  it.scopedLive("refuses a second node on the same data dir", () =>
    Effect.gen(function* () {
      const first = yield* Allidbd.start()
      const second = yield* Allidbd.runToExit([`-data-dir=${first.dataDir}`, "-http-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0"])
      assert.strictEqual(second.code, 2)
      assert.match(second.stderr, /data dir .* is in use by another allidbd \(pid \d+\)/)
      const health = yield* Effect.promise(() => fetch(`${first.httpUrl}/health`))
      assert.strictEqual(health.status, 200, "the first node is unaffected")
    }))

  it.scopedLive("takes over a stale lock left by a killed node", () =>
    Effect.gen(function* () {
      const dataDir = Allidbd.makeTempDir()
      const first = yield* Allidbd.start({ dataDir })
      yield* first.stop("SIGKILL")
      assert.isTrue(fs.existsSync(path.join(dataDir, "LOCK")))
      const second = yield* Allidbd.start({ dataDir })
      const health = yield* Effect.promise(() => fetch(`${second.httpUrl}/health`))
      assert.strictEqual(health.status, 200)
      yield* second.stop("SIGTERM")
      fs.rmSync(dataDir, { recursive: true, force: true })
    }))

  it.scopedLive("SIGTERM during a slow request lets it finish, refuses new connections, exits 0", () =>
    Effect.gen(function* () {
      const node = yield* Allidbd.start({ args: ["-debug-routes=true", "-shutdown-timeout=10s"] })
      const slow = fetch(`${node.httpUrl}/debug/sleep?ms=1500`).then(async (r) => ({ status: r.status, body: await r.json() }))
      yield* Effect.sleep("300 millis")
      const exit = node.stop("SIGTERM").pipe(Effect.runPromise)
      yield* Effect.sleep("300 millis")
      const refused = yield* Effect.promise(() =>
        fetch(`${node.httpUrl}/health`).then(
          () => false,
          () => true,
        ),
      )
      assert.isTrue(refused, "no new connections while draining")
      const answer = yield* Effect.promise(() => slow)
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(answer.body, { slept_ms: 1500 })
      assert.strictEqual(yield* Effect.promise(() => exit), 0)
    }))

  it.scopedLive("a request that outlives the shutdown deadline is cut and the node still exits 0", () =>
    Effect.gen(function* () {
      const node = yield* Allidbd.start({ args: ["-debug-routes=true", "-shutdown-timeout=300ms"] })
      const slow = fetch(`${node.httpUrl}/debug/sleep?ms=20000`).then(
        (r) => r.status,
        () => "cut" as const,
      )
      yield* Effect.sleep("200 millis")
      const started = Date.now()
      const code = yield* node.stop("SIGTERM")
      assert.strictEqual(code, 0)
      assert.isBelow(Date.now() - started, 5_000)
      assert.strictEqual(yield* Effect.promise(() => slow), "cut")
    }))
})
