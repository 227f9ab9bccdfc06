/**
 * The one table that maps every client-visible error (core `ClientError`) to
 * an HTTP status and a gRPC status code, plus the JSON error body every HTTP
 * surface answers with. Internal errors (storage, corruption, tenant
 * violations) never show their details to a client: the body carries a
 * request id and the details go to the log under the same id.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { ClientError } from "@allidb/core"
import { InvalidInput } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"

/** gRPC status code names (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export type GrpcCodeName =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED"

/** The numeric value of each gRPC code (what `@grpc/grpc-js` `status` holds). */
export const grpcCodeNumber: { readonly [K in GrpcCodeName]: number } = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
}

export type ErrorTag = ClientError["_tag"]

export interface ErrorMapping {
  readonly status: number
  readonly grpc: GrpcCodeName
  /** Internal: the client sees a generic message and the request id; details go to the log. */
  readonly internal: boolean
}

/** THE table. Adding a tag to core's ClientError makes this fail to compile until it is mapped. */
export const table: { readonly [K in ErrorTag]: ErrorMapping } = {
  InvalidInput: { status: 400, grpc: "INVALID_ARGUMENT", internal: false },
  DimensionMismatch: { status: 400, grpc: "INVALID_ARGUMENT", internal: false },
  Unauthenticated: { status: 401, grpc: "UNAUTHENTICATED", internal: false },
  PermissionDenied: { status: 403, grpc: "PERMISSION_DENIED", internal: false },
  NotFound: { status: 404, grpc: "NOT_FOUND", internal: false },
  PayloadTooLarge: { status: 413, grpc: "RESOURCE_EXHAUSTED", internal: false },
  RateLimited: { status: 429, grpc: "RESOURCE_EXHAUSTED", internal: false },
  DeadlineExceeded: { status: 504, grpc: "DEADLINE_EXCEEDED", internal: false },
  Unavailable: { status: 503, grpc: "UNAVAILABLE", internal: false },
  StorageFailure: { status: 500, grpc: "INTERNAL", internal: true },
  Corruption: { status: 500, grpc: "INTERNAL", internal: true },
  TenantViolation: { status: 500, grpc: "INTERNAL", internal: true },
}

/** What a defect (a bug, not a typed error) maps to. */
export const defectMapping: ErrorMapping = { status: 500, grpc: "INTERNAL", internal: true }

export const mappingOf = (error: ClientError): ErrorMapping => table[error._tag]
export const httpStatus = (error: ClientError): number => table[error._tag].status
export const grpcCode = (error: ClientError): GrpcCodeName => table[error._tag].grpc
export const grpcCodeValue = (error: ClientError): number => grpcCodeNumber[table[error._tag].grpc]

/**
 * The JSON body of every error answer on the HTTP surfaces:
 * `{error, code, field?, request_id?, retry_after_seconds?}`. `code` is the
 * gRPC code name, so one vocabulary names errors on every surface.
 */
export interface ErrorBody {
  readonly error: string
  readonly code: GrpcCodeName
  readonly field?: string
  readonly request_id?: string
  readonly retry_after_seconds?: number
}

const INTERNAL_MESSAGE = "internal error; quote the request id when reporting it"

/** The client-facing message of an error (generic for internal errors). */
export const publicMessage = (error: ClientError): string => (table[error._tag].internal ? INTERNAL_MESSAGE : error.message)

export const toErrorBody = (error: ClientError, requestId?: string): ErrorBody => {
  const mapping = table[error._tag]
  const body: {
    error: string
    code: GrpcCodeName
    field?: string
    request_id?: string
    retry_after_seconds?: number
  } = { error: publicMessage(error), code: mapping.grpc }
  if (error._tag === "InvalidInput" || error._tag === "DimensionMismatch") body.field = error.field
  if (error._tag === "RateLimited") body.retry_after_seconds = error.retryAfterSeconds
  if (requestId !== undefined && (mapping.internal || mapping.status >= 500)) body.request_id = requestId
  return body
}

/** The body answered for a defect: never the stack, only the request id. */
export const defectBody = (requestId: string): ErrorBody => ({
  error: INTERNAL_MESSAGE,
  code: "INTERNAL",
  request_id: requestId,
})

/** `Retry-After` is whole seconds (RFC 9110); never 0, which would invite a retry storm. */
export const retryAfterHeader = (seconds: number): string => String(Math.max(1, Math.ceil(seconds)))

/** Logs internal errors with their details (the client only sees the request id). */
export const logIfInternal = (error: ClientError, requestId: string | undefined): Effect.Effect<void> =>
  table[error._tag].internal
    ? Effect.logError("internal error answered to a client").pipe(
        Effect.annotateLogs({ request_id: requestId ?? "", error_tag: error._tag, error: JSON.stringify(error) }),
      )
    : Effect.void

/**
 * The complete HTTP answer for an error: status, JSON body and, for 429,
 * `Retry-After`. Logs internal errors. Used by every HTTP surface (native and
 * compatible REST).
 */
export const toHttpResponse = (
  error: ClientError,
  requestId?: string,
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.as(
    logIfInternal(error, requestId),
    HttpServerResponse.unsafeJson(toErrorBody(error, requestId), {
      status: table[error._tag].status,
      headers:
        error._tag === "RateLimited" ? { "retry-after": retryAfterHeader(error.retryAfterSeconds) } : undefined,
    }),
  )

/** Renders a path such as `entities[2].vector[0]`; the empty path is `root`. */
export const renderPath = (path: ReadonlyArray<PropertyKey>, root = "body"): string => {
  if (path.length === 0) return root
  let out = ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else if (typeof key === "symbol") out += `[${String(key)}]`
    else if (out === "") out = key
    else out += `.${key}`
  }
  return out.startsWith("[") ? `${root}${out}` : out
}

const RULE_CAP = 300

/**
 * A Schema ParseError as InvalidInput naming the first offending field path
 * and the rule it broke (e.g. `entities[0].id: entity id must not be empty`).
 * `prefix` is prepended to the path (e.g. `"query"` for URL parameters).
 */
export const fromParseError = (error: ParseResult.ParseError, options?: { readonly prefix?: string }): InvalidInput =>
  fromIssues(ParseResult.ArrayFormatter.formatErrorSync(error), options)

/** Same as `fromParseError`, from already-formatted issues (e.g. HttpApiDecodeError.issues). */
export const fromIssues = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>,
  options?: { readonly prefix?: string },
): InvalidInput => {
  const first = issues[0]
  const prefix = options?.prefix
  if (first === undefined) {
    return new InvalidInput({ field: prefix ?? "body", message: `${prefix ?? "body"}: invalid` })
  }
  const relative = renderPath(first.path, "")
  const field =
    prefix === undefined
      ? relative === ""
        ? "body"
        : relative
      : relative === ""
        ? prefix
        : relative.startsWith("[")
          ? `${prefix}${relative}`
          : `${prefix}.${relative}`
  const rule = first.message.length > RULE_CAP ? `${first.message.slice(0, RULE_CAP)}…` : first.message
  return new InvalidInput({ field, message: `${field}: ${rule}` })
}
