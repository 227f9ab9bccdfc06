/**
 * The guard in front of the RPC server at /rpc. @effect/rpc's RpcServer
 * answers anything it cannot use with HTTP 200 and a msgpack "Defect" frame:
 * garbage bodies ("Unknown request tag: undefined"), a truncated body (the
 * complete frames run, the tail is silently dropped) and a payload that
 * fails its RPC's schema (decoded before any middleware runs, so the defect
 * carries the whole schema tree, even to an unauthenticated caller). A
 * request id that is not an integer can even throw inside its protocol loop.
 *
 * So the body is read here (once, size-limited), decoded as the msgpack
 * frames the server would see, and every frame must be a well-formed client
 * message; each Request must name a known RPC and its payload must decode
 * with that RPC's payload schema. Otherwise the answer is the one JSON error
 * shape of every HTTP surface — 400 INVALID_ARGUMENT naming the field path
 * (the payload's own path, as the native API names its body fields) — or,
 * for a caller without a valid API key, 401 first, so a schema is never
 * described to someone who may not call. A body that passes is handed to
 * the RPC server as the bytes already read (the platform does not cache a
 * request's bytes, so the socket cannot be read twice).
 *
 * Valid traffic is untouched: its authentication, rate limit and deadline
 * still happen per call in the RPC middleware, with typed errors.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Rpc from "@effect/rpc/Rpc"
import { InvalidInput, type PayloadTooLarge } from "@allidb/core"
import { Metrics } from "@allidb/observability"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { Unpackr } from "msgpackr"
import * as ApiConfig from "./ApiConfig.js"
import * as Auth from "./Auth.js"
import * as ErrorMapping from "./ErrorMapping.js"
import * as Limits from "./Limits.js"
import { Rpcs } from "./Rpc.js"

// ---------------------------------------------------------------------------
// Reading the body as bytes
// ---------------------------------------------------------------------------

/**
 * `request` with its body replaced by `bytes` already read: every other
 * member (headers, url, remote address, the response it answers on) is the
 * original's, inherited through the prototype chain.
 */
export const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  bytes: Uint8Array,
): HttpServerRequest.HttpServerRequest => {
  const buffer =
    bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? (bytes.buffer as ArrayBuffer)
      : (bytes.slice().buffer as ArrayBuffer)
  const arrayBuffer = Effect.succeed(buffer)
  const text = Effect.sync(() => new TextDecoder().decode(bytes))
  return Object.create(request, {
    arrayBuffer: { get: () => arrayBuffer },
    text: { get: () => text },
  }) as HttpServerRequest.HttpServerRequest
}

// ---------------------------------------------------------------------------
// Checking the frames
// ---------------------------------------------------------------------------

/**
 * The messages a client may send over HTTP (RpcMessage.FromClientEncoded
 * without Eof: the end of the body is the end of the messages, and the
 * server adds its own Eof — a second one interrupts the request, a 503).
 */
const CLIENT_TAGS = new Set(["Request", "Ack", "Interrupt", "Ping"])

/** A request id is a bigint on the wire as its decimal string (the server calls BigInt on it). */
const REQUEST_ID = /^(0|[1-9][0-9]{0,19})$/

/** A msgpack map (msgpackr also decodes to class instances, e.g. for the reserved byte 0xc1). */
const isRecord = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== "object" || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const refuse = (field: string, rule: string): InvalidInput => new InvalidInput({ field, message: `${field}: ${rule}` })

const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (value === undefined) return "nothing"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "string") return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value)
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`
}

/**
 * The payload decoder of each RPC of the group, built once. First-error
 * mode, as the native API decodes: the answer names only the first
 * offending field, so collecting every issue of a bad batch is wasted work.
 */
const payloadDecoders: ReadonlyMap<string, (u: unknown) => Either.Either<unknown, ParseResult.ParseError>> = new Map(
  Array.from(Rpcs.requests, ([tag, rpc]) => {
    const schema = (rpc as Rpc.AnyWithProps).payloadSchema as Schema.Schema<unknown, unknown>
    return [tag, Schema.decodeUnknownEither(schema)] as const
  }),
)

const KNOWN_TAGS = Array.from(payloadDecoders.keys()).join(", ")

const checkRequest = (frame: Record<string, unknown>, at: string, seen: Set<string>): InvalidInput | undefined => {
  const tag = frame.tag
  if (typeof tag !== "string") return refuse(`${at}.tag`, `expected the RPC name as a string, got ${describe(tag)}`)
  const decode = payloadDecoders.get(tag)
  if (decode === undefined) return refuse(`${at}.tag`, `unknown RPC ${describe(tag)} (known: ${KNOWN_TAGS})`)
  if (typeof frame.id !== "string" || !REQUEST_ID.test(frame.id)) {
    return refuse(`${at}.id`, `expected a request id (a decimal integer string), got ${describe(frame.id)}`)
  }
  // The server keys a call's answer encoding by its id: a repeated id would answer one call with another's schema.
  if (seen.has(frame.id)) return refuse(`${at}.id`, `request id ${frame.id} is used twice in this body`)
  seen.add(frame.id)
  const headers = frame.headers
  if (!Array.isArray(headers)) return refuse(`${at}.headers`, `expected an array of [name, value] pairs, got ${describe(headers)}`)
  for (let i = 0; i < headers.length; i++) {
    const pair: unknown = headers[i]
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      return refuse(`${at}.headers[${i}]`, "expected a [name, value] pair of strings")
    }
  }
  for (const key of ["traceId", "spanId"] as const) {
    const value = frame[key]
    if (value !== undefined && value !== null && typeof value !== "string") {
      return refuse(`${at}.${key}`, `expected a string, got ${describe(value)}`)
    }
  }
  const sampled = frame.sampled
  if (sampled !== undefined && sampled !== null && typeof sampled !== "boolean") {
    return refuse(`${at}.sampled`, `expected a boolean, got ${describe(sampled)}`)
  }
  const decoded = decode(frame.payload)
  // Payload fields are named as the native API names its body fields (`entities[0].id`, `request.k`).
  return decoded._tag === "Left" ? ErrorMapping.fromParseError(decoded.left) : undefined
}

const checkFrame = (frame: unknown, at: string, seen: Set<string>): InvalidInput | undefined => {
  if (!isRecord(frame)) return refuse(at, `expected an RPC message (a map with a _tag), got ${describe(frame)}`)
  const tag = frame._tag
  if (typeof tag !== "string" || !CLIENT_TAGS.has(tag)) {
    return refuse(`${at}._tag`, `expected one of Request, Ack, Interrupt, Ping, got ${describe(tag)}`)
  }
  switch (tag) {
    case "Request":
      return checkRequest(frame, at, seen)
    case "Ack":
    case "Interrupt":
      return typeof frame.requestId === "string" && REQUEST_ID.test(frame.requestId)
        ? undefined
        : refuse(`${at}.requestId`, `expected a request id (a decimal integer string), got ${describe(frame.requestId)}`)
    default:
      return undefined
  }
}

/** The options of RpcSerialization.msgPack, so the frames read here are the ones the server would read. */
const MSGPACK_OPTIONS = { useRecords: true } as const

/**
 * Checks a /rpc body: undefined when the RPC server may have it, otherwise
 * InvalidInput naming what is wrong (`body` for bytes that are not complete
 * msgpack, `body[i]…` for a malformed frame, the payload's path for a
 * payload that fails its schema).
 */
export const check = (bytes: Uint8Array): InvalidInput | undefined => {
  if (bytes.length === 0) return refuse("body", "expected msgpack RPC messages, got an empty body")
  let frames: ReadonlyArray<unknown>
  try {
    // A fresh decoder per body, as the server uses: record definitions do not leak between requests.
    frames = new Unpackr(MSGPACK_OPTIONS).unpackMultiple(bytes) as ReadonlyArray<unknown>
  } catch (error) {
    const incomplete = typeof error === "object" && error !== null && (error as { incomplete?: unknown }).incomplete === true
    return refuse("body", incomplete ? "truncated msgpack (a message ends early)" : "is not valid msgpack")
  }
  if (frames.length === 0) return refuse("body", "expected at least one msgpack RPC message")
  const seen = new Set<string>()
  for (let i = 0; i < frames.length; i++) {
    const problem = checkFrame(frames[i], `body[${i}]`, seen)
    if (problem !== undefined) return problem
  }
  return undefined
}

// ---------------------------------------------------------------------------
// The guard
// ---------------------------------------------------------------------------

export type Guard = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest>

/**
 * Wraps the RPC server's HTTP app. `peerHeader` names the header carrying
 * the peer address (set by the route; the keyless loopback rule needs it).
 */
export const make = (options: {
  readonly peerHeader: string
}): Effect.Effect<Guard, never, Auth.Auth | ApiConfig.ApiConfig> =>
  Effect.gen(function* () {
    const auth = yield* Auth.Auth
    const config = yield* ApiConfig.ApiConfig
    const maxBytes = ApiConfig.maxBodyBytes(config)

    const answer = (error: Parameters<typeof ErrorMapping.toHttpResponse>[0], reason: Metrics.RejectReason) =>
      Effect.zipRight(
        Metrics.recordRejected("rpc", reason),
        Effect.flatMap(FiberRef.get(Limits.currentRequestId), (requestId) => ErrorMapping.toHttpResponse(error, requestId)),
      )

    return <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const read = yield* Effect.either(Limits.readBodyBytes(request, maxBytes))
        const problem = read._tag === "Left" ? read.left : check(read.right)
        if (problem === undefined && read._tag === "Right") {
          return yield* Effect.provideService(app, HttpServerRequest.HttpServerRequest, withBody(request, read.right))
        }
        // Refused: an unauthenticated caller learns only that (never the schema).
        const peer = request.headers[options.peerHeader] ?? Option.getOrUndefined(request.remoteAddress)
        const caller = yield* Effect.either(auth.authenticate(request.headers[Auth.API_KEY_HEADER], peer))
        if (caller._tag === "Left") return yield* answer(caller.left, "unauthenticated")
        const refused = problem as PayloadTooLarge | InvalidInput
        return yield* answer(refused, refused._tag === "PayloadTooLarge" ? "payload_too_large" : "invalid_argument")
      })
  })
