/**
 * A real @grpc/grpc-js server (Grpc.layer on 127.0.0.1:0) over the in-test
 * fake Coordinator and the real Auth, and a real grpc-js client with
 * promise-like helpers that never throw: every call resolves to an Either of
 * the response or the ServiceError.
 */
import { Coordinator } from "@allidb/cluster"
import { tenantId } from "@allidb/core"
import * as grpc from "@grpc/grpc-js"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ApiConfig from "../src/ApiConfig.js"
import * as Auth from "../src/Auth.js"
import * as Limits from "../src/Limits.js"
import * as Grpc from "../src/Grpc.js"
import { CompatFakeCoordinator, type FakeOptions } from "./CompatFakeCoordinator.js"

export const KEY_ACME = "key-acme-0123456789"
export const KEY_OTHER = "key-other-0123456789"

export const defaultKeys: ReadonlyArray<ApiConfig.ApiKeyBinding> = [
  { key: KEY_ACME, tenant: tenantId("acme") },
  { key: KEY_OTHER, tenant: tenantId("other") },
]

export interface StartOptions {
  readonly fake?: FakeOptions
  readonly config?: Partial<ApiConfig.ApiConfigShape>
  /** Replace coordinator methods (e.g. to fail with a storage error). */
  readonly override?: Partial<Coordinator.CoordinatorShape>
  readonly shutdownTimeoutMs?: number
}

/**
 * What a compat surface needs, over the fake coordinator (optionally with some
 * methods overridden) and real Auth + rate limiter with the test keys.
 */
export const testServices = (options: {
  readonly fake?: FakeOptions
  readonly config?: Partial<ApiConfig.ApiConfigShape>
  readonly override?: Partial<Coordinator.CoordinatorShape>
}) => {
  const fake = CompatFakeCoordinator.make(options.fake)
  const coordinator =
    options.override === undefined
      ? fake.layer
      : Layer.succeed(Coordinator.Coordinator, { ...fake.shape, ...options.override })
  const config = ApiConfig.layer({ apiKeys: defaultKeys, ...options.config })
  const services = Layer.mergeAll(
    coordinator,
    Auth.layer.pipe(Layer.provide(config)),
    Limits.layerRateLimiter.pipe(Layer.provide(config)),
    config,
  )
  return { fake, services }
}

export type Outcome = Either.Either<Record<string, unknown>, grpc.ServiceError>

export interface CallOptions {
  readonly apiKey?: string
  readonly deadlineMs?: number
  /** Cancel the call from the client after this many ms. */
  readonly cancelAfterMs?: number
  readonly requestId?: string
}

export class GrpcTestClient {
  constructor(readonly client: grpc.Client) {}

  call(method: string, request: object, options: CallOptions = {}): Effect.Effect<Outcome> {
    return Effect.async<Outcome>((resume) => {
      const metadata = new grpc.Metadata()
      if (options.apiKey !== undefined) metadata.set(Auth.API_KEY_HEADER, options.apiKey)
      if (options.requestId !== undefined) metadata.set("x-request-id", options.requestId)
      const callOptions: grpc.CallOptions = {}
      if (options.deadlineMs !== undefined) callOptions.deadline = Date.now() + options.deadlineMs
      const fn = (this.client as unknown as Record<string, Function>)[method]
      const call: grpc.ClientUnaryCall = fn.call(
        this.client,
        request,
        metadata,
        callOptions,
        (error: grpc.ServiceError | null, response: Record<string, unknown>) =>
          resume(Effect.succeed(error === null ? Either.right(response) : Either.left(error))),
      )
      if (options.cancelAfterMs !== undefined) {
        const timer = setTimeout(() => call.cancel(), options.cancelAfterMs)
        return Effect.sync(() => clearTimeout(timer))
      }
      return undefined
    })
  }
}

/** Sends raw bytes as the request message of `method` (the server decodes them). */
export const callRaw = (
  client: grpc.Client,
  method: string,
  bytes: Buffer,
  apiKey?: string,
): Effect.Effect<Either.Either<Buffer, grpc.ServiceError>> =>
  Effect.async((resume) => {
    const metadata = new grpc.Metadata()
    if (apiKey !== undefined) metadata.set(Auth.API_KEY_HEADER, apiKey)
    client.makeUnaryRequest(
      `/${Grpc.SERVICE_NAME}/${method}`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      metadata,
      {},
      (error: grpc.ServiceError | null, response?: Buffer) =>
        resume(Effect.succeed(error === null ? Either.right(response ?? Buffer.alloc(0)) : Either.left(error))),
    )
  })

export const startGrpc = (options: StartOptions = {}) =>
  Effect.gen(function* () {
    const { fake, services } = testServices(options)
    const server = yield* Layer.build(
      Grpc.layer({
        address: "127.0.0.1:0",
        version: "test-1",
        ...(options.shutdownTimeoutMs !== undefined ? { shutdownTimeoutMs: options.shutdownTimeoutMs } : {}),
      }).pipe(Layer.provide(services)),
    ).pipe(
      // Quiet tests: the server fibers inherit this level (errors still show).
      Logger.withMinimumLogLevel(LogLevel.Error),
    )
    const { port } = Context.get(server, Grpc.GrpcServer)
    const { client: Ctor } = Grpc.loadService()
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure())),
      (c) => Effect.sync(() => c.close()),
    )
    return { fake, port, client: new GrpcTestClient(client) }
  })

export type Started = Effect.Effect.Success<ReturnType<typeof startGrpc>>
