/**
 * @allidb/api — the public surfaces of a node: error mapping, auth and keys,
 * limits, the native HTTP /v1 API, the @effect/rpc group and the Routes layer
 * the server mounts. Each module is a namespace.
 */
export * as ApiConfig from "./ApiConfig.js"
export * as ApiKeys from "./ApiKeys.js"
export * as Compat from "./Compat.js"
export * as CompatRoutes from "./CompatRoutes.js"
export * as Auth from "./Auth.js"
export * as ErrorMapping from "./ErrorMapping.js"
export * as Grpc from "./Grpc.js"
export * as HttpApi from "./HttpApi.js"
export * as HttpHandlers from "./HttpHandlers.js"
export * as Limits from "./Limits.js"
export * as Routes from "./Routes.js"
export * as Rpc from "./Rpc.js"
export * as RpcHandlers from "./RpcHandlers.js"
