/**
 * @allidb/api — the public surfaces of a node: error mapping, auth and keys,
 * limits, the native HTTP /v1 API, the @effect/rpc group and the Routes layer
 * the server mounts. Each module is a namespace.
 */
export * as ApiConfig from "./ApiConfig.js"
export * as ApiKeys from "./ApiKeys.js"
export * as Auth from "./Auth.js"
export * as ErrorMapping from "./ErrorMapping.js"
