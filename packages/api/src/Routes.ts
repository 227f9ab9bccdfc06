/**
 * What the server mounts on its HttpLayerRouter: the native /v1 API, its
 * OpenAPI document (/openapi.json) and docs page (/docs), all derived from
 * the same HttpApi definitions, and the RPC endpoint (/rpc, msgpack over
 * HTTP, behind RpcGuard). Health, readiness, metrics and the compatible REST routes are
 * separate layers the app merges beside this one.
 *
 * Needs: HttpLayerRouter.HttpRouter (and the platform services the
 * NodeHttpServer layer provides), Coordinator, Auth, ApiConfig and
 * Limits.RateLimiter — `layerServices` builds the last two from ApiConfig,
 * so the gRPC surface can share them.
 */
import type * as Etag from "@effect/platform/Etag"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Headers from "@effect/platform/Headers"
import * as HttpApiScalar from "@effect/platform/HttpApiScalar"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Path from "@effect/platform/Path"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import type { Coordinator } from "@allidb/cluster"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ApiConfig from "./ApiConfig.js"
import type * as ApiKeys from "./ApiKeys.js"
import * as Auth from "./Auth.js"
import { Api } from "./HttpApi.js"
import * as HttpHandlers from "./HttpHandlers.js"
import * as Limits from "./Limits.js"
import { Rpcs } from "./Rpc.js"
import * as RpcGuard from "./RpcGuard.js"
import * as RpcHandlers from "./RpcHandlers.js"

export const OPENAPI_PATH = "/openapi.json"
export const DOCS_PATH = "/docs"
export const RPC_PATH = "/rpc"

/**
 * Pass as `HttpLayerRouter.serve(…, { routerConfig })`: the router's default
 * limit on a path parameter (100 characters) would answer 404 for valid ids
 * (up to 256 UTF-8 bytes, so up to 768 characters percent-encoded) and for
 * too-long ones, which must be a 400 naming the id.
 */
export const routerConfig = { maxParamLength: 2048 } as const

/**
 * HttpApi decodes the API-key header with a Schema before the Authentication middleware runs;
 * without the header that decode fails, and the failure (a ParseError: an Error with its
 * stack captured, the costliest step of a keyless request) is then mapped to an empty key.
 * A request without the header is handed on with it empty, which decodes to that same empty
 * key directly; Auth treats an empty key as none.
 */
const withEmptyKeyHeader = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    return request.headers[Auth.API_KEY_HEADER] !== undefined
      ? app
      : Effect.provideService(
          app,
          HttpServerRequest.HttpServerRequest,
          request.modify({ headers: Headers.set(request.headers, Auth.API_KEY_HEADER, "") }),
        )
  })

/** Request id, body limit, rate limit, deadline and the defect net for the /v1 routes. */
const v1Limits = HttpLayerRouter.middleware(
  Effect.map(
    Limits.makeHttpMiddleware({ deadline: true, rateLimit: true, surface: "http" }),
    (limits) => (app) => limits(withEmptyKeyHeader(app)),
  ),
).layer

/**
 * For /rpc: request id, body limit and the defect net at the HTTP level,
 * then the guard (RpcGuard: malformed frames and payloads failing their
 * schema → 400/401 JSON, never reaching the RPC server); authentication,
 * rate limit and deadline of valid calls are per call (typed errors) in the
 * RPC middleware, which learns the peer address from this header.
 */
const rpcLimits = HttpLayerRouter.middleware(
  Effect.gen(function* () {
    const limits = yield* Limits.makeHttpMiddleware({ deadline: false, rateLimit: false, surface: "rpc", telemetry: false })
    const guard = yield* RpcGuard.make({ peerHeader: RpcHandlers.PEER_ADDRESS_HEADER })
    return (app) =>
      limits(
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const headers = Headers.remove(request.headers, RpcHandlers.PEER_ADDRESS_HEADER)
          const peer = Option.getOrUndefined(request.remoteAddress)
          return Effect.provideService(
            guard(app),
            HttpServerRequest.HttpServerRequest,
            request.modify({
              headers: peer === undefined ? headers : Headers.set(headers, RpcHandlers.PEER_ADDRESS_HEADER, peer),
            }),
          )
        }),
      )
  }),
).layer

/** What the routes need from the server (besides the HttpRouter). */
export type Requirements = Coordinator.Coordinator | Auth.Auth | ApiConfig.ApiConfig | Limits.RateLimiter

/** The platform services `addHttpApi` needs; NodeHttpServer's layer provides them. */
export type PlatformServices = Etag.Generator | FileSystem.FileSystem | HttpPlatform.HttpPlatform | Path.Path

export const layerV1: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Requirements | PlatformServices> =
  HttpLayerRouter.addHttpApi(Api, { openapiPath: OPENAPI_PATH }).pipe(
  Layer.provide(HttpHandlers.layer),
  Layer.provide(v1Limits),
)

export const layerDocs = HttpApiScalar.layerHttpLayerRouter({ api: Api, path: DOCS_PATH })

export const layerRpc: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Requirements> = RpcServer.layerHttpRouter({ group: Rpcs, path: RPC_PATH, protocol: "http" }).pipe(
  Layer.provide(RpcHandlers.layer),
  Layer.provide(RpcSerialization.layerMsgPack),
  Layer.provide(rpcLimits),
)

/** Everything this package serves on the HTTP port. */
export const layer: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Requirements | PlatformServices> =
  Layer.mergeAll(layerV1, layerDocs, layerRpc)

/** Auth and the rate limiter, shared by every surface (HTTP, RPC, gRPC). */
export const layerServices: Layer.Layer<Auth.Auth | Limits.RateLimiter, ApiKeys.KeysFileError, ApiConfig.ApiConfig> =
  Layer.mergeAll(Auth.layer, Limits.layerRateLimiter)
