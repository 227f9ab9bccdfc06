/**
 * The typed client of an AlliDB node: the node's RpcGroup over HTTP
 * (msgpack at `<url>/rpc`), authenticated with an API key. Calls fail with
 * core's ClientError members — the same typed errors the server raised — or
 * an RpcClientError when the node cannot be reached.
 *
 * Effect users provide `layer({ url, apiKey })` and use the `AlliDbClient`
 * service; others call `connect` for a Promise facade.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as RpcClient from "@effect/rpc/RpcClient"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { Auth, Rpc } from "@allidb/api"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

export type Service = RpcClient.RpcClient<RpcGroup.Rpcs<typeof Rpc.Rpcs>, RpcClientError>

/** The RPC client of one node. Methods: Upsert, Get, Delete, PutEdges, DeleteEdges, Query, Traverse, Scan. */
export class AlliDbClient extends Context.Tag("@allidb/client/AlliDbClient")<AlliDbClient, Service>() {}

export interface Options {
  /** Base URL of the node's HTTP address, e.g. `http://127.0.0.1:8080`. */
  readonly url: string
  /** Sent as X-ALLIDB-API-KEY; omit only for a keyless node reached over loopback. */
  readonly apiKey?: string | undefined
}

export const rpcUrl = (url: string): string => `${url.replace(/\/+$/, "")}/rpc`

/** The client over a caller-provided HttpClient (e.g. NodeHttpClient, or one with TLS settings). */
export const layerWithHttpClient = (options: Options): Layer.Layer<AlliDbClient, never, HttpClient.HttpClient> => {
  const apiKey = options.apiKey
  return Layer.scoped(AlliDbClient, RpcClient.make(Rpc.Rpcs)).pipe(
    Layer.provide(
      RpcClient.layerProtocolHttp({
        url: rpcUrl(options.url),
        transformClient: (client) =>
          apiKey === undefined
            ? client
            : HttpClient.mapRequest(client, HttpClientRequest.setHeader(Auth.API_KEY_HEADER, apiKey)),
      }),
    ),
    Layer.provide(RpcSerialization.layerMsgPack),
  )
}

/** The client over the global `fetch`. */
export const layer = (options: Options): Layer.Layer<AlliDbClient> =>
  layerWithHttpClient(options).pipe(Layer.provide(FetchHttpClient.layer))

/** The Promise facade (see PromiseClient): `await AlliDbClient.connect({ url, apiKey })`. */
export { connect } from "./PromiseClient.js"
