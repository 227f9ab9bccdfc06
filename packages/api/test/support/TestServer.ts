/**
 * An in-process server for handler-level tests: the real Routes, Auth and
 * limits on a NodeHttpServer bound to an ephemeral port, over any
 * Coordinator layer (usually LocalCoordinator on the in-memory fakes).
 */
import { createServer } from "node:http"
import * as os from "node:os"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type { Coordinator } from "@allidb/cluster"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as ApiConfig from "../../src/ApiConfig.js"
import * as Routes from "../../src/Routes.js"
import { Coordinator as CoordinatorTag } from "../../../cluster/src/Coordinator.js"
import * as LocalCoordinator from "../../../cluster/src/LocalCoordinator.js"
import * as Fakes from "../../../cluster/test/support/Fakes.js"

export interface Server {
  readonly port: number
  readonly url: string
}

export const serverLayer = (
  coordinator: Layer.Layer<Coordinator.Coordinator>,
  config: Partial<ApiConfig.ApiConfigShape> = {},
) =>
  HttpLayerRouter.serve(Routes.layer, {
    disableLogger: true,
    disableListenLog: true,
    routerConfig: Routes.routerConfig,
  }).pipe(
    Layer.provide(Layer.provideMerge(Routes.layerServices, ApiConfig.layer(config))),
    Layer.provide(coordinator),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "0.0.0.0" })),
    Layer.provide(Logger.remove(Logger.defaultLogger)),
  )

/** Starts a server for the current scope. */
export const start = (coordinator: Layer.Layer<Coordinator.Coordinator>, config: Partial<ApiConfig.ApiConfigShape> = {}) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(serverLayer(coordinator, config))
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    return { port: address.port, url: `http://127.0.0.1:${address.port}` } satisfies Server
  })

/** A LocalCoordinator over fresh in-memory fakes, with the fake state for assertions. */
export const fakeCoordinator = Effect.map(Fakes.makeState, (state) => ({
  state,
  layer: LocalCoordinator.layer.pipe(Layer.provide(Fakes.layer(state))),
}))

export { CoordinatorTag }

export interface Answer {
  readonly status: number
  readonly headers: Headers
  // biome-ignore lint/suspicious/noExplicitAny: test answers are inspected field by field
  readonly body: any
}

export interface CallOptions {
  readonly body?: unknown
  readonly key?: string
  readonly headers?: Record<string, string>
  readonly signal?: AbortSignal
  /** Send `body` as is (a string or stream), not JSON-encoded. */
  readonly raw?: boolean
}

export const call = (base: string, method: string, path: string, options: CallOptions = {}): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.key !== undefined) headers["x-allidb-api-key"] = options.key
    let body: NonNullable<RequestInit["body"]> | undefined
    if (options.body !== undefined) {
      body = options.raw ? (options.body as NonNullable<RequestInit["body"]>) : JSON.stringify(options.body)
      if (headers["content-type"] === undefined) headers["content-type"] = "application/json"
    }
    const init: RequestInit & { duplex?: "half" } = { method, headers }
    if (body !== undefined) init.body = body
    if (body instanceof ReadableStream) init.duplex = "half"
    if (options.signal !== undefined) init.signal = options.signal
    const response = await fetch(base + path, init)
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = text === "" ? undefined : JSON.parse(text)
    } catch {
      // not JSON (the docs page)
    }
    return { status: response.status, headers: response.headers, body: parsed }
  })

/** A non-loopback IPv4 address of this machine, if it has one. */
export const externalAddress = (): string | undefined => {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const info of list ?? []) if (info.family === "IPv4" && !info.internal) return info.address
  }
  return undefined
}
