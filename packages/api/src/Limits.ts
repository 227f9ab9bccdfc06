/**
 * Request limits shared by the HTTP surfaces: request ids, body size (413),
 * per-key token-bucket rate limit (429 + Retry-After), the per-request
 * deadline (504, the work interrupted) and the last-resort answer for a
 * defect (500 with the request id; the cause goes to the log only).
 *
 * A client that disconnects interrupts its request: NodeHttpServer
 * interrupts the request fiber when the response closes unfinished, which
 * propagates through everything here (the deadline included).
 */
import { randomUUID } from "node:crypto"
import { IncomingMessage } from "node:http"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { DeadlineExceeded, InvalidInput, PayloadTooLarge, RateLimited } from "@allidb/core"
import { Metrics, RequestTelemetry, Tracing } from "@allidb/observability"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Effect from "effect/Effect"
import type * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ApiConfig from "./ApiConfig.js"
import * as ApiKeys from "./ApiKeys.js"
import { API_KEY_HEADER } from "./Auth.js"
import * as ErrorMapping from "./ErrorMapping.js"

export const REQUEST_ID_HEADER = "x-request-id"

/**
 * The id of the request the current fiber serves (set by `httpMiddleware`). It lives in
 * RequestTelemetry, where the JSON logger reads it to put `request_id` on every line.
 */
export const currentRequestId: FiberRef.FiberRef<string | undefined> = RequestTelemetry.currentRequestId

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * The client's X-Request-Id when it is a sane token (echoed so a client can
 * correlate), otherwise a fresh UUID. Ids must be unique across restarts and
 * nodes, not reproducible, hence the OS generator rather than seeded Random.
 */
export const pickRequestId = (header: string | undefined): string =>
  header !== undefined && REQUEST_ID_PATTERN.test(header) ? header : randomUUID()

// ---------------------------------------------------------------------------
// Token bucket (pure) and the per-key rate limiter service
// ---------------------------------------------------------------------------

export interface Bucket {
  readonly tokens: number
  readonly updatedMs: number
}

export type TakeResult =
  | { readonly ok: true; readonly bucket: Bucket }
  | { readonly ok: false; readonly bucket: Bucket; readonly retryAfterSeconds: number }

/** Refills `bucket` at `ratePerSec` up to `burst`, then takes one token if it can. */
export const takeToken = (bucket: Bucket | undefined, nowMs: number, ratePerSec: number, burst: number): TakeResult => {
  const previous = bucket ?? { tokens: burst, updatedMs: nowMs }
  const elapsed = Math.max(0, nowMs - previous.updatedMs) / 1000
  const tokens = Math.min(burst, previous.tokens + elapsed * ratePerSec)
  if (tokens >= 1) return { ok: true, bucket: { tokens: tokens - 1, updatedMs: nowMs } }
  return { ok: false, bucket: { tokens, updatedMs: nowMs }, retryAfterSeconds: (1 - tokens) / ratePerSec }
}

export interface RateLimiterShape {
  /** Takes one request's token from `key`'s bucket, or fails with RateLimited. */
  readonly take: (key: string) => Effect.Effect<void, RateLimited>
}

export class RateLimiter extends Context.Tag("@allidb/api/Limits/RateLimiter")<RateLimiter, RateLimiterShape>() {}

/** Beyond this many tracked keys, buckets that have refilled completely are dropped. */
const MAX_TRACKED_KEYS = 100_000

export const makeRateLimiter: Effect.Effect<RateLimiterShape, never, ApiConfig.ApiConfig> = Effect.gen(function* () {
  const config = yield* ApiConfig.ApiConfig
  const rate = config.rateLimitPerSec
  if (rate <= 0) return { take: () => Effect.void }
  const burst = ApiConfig.effectiveBurst(config)
  const buckets = new Map<string, Bucket>()
  const evictFull = (nowMs: number) => {
    for (const [key, bucket] of buckets) {
      if (bucket.tokens + ((nowMs - bucket.updatedMs) / 1000) * rate >= burst) buckets.delete(key)
    }
  }
  return {
    take: (key) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMs) => {
        const result = takeToken(buckets.get(key), nowMs, rate, burst)
        buckets.set(key, result.bucket)
        if (buckets.size > MAX_TRACKED_KEYS) evictFull(nowMs)
        return result.ok ? Effect.void : Effect.fail(new RateLimited({ retryAfterSeconds: result.retryAfterSeconds }))
      }),
  }
})

export const layerRateLimiter: Layer.Layer<RateLimiter, never, ApiConfig.ApiConfig> = Layer.effect(
  RateLimiter,
  makeRateLimiter,
)

/**
 * The bucket a request draws from: its API key (by hash, so keys are not
 * kept in clear) or, without a key, its peer address.
 */
export const rateLimitKey = (apiKey: string | undefined, remoteAddress: string | undefined): string =>
  apiKey !== undefined && apiKey !== "" ? ApiKeys.hashKey(apiKey) : `peer:${remoteAddress ?? "unknown"}`

// ---------------------------------------------------------------------------
// The HTTP middleware
// ---------------------------------------------------------------------------

export interface HttpLimitsOptions {
  /** Apply the per-request deadline (off for /rpc, whose calls carry their own). */
  readonly deadline: boolean
  /** Apply the per-key rate limit here (off for /rpc, whose middleware answers a typed error). */
  readonly rateLimit: boolean
  /** The metrics / span / access-log label of the routes wrapped (default "http"). */
  readonly surface?: Metrics.Surface | undefined
  /** Record a span, metrics and an access-log line per request (default true; /rpc records per call instead). */
  readonly telemetry?: boolean | undefined
}

/** Status label of a request whose client went away before the answer (nginx's convention). */
export const CLIENT_CLOSED_STATUS = 499

const rejectReason = (error: ErrorMapping.ErrorTag): Metrics.RejectReason | undefined => {
  switch (error) {
    case "PayloadTooLarge":
      return "payload_too_large"
    case "DeadlineExceeded":
      return "deadline_exceeded"
    case "InvalidInput":
      return "invalid_argument"
    default:
      return undefined
  }
}

const isBodyTooLarge = (error: HttpServerError.RequestError): boolean =>
  error.cause instanceof Error && error.cause.message.includes("maxBytes exceeded")

/** A body read that failed (too large, or not the JSON it claims to be) as a client error. */
export const bodyReadError = (error: HttpServerError.RequestError, limitBytes: number): PayloadTooLarge | InvalidInput =>
  isBodyTooLarge(error)
    ? new PayloadTooLarge({ limitBytes })
    : new InvalidInput({ field: "body", message: "body: is not valid JSON" })

/**
 * Reads a request body as bytes, refusing it past `limitBytes`. On Node the
 * rest of an oversized body is drained (not the socket destroyed, as the
 * platform's own limit does), so the client still receives its 413. The
 * result owns its whole ArrayBuffer (never a slice of Node's shared buffer
 * pool), so it can be handed on as a request's `arrayBuffer`.
 */
export const readBodyBytes = (
  request: HttpServerRequest.HttpServerRequest,
  limitBytes: number,
): Effect.Effect<Uint8Array, PayloadTooLarge | InvalidInput> => {
  const source = nodeSource(request)
  if (source === undefined) {
    return request.arrayBuffer.pipe(
      Effect.map((buffer) => new Uint8Array(buffer)),
      HttpIncomingMessage.withMaxBodySize(Option.some(limitBytes)),
      Effect.mapError((error) =>
        isBodyTooLarge(error)
          ? new PayloadTooLarge({ limitBytes })
          : new InvalidInput({ field: "body", message: "body: could not be read" }),
      ),
    )
  }
  return Effect.async<Uint8Array, PayloadTooLarge | InvalidInput>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limitBytes) {
        cleanup()
        chunks.length = 0
        source.resume() // discard the rest so the answer can still be read
        resume(Effect.fail(new PayloadTooLarge({ limitBytes })))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.length
      }
      resume(Effect.succeed(bytes))
    }
    const onError = () => {
      cleanup()
      resume(Effect.fail(new InvalidInput({ field: "body", message: "body: could not be read" })))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  })
}

const utf8 = new TextDecoder()

/** `readBodyBytes` as UTF-8 text. */
export const readBodyText = (
  request: HttpServerRequest.HttpServerRequest,
  limitBytes: number,
): Effect.Effect<string, PayloadTooLarge | InvalidInput> =>
  Effect.map(readBodyBytes(request, limitBytes), (bytes) => utf8.decode(bytes))

const nodeSource = (request: HttpServerRequest.HttpServerRequest): IncomingMessage | undefined => {
  const source = (request as { readonly source?: unknown }).source
  return source instanceof IncomingMessage && !source.readableEnded ? source : undefined
}

/**
 * HttpApi answers its own decode failures (path or query parameters that do
 * not fit their schema) as `{_tag: "HttpApiDecodeError", issues}`; they are
 * rewritten into the one error shape, naming the parameter.
 */
const platformDecodeError = (response: HttpServerResponse.HttpServerResponse): InvalidInput | undefined => {
  if (response.status !== 400 || response.body._tag !== "Uint8Array") return undefined
  try {
    const parsed = JSON.parse(new TextDecoder().decode(response.body.body)) as {
      readonly _tag?: unknown
      readonly issues?: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>
    }
    return parsed._tag === "HttpApiDecodeError" && Array.isArray(parsed.issues)
      ? ErrorMapping.fromIssues(parsed.issues)
      : undefined
  } catch {
    return undefined
  }
}

const findRequestError = (cause: Cause.Cause<unknown>): HttpServerError.RequestError | undefined => {
  for (const defect of Cause.defects(cause)) {
    if (HttpServerError.isServerError(defect) && defect._tag === "RequestError") return defect
  }
  for (const failure of Cause.failures(cause)) {
    if (HttpServerError.isServerError(failure) && failure._tag === "RequestError") return failure
  }
  return undefined
}

/**
 * Wraps an HTTP app with the limits above. Needs ApiConfig and RateLimiter
 * when built; the returned middleware can wrap any route (the compatible
 * REST routes use it too).
 */
export type LimitsMiddleware = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest>

/**
 * Runs `effect` with a deadline: `Option.none()` when `millis` pass first, the work then
 * interrupted (and awaited, so its finalizers have run before the answer). One forked fiber
 * and a timer: `Effect.timeoutTo` races two forked fibers (the work and a sleeper) and joins
 * the winner's FiberRefs back, which profiled at about a sixth of a cheap request's CPU.
 * Nothing the request fiber reads after the work comes from the work's FiberRefs (the answer
 * is its value), so the join is not needed. The timer is a plain one, like the socket
 * timeouts it sits beside: a network deadline is wall-clock time (its tests are live).
 */
export const withDeadline = <A, E, R>(effect: Effect.Effect<A, E, R>, millis: number): Effect.Effect<Option.Option<A>, E, R> =>
  Effect.flatMap(Effect.fork(effect), (fiber) =>
    Effect.async<Option.Option<A>, E>((resume) => {
      let settled = false
      const timer = setTimeout(() => {
        if (settled) return
        settled = true
        resume(Effect.as(Fiber.interrupt(fiber), Option.none()))
      }, millis)
      fiber.addObserver((exit) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resume(Exit.isSuccess(exit) ? Effect.succeed(Option.some(exit.value)) : Effect.failCause(exit.cause))
      })
      // The request itself was interrupted (its client went away): so is the work.
      return Effect.suspend(() => {
        settled = true
        clearTimeout(timer)
        return Fiber.interrupt(fiber)
      })
    }),
  )

export const makeHttpMiddleware = (
  options: HttpLimitsOptions,
): Effect.Effect<LimitsMiddleware, never, ApiConfig.ApiConfig | RateLimiter> =>
  Effect.gen(function* () {
    const config = yield* ApiConfig.ApiConfig
    const limiter = yield* RateLimiter
    const maxBytes = ApiConfig.maxBodyBytes(config)
    const maxBodySize = Option.some(maxBytes)
    const surface = options.surface ?? "http"

    // The request, its route and the fiber-local request id are read straight from the
    // request fiber (one step instead of a service lookup each).
    return <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      Effect.withFiberRuntime<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest>((fiber) => {
        const context = fiber.currentContext
        const request = Context.unsafeGet(context, HttpServerRequest.HttpServerRequest)
        const routeContext = Context.getOption(context, HttpRouter.RouteContext)
        const requestId = pickRequestId(request.headers[REQUEST_ID_HEADER])
        const declared = Number(request.headers["content-length"])
        // A template ("/v1/entities/:id"), never a concrete path: metric labels stay bounded.
        const route = Option.isSome(routeContext) ? routeContext.value.route.path : "unmatched"
        const served = serve(app, request, requestId)
        const observed =
          options.telemetry === false
            ? served
            : RequestTelemetry.observe<HttpServerResponse.HttpServerResponse, E>(
              {
                surface,
                route,
                method: request.method,
                requestId,
                parent: Tracing.parentFromHeaders(request.headers),
                requestBytes: Number.isFinite(declared) ? declared : undefined,
              },
              (exit) => (exit._tag === "Success" ? exit.value.status : CLIENT_CLOSED_STATUS),
            )(served)
        return RequestTelemetry.withRequestId(observed, requestId)
      })

    function serve<E, R>(
      app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
      request: HttpServerRequest.HttpServerRequest,
      requestId: string,
    ): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R> {
      const tag = (response: HttpServerResponse.HttpServerResponse) =>
        HttpServerResponse.setHeader(response, REQUEST_ID_HEADER, requestId)
      const refuse = (error: Parameters<typeof ErrorMapping.toHttpResponse>[0]) => {
        const reason = rejectReason(error._tag)
        const counted =
          error._tag === "RateLimited"
            ? Metrics.recordRateLimited(surface)
            : reason === undefined
              ? Effect.void
              : Metrics.recordRejected(surface, reason)
        return Effect.zipRight(counted, Effect.map(ErrorMapping.toHttpResponse(error, requestId), tag))
      }

      const declared = request.headers["content-length"]
      if (declared !== undefined && Number(declared) > maxBytes) {
        return refuse(new PayloadTooLarge({ limitBytes: maxBytes }))
      }
      const guarded = HttpIncomingMessage.withMaxBodySize(app, maxBodySize)
      const timed = options.deadline ? withDeadline(guarded, config.requestTimeoutMs) : Effect.map(guarded, Option.some)
      const answered = Effect.flatMap(
        Effect.catchAllCause(timed, (cause) => {
          // A client that went away: nothing to answer, keep the interruption.
          if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
          const readError = findRequestError(cause)
          if (readError !== undefined && readError.reason === "Decode") {
            return Effect.map(refuse(bodyReadError(readError, maxBytes)), Option.some)
          }
          return Effect.logError("request failed with a defect").pipe(
            Effect.annotateLogs({ request_id: requestId, cause: Cause.pretty(cause) }),
            Effect.as(
              Option.some(tag(HttpServerResponse.unsafeJson(ErrorMapping.defectBody(requestId), { status: 500 }))),
            ),
          )
        }),
        (answer) => {
          if (Option.isSome(answer)) {
            const decodeError = platformDecodeError(answer.value)
            return decodeError === undefined ? Effect.succeed(tag(answer.value)) : refuse(decodeError)
          }
          return refuse(new DeadlineExceeded({ timeoutMs: config.requestTimeoutMs, operation: "request" }))
        },
      )
      if (!options.rateLimit) return answered
      const key = rateLimitKey(request.headers[API_KEY_HEADER], Option.getOrUndefined(request.remoteAddress))
      return Effect.catchAll(limiter.take(key), refuse).pipe(
        Effect.flatMap((refused) => (refused === undefined ? answered : Effect.succeed(refused))),
      )
    }
  })
