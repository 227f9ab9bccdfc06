/**
 * The errors every package shares. They are Schema.TaggedErrors so they cross
 * RPC and HTTP unchanged; the API maps each tag to one HTTP status and gRPC
 * code (packages/api ErrorMapping). Broken invariants are defects, not errors.
 */
import * as Schema from "effect/Schema"

/** Bad input: names the field path and the rule it broke. */
export class InvalidInput extends Schema.TaggedError<InvalidInput>("@allidb/core/InvalidInput")("InvalidInput", {
  field: Schema.String,
  message: Schema.String,
}) {}

/** A vector whose dimension differs from the tenant's. */
export class DimensionMismatch extends Schema.TaggedError<DimensionMismatch>("@allidb/core/DimensionMismatch")(
  "DimensionMismatch",
  { field: Schema.String, expected: Schema.Number, actual: Schema.Number },
) {
  override get message(): string {
    return `${this.field}: vector dimension ${this.actual} does not match the tenant's dimension ${this.expected}`
  }
}

export class NotFound extends Schema.TaggedError<NotFound>("@allidb/core/NotFound")("NotFound", {
  what: Schema.String,
  id: Schema.String,
}) {
  override get message(): string {
    return `${this.what} ${JSON.stringify(this.id)} not found`
  }
}

export class Unauthenticated extends Schema.TaggedError<Unauthenticated>("@allidb/core/Unauthenticated")(
  "Unauthenticated",
  { message: Schema.String },
) {}

export class PermissionDenied extends Schema.TaggedError<PermissionDenied>("@allidb/core/PermissionDenied")(
  "PermissionDenied",
  { message: Schema.String },
) {}

export class RateLimited extends Schema.TaggedError<RateLimited>("@allidb/core/RateLimited")("RateLimited", {
  retryAfterSeconds: Schema.Number,
}) {
  override get message(): string {
    return `rate limit exceeded; retry after ${this.retryAfterSeconds} s`
  }
}

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>("@allidb/core/PayloadTooLarge")(
  "PayloadTooLarge",
  { limitBytes: Schema.Number },
) {
  override get message(): string {
    return `request body exceeds the limit of ${this.limitBytes} bytes`
  }
}

export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>("@allidb/core/DeadlineExceeded")(
  "DeadlineExceeded",
  { timeoutMs: Schema.Number, operation: Schema.String },
) {
  override get message(): string {
    return `${this.operation} exceeded its deadline of ${this.timeoutMs} ms`
  }
}

/** The node cannot take the request now (starting, stopping, overloaded). */
export class Unavailable extends Schema.TaggedError<Unavailable>("@allidb/core/Unavailable")("Unavailable", {
  message: Schema.String,
}) {}

/** An I/O failure in storage. Details go to the log; the client sees the request id. */
export class StorageFailure extends Schema.TaggedError<StorageFailure>("@allidb/core/StorageFailure")(
  "StorageFailure",
  { operation: Schema.String, message: Schema.String },
) {}

/** Damaged data on disk: the file and offset where it was detected. */
export class Corruption extends Schema.TaggedError<Corruption>("@allidb/core/Corruption")("Corruption", {
  file: Schema.String,
  offset: Schema.Number,
  message: Schema.String,
}) {}

/**
 * A storage call whose key names a tenant other than the caller's. Only
 * returned when fail-hard is off; with fail-hard on the node stops.
 */
export class TenantViolation extends Schema.TaggedError<TenantViolation>("@allidb/core/TenantViolation")(
  "TenantViolation",
  { expected: Schema.String, actual: Schema.String, operation: Schema.String },
) {
  override get message(): string {
    return `tenant violation in ${this.operation}`
  }
}

/** Every error a client can see. */
export const ClientError = Schema.Union(
  InvalidInput,
  DimensionMismatch,
  NotFound,
  Unauthenticated,
  PermissionDenied,
  RateLimited,
  PayloadTooLarge,
  DeadlineExceeded,
  Unavailable,
  StorageFailure,
  Corruption,
  TenantViolation,
)
export type ClientError = typeof ClientError.Type
