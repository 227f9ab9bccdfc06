/**
 * The HTTP listener: one port for the native API, the compatible REST routes,
 * /rpc, /metrics, /health and /ready. It owns the node:http server so that
 * shutdown can stop accepting, let in-flight requests finish within the
 * deadline, and only then cut what is left.
 */
import * as http from "node:http"
import type * as https from "node:https"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { HostPort } from "./Config.js"

export interface HttpListenerShape {
  readonly server: http.Server | https.Server
  /** Requests received and not yet answered. */
  readonly inflight: () => number
  /**
   * Stops accepting connections and waits (at most `timeoutMs`) for in-flight
   * requests to finish; then closes every connection left.
   */
  readonly drain: (timeoutMs: number) => Effect.Effect<{ readonly unfinished: number }>
}

export class HttpListener extends Context.Tag("@allidb/allidbd/HttpListener")<HttpListener, HttpListenerShape>() {}

const makeListener = (server: http.Server | https.Server): HttpListenerShape => {
  let inflight = 0
  server.on("request", (_req: http.IncomingMessage, res: http.ServerResponse) => {
    inflight++
    res.once("close", () => {
      inflight--
    })
  })
  const drain = (timeoutMs: number) =>
    Effect.gen(function* () {
      if (server.listening) server.close()
      const deadline = Date.now() + timeoutMs
      while (inflight > 0 && Date.now() < deadline) {
        server.closeIdleConnections()
        yield* Effect.sleep("20 millis")
      }
      const unfinished = inflight
      server.closeAllConnections()
      return { unfinished }
    })
  return { server, inflight: () => inflight, drain }
}

/**
 * Provides HttpServer (for HttpLayerRouter.serve) and HttpListener. `create`
 * makes the node server (plain http, or https when TLS is on).
 */
export const layer = (
  address: HostPort,
  create: () => http.Server | https.Server = () => http.createServer(),
): Layer.Layer<HttpListener | Layer.Layer.Success<ReturnType<typeof NodeHttpServer.layer>>, HttpServerError.ServeError> =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const server = create()
      // Keep-alive sockets must not outlive a drain by much.
      server.keepAliveTimeout = 5_000
      const listener = makeListener(server)
      return Layer.merge(
        NodeHttpServer.layer(() => server as http.Server, { host: address.host, port: address.port }),
        Layer.succeed(HttpListener, listener),
      )
    }),
  )
