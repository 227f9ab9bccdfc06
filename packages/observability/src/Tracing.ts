/**
 * Span export and trace-context helpers. With OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT set, every Effect span goes through the OpenTelemetry SDK
 * (@effect/opentelemetry's tracer over a BasicTracerProvider) to a BatchSpanProcessor and the
 * OTLP/HTTP (JSON) exporter. Without them nothing is installed: Effect's built-in tracer keeps
 * its cheap in-memory spans (trace ids still reach the logs) and nothing is exported.
 *
 * Cost (measured with `npm run bench -- tracing`): a request is one span per layer of the
 * architecture (request, Coordinator, QueryExecutor and its stages), the platform's own
 * per-request HTTP span is turned off (it duplicated ours), and the OpenTelemetry context is
 * not re-entered on every fiber step (see `withoutContextPropagation`).
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as OtelResource from "@effect/opentelemetry/Resource"
import * as OtelTracer from "@effect/opentelemetry/Tracer"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

export interface ExportSettings {
  /** Full URL spans are POSTed to (…/v1/traces). */
  readonly tracesUrl: string
  readonly serviceName: string
}

/**
 * The standard OpenTelemetry variables, read through Effect `Config` (so tests can use a
 * ConfigProvider). A signal-specific endpoint is used as is; the generic one gets
 * `/v1/traces` appended, as the OTLP exporter spec says. OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none turn export off even when an endpoint is set.
 */
export const exportSettings: Effect.Effect<Option.Option<ExportSettings>, ConfigError.ConfigError> = Effect.gen(
  function* () {
    const disabled = yield* Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false))
    const exporter = yield* Config.string("OTEL_TRACES_EXPORTER").pipe(Config.withDefault("otlp"))
    const tracesEndpoint = yield* Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    const endpoint = yield* Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT"))
    const serviceName = yield* Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("allidbd"))
    if (disabled || exporter.trim().toLowerCase() === "none") return Option.none()
    const tracesUrl = Option.orElse(tracesEndpoint, () =>
      Option.map(endpoint, (base) => `${base.replace(/\/+$/, "")}/v1/traces`),
    )
    return Option.map(tracesUrl, (url) => ({ tracesUrl: url, serviceName }))
  },
)

/**
 * @effect/opentelemetry's tracer re-enters the span as the active OpenTelemetry context on
 * every fiber step, so that OpenTelemetry-instrumented non-Effect code sees it. Nothing in
 * this server is instrumented that way and no context manager is registered (so the context
 * entered is dropped at once), yet building it cost a few percent of a query's CPU: spans are
 * made by the OpenTelemetry tracer and everything else runs as is.
 */
export const withoutContextPropagation = (tracer: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) =>
      tracer.span(name, parent, context, links, startTime, kind, options),
    context: (execution) => execution(),
  })

/**
 * The SDK's tracer provider with the batch processor and the OTLP/HTTP exporter; on close it
 * flushes what is queued (bounded, so a dead collector cannot hold up shutdown).
 */
const layerTracerProvider = (settings: ExportSettings) =>
  Layer.scoped(
    OtelTracer.OtelTracerProvider,
    Effect.flatMap(OtelResource.Resource, (resource) =>
      Effect.acquireRelease(
        Effect.sync(
          () =>
            // Queue size, batch size and delay come from the standard OTEL_BSP_* variables.
            new BasicTracerProvider({
              resource,
              spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.tracesUrl }))],
            }),
        ),
        (provider) =>
          // A collector that is down or refusing must not turn shutdown into a defect.
          Effect.tryPromise(() => provider.forceFlush().then(() => provider.shutdown())).pipe(
            Effect.catchAll((error) => Effect.logWarning("could not flush the last spans", error)),
            Effect.interruptible,
            Effect.timeoutOption("3 seconds"),
          ),
      ),
    ),
  )

/** Exports every Effect span over OTLP/HTTP for the life of the layer; flushes on close. */
export const layerExport = (settings: ExportSettings, options: { readonly nodeId: string }): Layer.Layer<never> =>
  Layer.unwrapEffect(Effect.map(OtelTracer.make, (tracer) => Layer.setTracer(withoutContextPropagation(tracer)))).pipe(
    Layer.provide(OtelTracer.layerTracer),
    Layer.provide(layerTracerProvider(settings)),
    Layer.provide(
      OtelResource.layerFromEnv(
        OtelResource.configToAttributes({
          serviceName: settings.serviceName,
          attributes: { "service.instance.id": options.nodeId, "allidb.node_id": options.nodeId },
        }),
      ),
    ),
  )

/**
 * Tracing as configured by the environment: OTLP export when an endpoint is set, otherwise
 * nothing. Also turns off the platform's per-request HTTP span (the API surfaces make their
 * own request span, `withRequestSpan`) and redacts the AlliDB API key header from the
 * request-header attributes that span would record should it be turned back on.
 */
export const layer = (options: { readonly nodeId: string }): Layer.Layer<never, ConfigError.ConfigError> =>
  Layer.mergeAll(
    redactApiKeyHeader,
    platformHttpSpanOff,
    Layer.unwrapEffect(
      Effect.map(
        exportSettings,
        Option.match({
          onNone: () => Layer.empty,
          onSome: (settings) => layerExport(settings, options),
        }),
      ),
    ),
  )

/** Header that carries a tenant's API key; never recorded on spans or in logs. */
export const apiKeyHeader = "x-allidb-api-key"

/**
 * @effect/platform's HTTP tracer copies request headers onto the server span, redacting only
 * a default list (authorization, cookie, …). Our key header is added to that list.
 */
export const redactApiKeyHeader: Layer.Layer<never> = Layer.scopedDiscard(
  Effect.locallyScopedWith(Headers.currentRedactedNames, (names) => [...names, apiKeyHeader]),
)

/**
 * @effect/platform wraps every HTTP request in an `http.server <METHOD>` span holding the URL
 * and every request header. Our request span (surface, route template, tenant, request id,
 * sizes, status) says more, with bounded attributes; two spans per request doubled the
 * export cost of the cheapest requests for nothing.
 */
export const platformHttpSpanOff: Layer.Layer<never> = Layer.scopedDiscard(
  Effect.locallyScoped(HttpMiddleware.currentTracerDisabledWhen, () => true),
)

// ---------------------------------------------------------------------------------------------
// Continuing a caller's trace.

const zeroTrace = /^0{32}$/
const zeroSpan = /^0{16}$/

/** Parses a W3C `traceparent` value (version 00); an invalid or all-zero id gives none. */
export const parseTraceparent = (value: string): Option.Option<Tracer.ExternalSpan> =>
  Option.filter(
    HttpTraceContext.w3c(Headers.fromInput({ traceparent: value.trim().toLowerCase() })),
    (span) => !zeroTrace.test(span.traceId) && !zeroSpan.test(span.spanId),
  )

/**
 * The caller's span from request headers or gRPC metadata: W3C `traceparent` first, then
 * B3. Header names are matched case-insensitively.
 */
export const parentFromHeaders = (headers: Headers.Input): Option.Option<Tracer.ExternalSpan> => {
  const normalized = Headers.fromInput(headers)
  const traceparent = normalized.traceparent
  return traceparent !== undefined
    ? parseTraceparent(traceparent)
    : Option.filter(HttpTraceContext.fromHeaders(normalized), (span) => !zeroTrace.test(span.traceId))
}

/**
 * A parent for requests that carry only a trace id (the `trace_id` field of gRPC and
 * compatibility bodies). The caller's span id is unknown, so the parent span id is derived
 * from the trace id itself: deterministic, and a backend shows the request span as the
 * root of its branch within the caller's trace.
 */
export const parentFromTraceId = (traceId: string): Option.Option<Tracer.ExternalSpan> => {
  const id = traceId.trim().toLowerCase()
  if (!/^[0-9a-f]{32}$/.test(id) || zeroTrace.test(id)) return Option.none()
  const low = id.slice(16)
  const spanId = zeroSpan.test(low) ? id.slice(0, 16) : low
  return Option.some(Tracer.externalSpan({ traceId: id, spanId, sampled: true }))
}

/** `traceparent` header value for the current span, for outgoing node-to-node calls. */
export const currentTraceparent: Effect.Effect<Option.Option<string>> = Effect.map(Effect.currentSpan, (span) =>
  Option.some(`00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`),
).pipe(Effect.orElseSucceed(() => Option.none()))

// ---------------------------------------------------------------------------------------------
// Request spans.

export interface RequestSpanInfo {
  /** "http" | "compat" | "grpc" | "rpc" | "internal"; kept a string here to avoid a cycle. */
  readonly surface: string
  /** Route template or method name; never a concrete path with ids. */
  readonly route: string
  readonly tenant?: string | undefined
  readonly requestId?: string | undefined
  readonly requestBytes?: number | undefined
  /** The HTTP method, for HTTP surfaces. */
  readonly method?: string | undefined
  /** The caller's span, from `parentFromHeaders` / `parentFromTraceId`. */
  readonly parent?: Option.Option<Tracer.ExternalSpan> | Tracer.ExternalSpan | undefined
}

export const requestSpanName = (info: Pick<RequestSpanInfo, "surface" | "route">): string =>
  `${info.surface} ${info.route}`

export const requestSpanAttributes = (info: RequestSpanInfo): Record<string, unknown> => {
  const attributes: Record<string, unknown> = { "allidb.surface": info.surface, "allidb.route": info.route }
  if (info.tenant !== undefined) attributes["allidb.tenant"] = info.tenant
  if (info.requestId !== undefined) attributes["allidb.request_id"] = info.requestId
  if (info.requestBytes !== undefined) attributes["allidb.request.bytes"] = info.requestBytes
  if (info.method !== undefined) attributes["http.request.method"] = info.method
  return attributes
}

const resolveParent = (parent: RequestSpanInfo["parent"]): Tracer.AnySpan | undefined =>
  parent === undefined ? undefined : Option.isOption(parent) ? Option.getOrUndefined(parent) : parent

/**
 * Runs `effect` inside a server span named "<surface> <route>" with tenant, route, request
 * id and size attributes, as a child of the caller's span when one was given (otherwise of
 * the current span, e.g. the platform's HTTP span).
 */
export const withRequestSpan =
  (info: RequestSpanInfo) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    const parent = resolveParent(info.parent)
    const attributes = requestSpanAttributes(info)
    // No stack capture: a request span's call site is always this wrapper, and creating an
    // Error per request is the most expensive part of an unexported span.
    return parent === undefined
      ? Effect.withSpan(effect, requestSpanName(info), { kind: "server", attributes, captureStackTrace: false })
      : Effect.withSpan(effect, requestSpanName(info), { kind: "server", attributes, parent, captureStackTrace: false })
  }

/** Records the response size on the current span. */
export const annotateResponseBytes = (bytes: number): Effect.Effect<void> =>
  Effect.annotateCurrentSpan("allidb.response.bytes", bytes)
