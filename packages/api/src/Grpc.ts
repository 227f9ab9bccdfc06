/**
 * gRPC service `allidb.AlliDB` on @grpc/grpc-js, wire-compatible with existing
 * AlliDB clients (proto/allidb.proto). Requests are decoded with the same
 * schemas as the compatible REST routes and run the same Compat operations on
 * the Coordinator, in fibers of a FiberSet owned by the layer's scope: a
 * client's deadline or cancellation interrupts its fiber, and closing the
 * scope drains the server (tryShutdown, bounded) before interrupting the rest.
 *
 * Every call is observed like an HTTP request (RequestTelemetry): a server
 * span named after the method, continuing the caller's trace from a
 * `traceparent` (or B3) metadata entry or else the message's `trace_id`, the
 * request counter labelled with the gRPC status name, and an access line.
 *
 * The proto is loaded with keepCase (snake_case fields as on the wire),
 * int64 as decimal strings (all 64 bits of nanosecond timestamps survive) and
 * enums as their names.
 */
import { isIP } from "node:net"
import { fileURLToPath } from "node:url"
import type { TenantId } from "@allidb/core"
import { ClientError, DeadlineExceeded, InvalidInput, PermissionDenied } from "@allidb/core"
import type { Coordinator } from "@allidb/cluster"
import { Metrics, RequestTelemetry, Tracing } from "@allidb/observability"
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import * as ApiConfig from "./ApiConfig.js"
import * as Auth from "./Auth.js"
import * as Compat from "./Compat.js"
import * as ErrorMapping from "./ErrorMapping.js"
import * as Limits from "./Limits.js"

/** The .proto beside the sources (`src/` and `dist/` are both one level below the package). */
export const PROTO_PATH = fileURLToPath(new URL("../proto/allidb.proto", import.meta.url))

/**
 * proto-loader options shared by the server and the tests' client: int64 as
 * decimal strings (a Number would lose the low bits of nanosecond
 * timestamps), enums by name, proto3 defaults filled in.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
}

export const SERVICE_NAME = "allidb.AlliDB"

/** Loads the AlliDB service definition (server side) and its client constructor. */
export const loadService = (): { readonly definition: grpc.ServiceDefinition; readonly client: grpc.ServiceClientConstructor } => {
  const packageDefinition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS)
  const loaded = grpc.loadPackageDefinition(packageDefinition)
  const pkg = loaded.allidb
  const ctor = pkg !== undefined && !isClientConstructor(pkg) && "AlliDB" in pkg ? pkg.AlliDB : undefined
  if (ctor === undefined || !isClientConstructor(ctor)) {
    throw new Error(`${PROTO_PATH} does not define service ${SERVICE_NAME}`)
  }
  return { definition: ctor.service, client: ctor }
}

const isClientConstructor = (value: unknown): value is grpc.ServiceClientConstructor =>
  typeof value === "function" && "service" in value

/** The running server: where it listens (port 0 in the address resolves to the bound port). */
export interface GrpcServerShape {
  readonly host: string
  readonly port: number
}

export class GrpcServer extends Context.Tag("@allidb/api/GrpcServer")<GrpcServer, GrpcServerShape>() {}

/** The address could not be bound (in use, not permitted, malformed). Never leaves the process. */
export class GrpcBindError extends Data.TaggedError("GrpcBindError")<{
  readonly address: string
  readonly message: string
}> {}

export interface Options {
  /** `host:port` (the lead passes ALLIDB_GRPC_ADDR); port 0 picks a free port. */
  readonly address: string
  /** Insecure when absent; the TLS work passes `grpc.ServerCredentials.createSsl(...)`. */
  readonly credentials?: grpc.ServerCredentials
  /** Reported by HealthCheck. */
  readonly version?: string
  /** How long shutdown waits for in-flight calls before cancelling them (default 5 s). */
  readonly shutdownTimeoutMs?: number
}

type Services = Coordinator.Coordinator | Auth.Auth | ApiConfig.ApiConfig | Limits.RateLimiter

/** Splits `call.getPeer()` (`127.0.0.1:5000`, `::1:5000`, `[::1]:5000`) into the IP address. */
export const peerAddress = (peer: string): string | undefined => {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer)
  if (bracketed !== null) return bracketed[1]
  const withPort = /^(.*):(\d+)$/.exec(peer)
  // grpc-js appends the port whenever the socket has one, so strip it first:
  // `::1:5000` is itself a valid IPv6 literal, and the wrong one.
  if (withPort !== null && isIP(withPort[1]) !== 0) return withPort[1]
  return isIP(peer) !== 0 ? peer : undefined
}

const metadataValue = (metadata: grpc.Metadata, key: string): string | undefined => {
  const value = metadata.get(key)[0]
  if (value === undefined) return undefined
  return typeof value === "string" ? value : value.toString("utf8")
}

/** Call metadata as HTTP-style headers (text entries only; `-bin` entries carry no trace context). */
const metadataHeaders = (metadata: grpc.Metadata): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === "string") out[key] = value
  }
  return out
}

/**
 * The caller's span: W3C `traceparent` (or B3) metadata first, else the
 * `trace_id` field that PutEntity, BatchPutEntities and Query messages carry.
 */
export const callerSpan = (metadata: grpc.Metadata, message: unknown): Option.Option<Tracer.ExternalSpan> =>
  Option.orElse(Tracing.parentFromHeaders(metadataHeaders(metadata)), () =>
    typeof message === "object" && message !== null && "trace_id" in message && typeof message.trace_id === "string"
      ? Tracing.parentFromTraceId(message.trace_id)
      : Option.none(),
  )

/**
 * The status-name label of a finished call, by the same rules as the status
 * the client receives (`statusFor`): a cancelled call is CANCELLED, one
 * interrupted by shutdown UNAVAILABLE.
 */
const statusName = (exit: Exit.Exit<unknown, unknown>, cancelled: boolean): ErrorMapping.GrpcCodeName => {
  if (Exit.isSuccess(exit)) return "OK"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && isClientError(failure.value)) return ErrorMapping.grpcCode(failure.value)
  if (Cause.isInterruptedOnly(exit.cause)) return cancelled ? "CANCELLED" : "UNAVAILABLE"
  return "INTERNAL"
}

/** Proto3 cannot tell "unset" from zero / empty: drop those so the schema defaults apply. */
const withoutProtoDefaults = (message: Record<string, unknown>, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...message }
  for (const key of keys) {
    const value = out[key]
    if (value === 0 || value === "" || value === "0" || value === null) delete out[key]
  }
  return out
}

/**
 * `double importance = 8` has no presence in proto3: an entity sent without an
 * importance arrives as 0. REST and /v1 store "none" (scored as 0.5), so gRPC
 * treats 0 as unset too — the same entity then ranks the same on every
 * surface. An importance of exactly 0 is therefore not expressible over gRPC;
 * send a tiny positive value instead.
 */
const withoutUnsetImportance = (entity: unknown): unknown => {
  if (typeof entity !== "object" || entity === null) return entity
  const record = entity as Record<string, unknown>
  return record.importance === 0 ? withoutProtoDefaults(record, ["importance"]) : entity
}

// Outgoing messages: bigint nanos become decimal strings (int64 with longs: String).

const edgeToProto = (edge: Compat.CompatEdgeOut) => ({ ...edge, timestamp_nanos: edge.timestamp_nanos.toString() })

export const entityToProto = (entity: Compat.CompatEntityOut) => ({
  ...entity,
  embeddings: entity.embeddings.map((e) => ({ ...e, version: String(e.version), timestamp_nanos: e.timestamp_nanos.toString() })),
  outgoing_edges: entity.outgoing_edges.map(edgeToProto),
  incoming_edges: entity.incoming_edges.map(edgeToProto),
  created_at_nanos: entity.created_at_nanos.toString(),
  updated_at_nanos: entity.updated_at_nanos.toString(),
})

/**
 * A request whose bytes are not a valid message. grpc-js answers a throwing
 * deserializer with INTERNAL; bad input must be INVALID_ARGUMENT, so the
 * deserializer hands this marker to the handler instead.
 */
class MalformedMessage {
  constructor(readonly reason: string) {}
}

const tolerantDefinition = (definition: grpc.ServiceDefinition): grpc.ServiceDefinition => {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {}
  for (const [name, method] of Object.entries(definition)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes)
        } catch (error) {
          return new MalformedMessage(
            `not a valid ${name} request message${error instanceof Error ? ` (${error.message})` : ""}`,
          )
        }
      },
    }
  }
  return out
}

const isClientError = Schema.is(ClientError)

const decode = <A, I>(schema: Schema.Schema<A, I>, message: unknown) =>
  Schema.decodeUnknown(schema, { errors: "first" })(message).pipe(
    Effect.mapError((error: ParseResult.ParseError) => ErrorMapping.fromParseError(error)),
  )

/** A unary method: authenticated ones get the caller's tenant; HealthCheck needs no key. */
type Handled<Req, Res> =
  | {
      readonly name: string
      readonly authenticated: true
      readonly run: (request: Req, tenant: TenantId) => Effect.Effect<Res, ClientError, Services>
    }
  | {
      readonly name: string
      readonly authenticated: false
      readonly run: (request: Req) => Effect.Effect<Res, ClientError, Services>
    }

/**
 * Builds the server and binds it. The FiberSet is created first so its
 * finalizer (interrupting whatever still runs) comes after the server's
 * drain.
 */
export const make = (options: Options): Effect.Effect<GrpcServerShape, GrpcBindError, Scope.Scope | Services> =>
  Effect.gen(function* () {
    const config = yield* ApiConfig.ApiConfig
    const auth = yield* Auth.Auth
    const limiter = yield* Limits.RateLimiter
    const runFork = yield* FiberSet.makeRuntime<Services>()
    const service = yield* Effect.try({
      try: loadService,
      catch: (cause) => cause,
    }).pipe(Effect.orDie)
    const version = options.version ?? "unknown"
    const limits: Compat.CompatLimits = { maxBatch: config.maxBatch, maxK: config.maxK }
    const maxBytes = ApiConfig.maxBodyBytes(config)

    const unary =
      <Req, Res>(handled: Handled<Req, Res>) =>
      (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
        const requestId = Limits.pickRequestId(metadataValue(call.metadata, Limits.REQUEST_ID_HEADER))
        let cancelled = false
        const program = Effect.gen(function* () {
          const request: unknown = call.request
          // Checked after auth, as HTTP reads the body only for a known caller.
          const malformed =
            request instanceof MalformedMessage
              ? new InvalidInput({ field: "request", message: `request: ${request.reason}` })
              : undefined
          let work: Effect.Effect<Res, ClientError, Services>
          if (handled.authenticated) {
            const apiKey = metadataValue(call.metadata, Auth.API_KEY_HEADER)
            const peer = peerAddress(call.getPeer())
            // The same per-key bucket as HTTP, taken before auth so unknown keys are limited too.
            yield* limiter
              .take(Limits.rateLimitKey(apiKey, peer))
              .pipe(Effect.tapError(() => Metrics.recordRateLimited("grpc")))
            const tenant = yield* auth
              .authenticate(apiKey, peer)
              .pipe(Effect.tapError(() => Metrics.recordRejected("grpc", "unauthenticated")))
            yield* RequestTelemetry.setTenant(tenant)
            if (malformed !== undefined) return yield* malformed
            work = handled.run(call.request, tenant)
          } else {
            if (malformed !== undefined) return yield* malformed
            work = handled.run(call.request)
          }
          // The tighter of the server's request timeout and the client's deadline.
          const deadline = Number(call.getDeadline())
          const now = yield* Clock.currentTimeMillis
          const remaining = Number.isFinite(deadline) ? Math.max(0, deadline - now) : Number.POSITIVE_INFINITY
          const timeoutMs = Math.min(config.requestTimeoutMs, remaining)
          return yield* work.pipe(
            Effect.timeoutFail({
              duration: Duration.millis(timeoutMs),
              onTimeout: () => new DeadlineExceeded({ timeoutMs: Math.round(timeoutMs), operation: handled.name }),
            }),
          )
        }).pipe(
          RequestTelemetry.observe(
            { surface: "grpc", route: handled.name, requestId, parent: callerSpan(call.metadata, call.request) },
            (exit) => statusName(exit, cancelled),
          ),
          Effect.annotateLogs({ rpc: handled.name, request_id: requestId }),
          Effect.locally(Limits.currentRequestId, requestId),
        )

        const fiber = runFork(program)
        let answered = false
        const onCancelled = () => {
          answered = true
          cancelled = true
          fiber.unsafeInterruptAsFork(FiberId.none)
        }
        call.on("cancelled", onCancelled)
        fiber.addObserver((exit) => {
          call.removeListener("cancelled", onCancelled)
          if (answered) return
          answered = true
          if (Exit.isSuccess(exit)) {
            callback(null, exit.value)
            return
          }
          const { status, log } = statusFor(handled.name, exit.cause, requestId)
          callback(status)
          runFork(log)
        })
      }

    /**
     * The status for a failed call, computed synchronously so an answer goes
     * out even while the FiberSet is closing; internal errors and defects
     * also get a log line under the request id (the client sees only the id).
     */
    const statusFor = (
      name: string,
      cause: Cause.Cause<unknown>,
      requestId: string,
    ): { readonly status: Partial<grpc.StatusObject>; readonly log: Effect.Effect<void> } => {
      const metadata = new grpc.Metadata()
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && isClientError(failure.value)) {
        const error = failure.value
        const code = ErrorMapping.grpcCodeValue(error)
        if (ErrorMapping.mappingOf(error).internal) {
          metadata.set(Limits.REQUEST_ID_HEADER, requestId)
          return {
            status: { code, details: `${ErrorMapping.publicMessage(error)} (request id ${requestId})`, metadata },
            log: ErrorMapping.logIfInternal(error, requestId),
          }
        }
        if (error._tag === "RateLimited") metadata.set("retry-after", ErrorMapping.retryAfterHeader(error.retryAfterSeconds))
        return { status: { code, details: error.message, metadata }, log: Effect.void }
      }
      if (Cause.isInterruptedOnly(cause)) {
        // Not the client (a cancelled call is never answered): the server is stopping.
        return { status: { code: grpc.status.UNAVAILABLE, details: "the server is shutting down", metadata }, log: Effect.void }
      }
      metadata.set(Limits.REQUEST_ID_HEADER, requestId)
      return {
        status: { code: grpc.status.INTERNAL, details: `${ErrorMapping.defectBody(requestId).error} (request id ${requestId})`, metadata },
        log: Effect.logError(`gRPC ${name} failed`, cause).pipe(Effect.annotateLogs({ request_id: requestId })),
      }
    }

    const replicaRefused = (name: string): Handled<unknown, never> => ({
      name,
      authenticated: true,
      run: () => Effect.fail(new PermissionDenied({ message: `${name} is reserved for cluster peers` })),
    })

    const implementation: grpc.UntypedServiceImplementation = {
      PutEntity: unary<Record<string, unknown>, unknown>({
        name: "PutEntity",
        authenticated: true,
        run: (message, tenant) =>
          Effect.gen(function* () {
            const body = withoutProtoDefaults(message, ["trace_id"])
            const request = yield* decode(Compat.PutEntityRequest, { ...body, entity: withoutUnsetImportance(body.entity) })
            const result = yield* Compat.putEntity(tenant, request)
            return { success: true, error_message: "", entity_id: result.entity_id }
          }),
      }),
      BatchPutEntities: unary<Record<string, unknown>, unknown>({
        name: "BatchPutEntities",
        authenticated: true,
        run: (message, tenant) =>
          Effect.gen(function* () {
            const body = withoutProtoDefaults(message, ["trace_id"])
            const entities = Array.isArray(body.entities) ? body.entities.map(withoutUnsetImportance) : body.entities
            const request = yield* decode(Compat.BatchPutEntitiesRequest, { ...body, entities })
            return yield* Compat.batchPutEntities(tenant, request, limits)
          }),
      }),
      Query: unary<Record<string, unknown>, unknown>({
        name: "Query",
        authenticated: true,
        run: (message, tenant) =>
          Effect.gen(function* () {
            const request = yield* decode(
              Compat.CompatQueryRequest,
              withoutProtoDefaults(message, ["k", "expand_factor", "trace_id"]),
            )
            const answer = yield* Compat.query(tenant, request, limits)
            return {
              results: answer.results.map((r) => ({
                entity_id: r.entity_id,
                score: r.score,
                entity: r.entity === undefined ? null : entityToProto(r.entity),
              })),
              trace_id: answer.trace_id,
              total_results: answer.total_results,
            }
          }),
      }),
      RangeScan: unary<Record<string, unknown>, unknown>({
        name: "RangeScan",
        authenticated: true,
        run: (message, tenant) =>
          Effect.gen(function* () {
            const request = yield* decode(Compat.RangeScanRequest, withoutProtoDefaults(message, ["limit"]))
            const page = yield* Compat.rangeScan(tenant, request)
            return { entities: page.entities.map(entityToProto), next_page_token: page.next_page_token }
          }),
      }),
      HealthCheck: unary<unknown, unknown>({
        name: "HealthCheck",
        authenticated: false,
        run: () =>
          Effect.map(Clock.currentTimeMillis, (now) => ({
            healthy: true,
            status: "SERVING",
            timestamp_nanos: Compat.millisToNanos(now).toString(),
            version,
          })),
      }),
      ReplicaRead: unary(replicaRefused("ReplicaRead")),
      ReplicaWrite: unary(replicaRefused("ReplicaWrite")),
    }

    const server = new grpc.Server({
      "grpc.max_receive_message_length": maxBytes,
      "grpc.max_send_message_length": maxBytes,
    })
    server.addService(tolerantDefinition(service.definition), implementation)

    const credentials = options.credentials ?? grpc.ServerCredentials.createInsecure()
    const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 5_000
    const port = yield* Effect.acquireRelease(
      Effect.async<number, GrpcBindError>((resume) => {
        server.bindAsync(options.address, credentials, (error, bound) => {
          if (error !== null) {
            server.forceShutdown()
            resume(Effect.fail(new GrpcBindError({ address: options.address, message: error.message })))
          } else {
            resume(Effect.succeed(bound))
          }
        })
      }),
      () =>
        // Finalizers run uninterruptibly: the wait must be made interruptible
        // or the timeout could not cut it short.
        Effect.interruptible(
          Effect.async<void>((resume) => {
            server.tryShutdown(() => resume(Effect.void))
          }),
        ).pipe(
          Effect.timeoutTo({
            duration: Duration.millis(shutdownTimeoutMs),
            onSuccess: () => Effect.logInfo("gRPC server stopped"),
            onTimeout: () =>
              Effect.sync(() => server.forceShutdown()).pipe(
                Effect.zipRight(Effect.logWarning(`gRPC calls still running after ${shutdownTimeoutMs} ms were cancelled`)),
              ),
          }),
          Effect.flatten,
        ),
    )
    const host = hostOf(options.address)
    yield* Effect.logInfo(`gRPC ${SERVICE_NAME} listening on ${host}:${port}`)
    return { host, port }
  })

const hostOf = (address: string): string => {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(address)
  if (bracketed !== null) return bracketed[1]
  const colon = address.lastIndexOf(":")
  return colon < 0 ? address : address.slice(0, colon)
}

/** The gRPC listener as a scoped layer: started when built, drained and stopped when its scope closes. */
export const layer = (options: Options): Layer.Layer<GrpcServer, GrpcBindError, Services> =>
  Layer.scoped(GrpcServer, make(options))
