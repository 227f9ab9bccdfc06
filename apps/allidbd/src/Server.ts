/**
 * The composition root of a running server: lock the data dir, listen at
 * once (so /health answers and /ready says "starting"), recover storage and
 * the index in the background of start-up, then mark ready. Shutdown is the
 * main scope closing: drain HTTP within the deadline, then every layer's
 * finalizer in reverse order (listeners, index snapshot, storage).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { Logging } from "@allidb/observability"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { NodeConfig } from "./Config.js"
import { formatHostPort } from "./Config.js"
import * as DataDirLock from "./DataDirLock.js"
import * as Health from "./Health.js"
import * as HttpListener from "./HttpListener.js"
import { VERSION } from "./Version.js"

/** A start-up failure the operator must fix: printed as one line, exit code 2. */
export class StartupError extends Data.TaggedError("StartupError")<{ readonly message: string }> {}

const httpLayer = (config: NodeConfig) =>
  HttpLayerRouter.serve(
    Layer.mergeAll(Health.routes, config.debugRoutes ? Health.debugRoutes : Layer.empty),
    { disableLogger: true, disableListenLog: true },
  ).pipe(Layer.provideMerge(HttpListener.layer(config.httpAddr)), Layer.provideMerge(Health.layerReadiness))

const describeAddress = (address: HttpServer.Address): string =>
  address._tag === "TcpAddress" ? formatHostPort({ host: address.hostname, port: address.port }) : address.path

export const run = (config: NodeConfig): Effect.Effect<void, StartupError> =>
  Effect.gen(function* () {
    yield* DataDirLock.acquire(config.dataDir).pipe(
      Effect.mapError((e) => new StartupError({ message: e.message })),
    )
    const context = yield* Layer.build(httpLayer(config)).pipe(
      Effect.mapError(
        (e) => new StartupError({ message: `cannot listen on -http-addr ${formatHostPort(config.httpAddr)}: ${String(e.cause)}` }),
      ),
    )
    const runtime = yield* Effect.provide(
      Effect.all({ server: HttpServer.HttpServer, listener: HttpListener.HttpListener, readiness: Health.Readiness }),
      context,
    )
    yield* Effect.logInfo("listening").pipe(
      Effect.annotateLogs({ http: describeAddress(runtime.server.address), version: VERSION, data_dir: config.dataDir }),
    )
    // Runs before the listener's own finalizer: stop accepting, let in-flight requests finish.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* runtime.readiness.set("draining")
        yield* Effect.logInfo("shutting down: draining requests").pipe(
          Effect.annotateLogs({ inflight: runtime.listener.inflight(), timeout_ms: config.shutdownTimeoutMs }),
        )
        const { unfinished } = yield* runtime.listener.drain(config.shutdownTimeoutMs)
        if (unfinished > 0) yield* Effect.logWarning("drain deadline passed; closing connections").pipe(
          Effect.annotateLogs({ unfinished }),
        )
      }),
    )
    yield* runtime.readiness.set("ready")
    yield* Effect.logInfo("ready")
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.logInfo("stopped")),
    Effect.provide(Logging.layer({ nodeId: config.nodeId, level: config.logLevel })),
  )
