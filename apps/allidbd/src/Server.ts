/**
 * The composition root of a running server, top to bottom:
 *
 * 1. lock the data dir;
 * 2. bring up the listeners — HTTP (native /v1, /docs, /openapi.json, /rpc,
 *    AlliDB-compatible REST, /health, /ready, /metrics) and gRPC — at once,
 *    over a Coordinator that answers 503/UNAVAILABLE until recovery is done;
 * 3. build the node (storage: manifest + WAL replay; index: snapshot load or
 *    rebuild, then catch-up) and hand its Coordinator to the listeners;
 * 4. mark ready, and run until SIGTERM/SIGINT or a fail-hard tenant breach.
 *
 * Shutdown is the main scope closing, in reverse: drain HTTP within the
 * deadline and close the listeners (gRPC drains in its finalizer), refuse
 * what is left, close the node (index snapshot, WAL durable, files closed),
 * release the lock.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { ApiConfig, ApiKeys, CompatRoutes, Grpc, Routes } from "@allidb/api"
import { Coordinator } from "@allidb/cluster"
import { Logging, Metrics, Tls, Tracing } from "@allidb/observability"
import { TenantGuard } from "@allidb/storage"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type { NodeConfig } from "./Config.js"
import { formatHostPort } from "./Config.js"
import * as DataDirLock from "./DataDirLock.js"
import * as Health from "./Health.js"
import * as HttpListener from "./HttpListener.js"
import * as Node from "./Node.js"
import * as StartingCoordinator from "./StartingCoordinator.js"
import { VERSION } from "./Version.js"

/** A start-up failure the operator must fix: printed as one line; exit code 2 for settings, 1 for data. */
export class StartupError extends Data.TaggedError("StartupError")<{ readonly message: string; readonly exitCode: number }> {}

const settingError = (message: string) => new StartupError({ message, exitCode: 2 })

/** `keys create` writes here when -api-keys-file is not set; the server reads it when present. */
export const defaultKeysFile = (c: NodeConfig): string => path.join(c.dataDir, "api-keys")

export const apiSettings = (c: NodeConfig): Partial<ApiConfig.ApiConfigShape> => ({
  apiKeys: c.apiKeys,
  apiKeysFile: c.apiKeysFile ?? (fs.existsSync(defaultKeysFile(c)) ? defaultKeysFile(c) : undefined),
  maxBodyMb: c.maxBodyMb,
  maxBatch: c.maxBatch,
  rateLimitPerSec: c.rateLimit,
  rateLimitBurst: c.rateBurst,
  requestTimeoutMs: c.requestTimeoutMs,
})

export const tlsSettings = (c: NodeConfig): Tls.Settings => ({
  enabled: c.tls,
  certFile: c.tlsCert ?? "",
  keyFile: c.tlsKey ?? "",
  caFile: c.tlsCa,
  clientAuth: c.tlsClientAuth,
})

/** HTTP and gRPC over the given (starting) coordinator. */
const listenersLayer = (config: NodeConfig, coordinator: Coordinator.CoordinatorShape) => {
  const services = Routes.layerServices.pipe(
    Layer.provideMerge(Layer.succeed(Coordinator.Coordinator, coordinator)),
    Layer.provideMerge(ApiConfig.layer(apiSettings(config))),
  )
  const routes = Layer.mergeAll(
    Health.routes,
    Metrics.route,
    Routes.layer,
    CompatRoutes.layer,
    config.debugRoutes ? Health.debugRoutes : Layer.empty,
  )
  const http = Layer.unwrapEffect(
    Effect.map(Tls.Tls, (tls) =>
      HttpLayerRouter.serve(routes, { disableLogger: true, disableListenLog: true, routerConfig: Routes.routerConfig }).pipe(
        Layer.provideMerge(HttpListener.layer(config.httpAddr, tls.createHttpServer)),
      ),
    ),
  )
  const grpc = Layer.unwrapEffect(
    Effect.map(Tls.Tls, (tls) =>
      Grpc.layer({
        address: formatHostPort(config.grpcAddr),
        credentials: tls.grpcCredentials,
        version: VERSION,
        shutdownTimeoutMs: config.shutdownTimeoutMs,
      }),
    ),
  )
  return Layer.mergeAll(http, grpc).pipe(
    Layer.provideMerge(services),
    Layer.provideMerge(Health.layerReadiness),
    Layer.provideMerge(Tls.layer(tlsSettings(config))),
  )
}

const describeAddress = (address: HttpServer.Address): string =>
  address._tag === "TcpAddress" ? formatHostPort({ host: address.hostname, port: address.port }) : address.path

const startupMessage = (e: { readonly _tag: string; readonly message: string }): StartupError => {
  switch (e._tag) {
    case "ServeError":
      return settingError(`cannot listen on the HTTP address: ${e.message}`)
    case "GrpcBindError":
    case "TlsConfigError":
    case "KeysFileError":
      return settingError(e.message)
    default:
      return new StartupError({ message: `start-up failed: ${e.message}`, exitCode: 1 })
  }
}

const errorMessage = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" && e.message !== ""
    ? e.message
    : String(e)

export const run = (config: NodeConfig): Effect.Effect<void, StartupError> =>
  Effect.gen(function* () {
    yield* DataDirLock.acquire(config.dataDir).pipe(Effect.mapError((e) => settingError(e.message)))
    const mainScope = yield* Effect.scope

    // Listeners first, in their own scope so shutdown can close them before the node.
    const starting = StartingCoordinator.make()
    const listenerScope = yield* Scope.fork(mainScope, ExecutionStrategy.sequential)
    const listeners = yield* Layer.buildWithScope(listenersLayer(config, starting.coordinator), listenerScope).pipe(
      Effect.mapError((e) =>
        startupMessage({ _tag: (e as { _tag?: string })._tag ?? "Error", message: errorMessage(e) }),
      ),
    )
    const http = Context.get(listeners, HttpServer.HttpServer)
    const listener = Context.get(listeners, HttpListener.HttpListener)
    const readiness = Context.get(listeners, Health.Readiness)
    const grpc = Context.get(listeners, Grpc.GrpcServer)
    yield* Effect.logInfo("listening").pipe(
      Effect.annotateLogs({
        http: describeAddress(http.address),
        grpc: formatHostPort({ host: grpc.host, port: grpc.port }),
        tls: config.tls,
        version: VERSION,
        data_dir: config.dataDir,
      }),
    )

    // Recovery: storage (manifest, WAL replay), then the index (snapshot or rebuild, catch-up).
    const started = Date.now()
    const node = yield* Layer.buildWithScope(Node.layer(config), mainScope).pipe(
      Effect.mapError((e) => new StartupError({ message: `recovery failed: ${errorMessage(e)}`, exitCode: 1 })),
    )
    starting.open(Context.get(node, Coordinator.Coordinator))

    // Added last, so it runs first at shutdown.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* readiness.set("draining")
        yield* Effect.logInfo("shutting down: draining requests").pipe(
          Effect.annotateLogs({ inflight: listener.inflight(), timeout_ms: config.shutdownTimeoutMs }),
        )
        const { unfinished } = yield* listener.drain(config.shutdownTimeoutMs)
        if (unfinished > 0) {
          yield* Effect.logWarning("drain deadline passed; closed the remaining connections").pipe(
            Effect.annotateLogs({ unfinished }),
          )
        }
        yield* Scope.close(listenerScope, Exit.void)
        starting.close("the node is stopping")
        yield* Effect.logInfo("listeners closed; closing storage and index")
      }),
    )

    yield* readiness.set("ready")
    yield* Effect.logInfo("ready").pipe(Effect.annotateLogs({ recovery_ms: Date.now() - started }))
    // Runs until interrupted (SIGTERM/SIGINT); a fail-hard tenant breach dies here and stops the node.
    return yield* Context.get(node, TenantGuard.TenantGuard).fatal
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.logInfo("stopped")),
    Effect.provide(Metrics.layer({ nodeId: config.nodeId })),
    Effect.provide(Tracing.layer({ nodeId: config.nodeId }).pipe(Layer.orDie)),
    Effect.provide(Logging.layer({ nodeId: config.nodeId, level: config.logLevel })),
  )

/** `allidbd keys create --tenant T [--file F]`: prints a new key once; only its hash is stored. */
export const createKey = (file: string, tenant: string): Effect.Effect<string, StartupError> =>
  ApiKeys.createKey(file, tenant).pipe(Effect.mapError((e) => settingError(e.message)))
