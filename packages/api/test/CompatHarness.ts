/**
 * The compatible REST routes served by a real NodeHttpServer on
 * 127.0.0.1:0 (HttpLayerRouter.serve), over the in-test fake Coordinator and
 * the real Auth; requests go through the global fetch.
 */
import { createServer } from "node:http"
import type { Coordinator } from "@allidb/cluster"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as ApiConfig from "../src/ApiConfig.js"
import * as CompatRoutes from "../src/CompatRoutes.js"
import type { FakeOptions } from "./CompatFakeCoordinator.js"
import { testServices } from "./GrpcHarness.js"

export interface StartOptions {
  readonly fake?: FakeOptions
  readonly config?: Partial<ApiConfig.ApiConfigShape>
  readonly override?: Partial<Coordinator.CoordinatorShape>
}

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: Record<string, unknown>
}

export const startRest = (options: StartOptions = {}) =>
  Effect.gen(function* () {
    const { fake, services } = testServices(options)
    const context = yield* Layer.build(
      HttpLayerRouter.serve(CompatRoutes.layer, { disableLogger: true, disableListenLog: true }).pipe(
        Layer.provide(services),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
      ),
    ).pipe(
      // Quiet tests: the server fibers inherit this level (errors still show).
      Logger.withMinimumLogLevel(LogLevel.Error),
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const base = `http://127.0.0.1:${address.port}`

    const post = (
      path: string,
      body: unknown,
      init: { readonly apiKey?: string; readonly raw?: string; readonly signal?: AbortSignal } = {},
    ): Effect.Effect<Answer> =>
      Effect.promise(async () => {
        const headers: Record<string, string> = { "content-type": "application/json" }
        if (init.apiKey !== undefined) headers["x-allidb-api-key"] = init.apiKey
        const response = await fetch(`${base}${path}`, {
          method: "POST",
          headers,
          body: init.raw ?? JSON.stringify(body),
          ...(init.signal !== undefined ? { signal: init.signal } : {}),
        })
        const text = await response.text()
        return { status: response.status, headers: response.headers, body: JSON.parse(text) as Record<string, unknown> }
      })

    return { fake, base, port: address.port, post }
  })
