/**
 * TLS and mTLS on every listener of the real allidbd: HTTPS (native API,
 * /health), gRPC and the typed RPC client, with certificates made by
 * scripts/gen-certs; and bad TLS files stop start-up with one line, exit 2.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import * as grpc from "@grpc/grpc-js"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Grpc } from "@allidb/api"
import { AlliDbClient } from "@allidb/client"
import { Entity } from "@allidb/core"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Allidbd from "./support/Allidbd.js"

const GEN_CERTS = new URL("../../../scripts/gen-certs", import.meta.url).pathname
let certs = ""
const file = (name: string) => path.join(certs, name)
const read = (name: string) => fs.readFileSync(file(name))

beforeAll(() => {
  certs = Allidbd.makeTempDir("allidb-certs-")
  execFileSync("bash", [GEN_CERTS, certs], { stdio: "ignore" })
})
afterAll(() => fs.rmSync(certs, { recursive: true, force: true }))

interface ClientCert {
  readonly cert: Buffer
  readonly key: Buffer
}
const goodClient = (): ClientCert => ({ cert: read("client.pem"), key: read("client-key.pem") })
const otherCaClient = (): ClientCert => ({ cert: read("other-client.pem"), key: read("other-client-key.pem") })

/** GET over HTTPS trusting our CA; resolves to the status, or "refused" when the handshake fails. */
const httpsGet = (url: string, client?: ClientCert): Promise<number | "refused"> =>
  new Promise((resolve) => {
    const req = https.get(url, { ca: read("ca.pem"), ...client, agent: false }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", () => resolve("refused"))
    req.setTimeout(10_000, () => req.destroy())
  })

const waitHttps = async (url: string): Promise<void> => {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if ((await httpsGet(url, goodClient())) === 200) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${url} not ready over TLS`)
}

const grpcHealth = (address: string, credentials: grpc.ChannelCredentials): Promise<"ok" | "refused"> => {
  const { client: Client } = Grpc.loadService()
  const client = new Client(address, credentials) as unknown as grpc.Client & {
    HealthCheck: (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void
  }
  return new Promise((resolve) => {
    client.HealthCheck({}, { deadline: Date.now() + 10_000 }, (err) => {
      client.close()
      resolve(err === null ? "ok" : "refused")
    })
  })
}

const tlsArgs = (clientAuth: "none" | "require") => [
  "-tls=true",
  `-tls-cert=${file("server.pem")}`,
  `-tls-key=${file("server-key.pem")}`,
  ...(clientAuth === "require" ? [`-tls-ca=${file("ca.pem")}`, "-tls-client-auth=require"] : []),
]

const startTls = (clientAuth: "none" | "require") =>
  Effect.gen(function* () {
    const node = yield* Allidbd.start({ args: tlsArgs(clientAuth), waitReady: false })
    assert.match(node.httpUrl, /^https:/)
    yield* Effect.promise(() => waitHttps(`${node.httpUrl}/ready`))
    return node
  })

/** The typed RPC client over Node's https agent with the given material. */
const rpcClient = (url: string, client?: ClientCert) =>
  AlliDbClient.layerWithHttpClient({ url }).pipe(
    Layer.provide(NodeHttpClient.layerWithoutAgent),
    Layer.provide(NodeHttpClient.makeAgentLayer({ ca: read("ca.pem"), ...client })),
  )

const entity = Schema.decodeUnknownSync(Entity)({ id: "tls-1", vector: [1, 2, 3], type: "doc" })

describe("TLS on every listener", () => {
  it.scopedLive("HTTPS, gRPC and the typed RPC client work over TLS", () =>
    Effect.gen(function* () {
      const node = yield* startTls("none")
      assert.strictEqual(yield* Effect.promise(() => httpsGet(`${node.httpUrl}/health`)), 200)
      const address = node.grpcAddress!
      const ok = yield* Effect.promise(() => grpcHealth(address, grpc.credentials.createSsl(read("ca.pem"))))
      assert.strictEqual(ok, "ok")
      const insecure = yield* Effect.promise(() => grpcHealth(address, grpc.credentials.createInsecure()))
      assert.strictEqual(insecure, "refused", "plaintext gRPC is not served when TLS is on")
      const got = yield* Effect.gen(function* () {
        const client = yield* AlliDbClient.AlliDbClient
        yield* client.Upsert({ entities: [entity] })
        return yield* client.Get({ id: entity.id })
      }).pipe(Effect.provide(rpcClient(node.httpUrl)))
      assert.strictEqual(got.id, "tls-1")
    }))

  it.scopedLive("mTLS refuses clients without a certificate or with one from another CA, on every listener", () =>
    Effect.gen(function* () {
      const node = yield* startTls("require")
      const health = `${node.httpUrl}/health`
      assert.strictEqual(yield* Effect.promise(() => httpsGet(health, goodClient())), 200)
      assert.strictEqual(yield* Effect.promise(() => httpsGet(health)), "refused")
      assert.strictEqual(yield* Effect.promise(() => httpsGet(health, otherCaClient())), "refused")

      const address = node.grpcAddress!
      const ca = read("ca.pem")
      const good = grpc.credentials.createSsl(ca, read("client-key.pem"), read("client.pem"))
      const other = grpc.credentials.createSsl(ca, read("other-client-key.pem"), read("other-client.pem"))
      assert.strictEqual(yield* Effect.promise(() => grpcHealth(address, good)), "ok")
      assert.strictEqual(yield* Effect.promise(() => grpcHealth(address, grpc.credentials.createSsl(ca))), "refused")
      assert.strictEqual(yield* Effect.promise(() => grpcHealth(address, other)), "refused")

      const upsert = Effect.gen(function* () {
        const client = yield* AlliDbClient.AlliDbClient
        return yield* client.Upsert({ entities: [entity] })
      })
      const withCert = yield* upsert.pipe(Effect.provide(rpcClient(node.httpUrl, goodClient())), Effect.either)
      assert.isTrue(Either.isRight(withCert), `RPC with a client certificate: ${JSON.stringify(withCert)}`)
      const without = yield* upsert.pipe(Effect.provide(rpcClient(node.httpUrl)), Effect.either)
      assert.isTrue(Either.isLeft(without), "RPC without a client certificate is refused")
      const otherCa = yield* upsert.pipe(Effect.provide(rpcClient(node.httpUrl, otherCaClient())), Effect.either)
      assert.isTrue(Either.isLeft(otherCa), "RPC with another CA's certificate is refused")
    }))

  it.live("bad TLS files stop start-up with one line naming the setting and exit 2", () =>
    Effect.gen(function* () {
      const dataDir = Allidbd.makeTempDir()
      const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
        [["-tls", "-tls-cert=/nonexistent/cert.pem", `-tls-key=${file("server-key.pem")}`], /tls-cert/],
        [["-tls", `-tls-cert=${file("server.pem")}`, `-tls-key=${file("client-key.pem")}`], /tls-key/],
        [["-tls", `-tls-cert=${file("expired.pem")}`, `-tls-key=${file("expired-key.pem")}`], /expired/],
        [[...tlsArgs("none"), `-tls-ca=${file("server-key.pem")}`, "-tls-client-auth=require"], /tls-ca/],
      ]
      for (const [args, pattern] of cases) {
        const result = yield* Allidbd.runToExit([`-data-dir=${dataDir}`, "-http-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", ...args])
        assert.strictEqual(result.code, 2, `${args.join(" ")}: ${result.stderr}`)
        const lines = result.stderr.trim().split("\n")
        assert.strictEqual(lines.length, 1, result.stderr)
        assert.match(lines[0]!, pattern)
      }
      fs.rmSync(dataDir, { recursive: true, force: true })
    }))
})
