import { execFileSync } from "node:child_process"
import { X509Certificate } from "node:crypto"
import * as Fs from "node:fs"
import * as Https from "node:https"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeTls from "node:tls"
import { fileURLToPath } from "node:url"
import * as Grpc from "@grpc/grpc-js"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Tls from "../src/Tls.js"

const genCerts = fileURLToPath(new URL("../../../scripts/gen-certs", import.meta.url))
let root = ""
let a = ""
let b = ""
const pem = (dir: string, name: string) => Path.join(dir, name)
const read = (dir: string, name: string) => Fs.readFileSync(pem(dir, name))

beforeAll(() => {
  root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-tls-"))
  a = Path.join(root, "a")
  b = Path.join(root, "b")
  execFileSync(genCerts, [a], { stdio: "pipe" })
  execFileSync(genCerts, [b], { stdio: "pipe" })
})
afterAll(() => Fs.rmSync(root, { recursive: true, force: true }))

const settings = (overrides: Partial<Tls.Settings> = {}): Tls.Settings => ({
  enabled: true,
  certFile: pem(a, "server.pem"),
  keyFile: pem(a, "server-key.pem"),
  caFile: pem(a, "ca.pem"),
  clientAuth: "require",
  ...overrides,
})

interface Reply {
  readonly status: number
  readonly body: string
  readonly fingerprint: string
  readonly reusedSocket: boolean
  readonly localPort: number
}

/** One HTTPS GET; fails on any TLS or socket error. */
const get = (port: number, options: Https.RequestOptions = {}) =>
  Effect.async<Reply, Error>((resume) => {
    const req = Https.request({ host: "127.0.0.1", port, path: "/", method: "GET", timeout: 5000, ...options }, (res) => {
      const socket = res.socket as NodeTls.TLSSocket
      const fingerprint = socket.getPeerCertificate().fingerprint256
      const localPort = socket.localPort ?? 0
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        body += chunk
      })
      res.on("end", () =>
        resume(
          Effect.succeed({ status: res.statusCode ?? 0, body, fingerprint, reusedSocket: req.reusedSocket, localPort }),
        ),
      )
    })
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", (error) => resume(Effect.fail(error)))
    req.end()
  })

/** Listens on 127.0.0.1:0 with a server made by the Tls service; answers "ok <authorized>". */
const serveHttps = (tls: Tls.TlsShape) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; close: () => void }>((resume) => {
      const server = tls.createHttpServer()
      server.on("request", (req, res) => {
        res.end(`ok ${Tls.peerAuthorized(req.socket)}`)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            port: (server.address() as AddressInfo).port,
            close: () => {
              server.closeAllConnections()
              server.close()
            },
          }),
        ),
      )
    }),
    ({ close }) => Effect.sync(close),
  )

const fingerprintOf = (dir: string, name: string) => new X509Certificate(read(dir, name))

describe("Tls.load", () => {
  // Live clock: certificate validity is checked against Clock, and the TestClock starts at 1970.
  it.live("accepts a valid set", () =>
    Effect.gen(function* () {
      const material = yield* Tls.load(settings())
      assert.include(material.subject, "localhost")
      assert.isTrue(material.notAfter.getTime() > Date.now())
    }),
  )

  it.live("refuses unusable material with one line naming the setting", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[Partial<Tls.Settings>, string, RegExp]> = [
        [{ certFile: "/nonexistent/server.pem" }, "tls-cert (ALLIDB_TLS_CERT)", /cannot read \/nonexistent\/server\.pem/],
        [{ keyFile: pem(a, "missing-key.pem") }, "tls-key (ALLIDB_TLS_KEY)", /cannot read/],
        [{ caFile: pem(a, "nope.pem") }, "tls-ca (ALLIDB_TLS_CA)", /cannot read/],
        [{ keyFile: pem(a, "client-key.pem") }, "tls-key (ALLIDB_TLS_KEY)", /does not match the certificate/],
        [{ keyFile: pem(a, "ca.pem") }, "tls-key (ALLIDB_TLS_KEY)", /not a usable PEM private key/],
        [{ certFile: pem(a, "server-key.pem") }, "tls-cert (ALLIDB_TLS_CERT)", /holds no PEM certificate/],
        [
          { certFile: pem(a, "expired.pem"), keyFile: pem(a, "expired-key.pem") },
          "tls-cert (ALLIDB_TLS_CERT)",
          /expired on 2020-01-01T00:00:00\.000Z/,
        ],
        [
          { certFile: pem(a, "future.pem"), keyFile: pem(a, "future-key.pem") },
          "tls-cert (ALLIDB_TLS_CERT)",
          /not valid before 2099-01-01/,
        ],
        [{ caFile: pem(a, "server.pem") }, "tls-ca (ALLIDB_TLS_CA)", /is not a CA certificate/],
        [{ caFile: pem(a, "server-key.pem") }, "tls-ca (ALLIDB_TLS_CA)", /holds no PEM certificate/],
        [{ caFile: undefined }, "tls-ca (ALLIDB_TLS_CA)", /required when tls-client-auth .* is require/],
        [{ caFile: "", clientAuth: "request" }, "tls-ca (ALLIDB_TLS_CA)", /required when/],
        [{ certFile: "" }, "tls-cert (ALLIDB_TLS_CERT)", /required when TLS is enabled/],
        [
          { clientAuth: "optional" as Tls.ClientAuth },
          "tls-client-auth (ALLIDB_TLS_CLIENT_AUTH)",
          /must be one of none, request, require/,
        ],
      ]
      for (const [overrides, setting, reason] of cases) {
        const error = yield* Effect.flip(Tls.load(settings(overrides)))
        assert.strictEqual(error._tag, "TlsConfigError")
        assert.strictEqual(error.setting, setting, error.message)
        assert.match(error.reason, reason)
        assert.isTrue(error.message.startsWith(`${setting}: `))
        assert.notInclude(error.message, "\n")
      }
    }),
  )

  it.live("loadClient checks the client pair", () =>
    Effect.gen(function* () {
      const ok = yield* Tls.loadClient({ caFile: pem(a, "ca.pem") })
      assert.isUndefined(ok.cert)
      assert.deepStrictEqual(Object.keys(Tls.clientConnectionOptions(ok)), ["ca"])
      const mismatch = yield* Effect.flip(
        Tls.loadClient({ certFile: pem(a, "client.pem"), keyFile: pem(a, "other-client-key.pem") }),
      )
      assert.match(mismatch.message, /^tls-key \(ALLIDB_TLS_KEY\): .* does not match/)
      const half = yield* Effect.flip(Tls.loadClient({ certFile: pem(a, "client.pem") }))
      assert.match(half.message, /needs both/)
    }),
  )

  it("validate checks validity against the given time", () => {
    const files = { cert: read(a, "server.pem"), key: read(a, "server-key.pem"), ca: undefined }
    const s = settings({ caFile: undefined, clientAuth: "none" })
    assert.isTrue(Either.isRight(Tls.validate(s, files, new Date())))
    const later = Tls.validate(s, files, new Date(Date.now() + 5 * 365 * 86_400_000))
    assert.isTrue(Either.isLeft(later) && /expired on/.test(later.left.reason))
  })
})

describe("Tls over https", () => {
  it.scopedLive("under require: a CA-signed client works, no cert or another CA's cert is refused", () =>
    Effect.gen(function* () {
      const tls = yield* Tls.make(settings(), { signal: null })
      const { port } = yield* serveHttps(tls)
      const ca = read(a, "ca.pem")
      const ok = yield* get(port, { ca, cert: read(a, "client.pem"), key: read(a, "client-key.pem"), agent: false })
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(ok.body, "ok true")
      const none = yield* Effect.either(get(port, { ca, agent: false }))
      assert.isTrue(Either.isLeft(none), "a client without a certificate must be refused")
      const other = yield* Effect.either(
        get(port, { ca, cert: read(a, "other-client.pem"), key: read(a, "other-client-key.pem"), agent: false }),
      )
      assert.isTrue(Either.isLeft(other), "a client certificate from another CA must be refused")
      // The server is checked by the client too: a client trusting only the other CA refuses it.
      const untrusted = yield* Effect.either(get(port, { ca: read(a, "other-ca.pem"), agent: false }))
      assert.isTrue(Either.isLeft(untrusted))
    }),
  )

  it.scopedLive("under request: clients without a certificate connect, unauthorized", () =>
    Effect.gen(function* () {
      const tls = yield* Tls.make(settings({ clientAuth: "request" }), { signal: null })
      const { port } = yield* serveHttps(tls)
      const reply = yield* get(port, { ca: read(a, "ca.pem"), agent: false })
      assert.strictEqual(reply.body, "ok false")
    }),
  )

  it.scopedLive("SIGHUP swaps the certificate without dropping an open keep-alive connection", () =>
    Effect.gen(function* () {
      const dir = Path.join(root, "reload")
      Fs.mkdirSync(dir, { recursive: true })
      Fs.copyFileSync(pem(a, "server.pem"), pem(dir, "server.pem"))
      Fs.copyFileSync(pem(a, "server-key.pem"), pem(dir, "server-key.pem"))
      const tls = yield* Tls.make(
        settings({ certFile: pem(dir, "server.pem"), keyFile: pem(dir, "server-key.pem"), clientAuth: "none" }),
      )
      const { port } = yield* serveHttps(tls)
      const ca = [read(a, "ca.pem"), read(b, "ca.pem")]
      const agent = new Https.Agent({ keepAlive: true, maxSockets: 1, ca })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const fingerprintA = fingerprintOf(a, "server.pem").fingerprint256
      const fingerprintB = fingerprintOf(b, "server.pem").fingerprint256

      const first = yield* get(port, { agent })
      assert.strictEqual(first.fingerprint, fingerprintA)

      Fs.copyFileSync(pem(b, "server.pem"), pem(dir, "server.pem"))
      Fs.copyFileSync(pem(b, "server-key.pem"), pem(dir, "server-key.pem"))
      process.kill(process.pid, "SIGHUP")
      const waitFor = (fingerprint: string) =>
        tls.current.pipe(
          Effect.flatMap((m) =>
            Option.exists(m, (x) => x.fingerprint256 === fingerprint) ? Effect.void : Effect.fail("not yet"),
          ),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo(Duration.seconds(5)))),
        )
      yield* waitFor(fingerprintB)

      // The open connection survives and still speaks the session it negotiated.
      const second = yield* get(port, { agent })
      assert.isTrue(second.reusedSocket)
      assert.strictEqual(second.localPort, first.localPort)
      assert.strictEqual(second.status, 200)
      assert.strictEqual(second.fingerprint, fingerprintA)
      // A new connection gets the new certificate.
      const fresh = yield* get(port, { ca, agent: false })
      assert.strictEqual(fresh.fingerprint, fingerprintB)

      // A bad file on reload keeps the current material.
      Fs.writeFileSync(pem(dir, "server.pem"), "not a certificate")
      yield* Effect.flip(tls.reload)
      const still = yield* get(port, { ca, agent: false })
      assert.strictEqual(still.fingerprint, fingerprintB)
    }).pipe(Effect.provide(Logger.remove(Logger.defaultLogger))),
  )

  it.scopedLive("disabled TLS serves plain HTTP and insecure gRPC credentials", () =>
    Effect.gen(function* () {
      const tls = yield* Tls.make(settings({ enabled: false, certFile: "" }), { signal: null })
      assert.isFalse(tls.enabled)
      assert.isFalse(tls.grpcCredentials._isSecure())
      assert.isFalse(tls.createHttpServer() instanceof NodeTls.Server)
      assert.isTrue(Option.isNone(yield* tls.current))
    }),
  )
})

// ---------------------------------------------------------------------------------------------
// gRPC with a hand-written echo service (no proto needed).

const echoPath = "/allidb.test.Echo/Echo"
const identity = (buffer: Buffer) => buffer
const echoService: Grpc.ServiceDefinition = {
  Echo: {
    path: echoPath,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: "echo",
  },
}

const serveGrpc = (credentials: Grpc.ServerCredentials) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; server: Grpc.Server }, Error>((resume) => {
      const server = new Grpc.Server()
      server.addService(echoService, {
        Echo: (call: Grpc.ServerUnaryCall<Buffer, Buffer>, callback: Grpc.sendUnaryData<Buffer>) =>
          callback(null, call.request),
      })
      server.bindAsync("127.0.0.1:0", credentials, (error, port) =>
        resume(error === null ? Effect.succeed({ port, server }) : Effect.fail(error)),
      )
    }),
    ({ server }) => Effect.sync(() => server.forceShutdown()),
  )

const echo = (port: number, credentials: Grpc.ChannelCredentials) =>
  Effect.acquireUseRelease(
    // The certificate names localhost; an IP as TLS server name is deprecated in Node.
    Effect.sync(() => new Grpc.Client(`127.0.0.1:${port}`, credentials, { "grpc.ssl_target_name_override": "localhost" })),
    (client) =>
      Effect.async<string, Grpc.ServiceError>((resume) => {
        client.makeUnaryRequest(
          echoPath,
          identity,
          identity,
          Buffer.from("ping"),
          new Grpc.Metadata(),
          { deadline: Date.now() + 3000 },
          (error, value) =>
            resume(error !== null || value === undefined ? Effect.fail(error as Grpc.ServiceError) : Effect.succeed(value.toString())),
        )
      }),
    (client) => Effect.sync(() => client.close()),
  )

/** The certificate a TLS handshake with the gRPC port presents (ALPN h2, like a gRPC client). */
const peerFingerprint = (port: number, ca: ReadonlyArray<Buffer>) =>
  Effect.async<string, Error>((resume) => {
    const socket = NodeTls.connect({
      host: "127.0.0.1",
      port,
      ca: [...ca],
      cert: read(a, "client.pem"),
      key: read(a, "client-key.pem"),
      ALPNProtocols: ["h2"],
      servername: "localhost",
    })
    socket.once("secureConnect", () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256
      socket.destroy()
      resume(Effect.succeed(fingerprint))
    })
    socket.once("error", (error) => resume(Effect.fail(error)))
  })

describe("Tls over gRPC", () => {
  it.scopedLive("mTLS refuses clients without a CA-signed certificate and reload swaps the certificate", () =>
    Effect.gen(function* () {
      const dir = Path.join(root, "grpc-reload")
      Fs.mkdirSync(dir, { recursive: true })
      Fs.copyFileSync(pem(a, "server.pem"), pem(dir, "server.pem"))
      Fs.copyFileSync(pem(a, "server-key.pem"), pem(dir, "server-key.pem"))
      const tls = yield* Tls.make(
        settings({ certFile: pem(dir, "server.pem"), keyFile: pem(dir, "server-key.pem") }),
        { signal: null },
      )
      const { port } = yield* serveGrpc(tls.grpcCredentials)
      const caA = read(a, "ca.pem")
      const client = yield* Tls.loadClient({
        caFile: pem(a, "ca.pem"),
        certFile: pem(a, "client.pem"),
        keyFile: pem(a, "client-key.pem"),
      })
      assert.strictEqual(yield* echo(port, Tls.grpcClientCredentials(client)), "ping")
      const none = yield* Effect.either(echo(port, Grpc.credentials.createSsl(caA)))
      assert.isTrue(Either.isLeft(none), "a gRPC client without a certificate must be refused")
      const other = yield* Effect.either(
        echo(port, Grpc.credentials.createSsl(caA, read(a, "other-client-key.pem"), read(a, "other-client.pem"))),
      )
      assert.isTrue(Either.isLeft(other), "a gRPC client certificate from another CA must be refused")

      const caB = read(b, "ca.pem")
      assert.strictEqual(yield* peerFingerprint(port, [caA, caB]), fingerprintOf(a, "server.pem").fingerprint256)
      Fs.copyFileSync(pem(b, "server.pem"), pem(dir, "server.pem"))
      Fs.copyFileSync(pem(b, "server-key.pem"), pem(dir, "server-key.pem"))
      yield* tls.reload
      assert.strictEqual(yield* peerFingerprint(port, [caA, caB]), fingerprintOf(b, "server.pem").fingerprint256)
      // Client certificates are still checked against the CA file after the reload.
      assert.strictEqual(
        yield* echo(port, Grpc.credentials.createSsl(caB, read(a, "client-key.pem"), read(a, "client.pem"))),
        "ping",
      )
    }).pipe(Effect.provide(Logger.remove(Logger.defaultLogger))),
  )
})

describe("scripts/gen-certs", () => {
  it("is idempotent, prints every path, and remakes an incomplete set as a whole", () => {
    const dir = Path.join(root, "gen")
    const first = execFileSync(genCerts, [dir], { stdio: "pipe" }).toString().trim().split("\n")
    assert.strictEqual(first.length, 14)
    for (const path of first) assert.isTrue(Fs.existsSync(path), path)
    const ca = fingerprintOf(dir, "ca.pem").fingerprint256
    execFileSync(genCerts, [dir], { stdio: "pipe" })
    assert.strictEqual(fingerprintOf(dir, "ca.pem").fingerprint256, ca, "a complete set is kept")
    Fs.rmSync(pem(dir, "client.pem"))
    execFileSync(genCerts, [dir], { stdio: "pipe" })
    assert.notStrictEqual(fingerprintOf(dir, "ca.pem").fingerprint256, ca, "an incomplete set is remade")
    // The server certificate doubles as a client certificate for node-to-node mTLS.
    const server = fingerprintOf(dir, "server.pem")
    assert.isTrue(server.checkIssued(fingerprintOf(dir, "ca.pem")))
    assert.include(server.subjectAltName ?? "", "IP Address:127.0.0.1")
    assert.include(server.keyUsage ?? [], "1.3.6.1.5.5.7.3.2")
  })
})
