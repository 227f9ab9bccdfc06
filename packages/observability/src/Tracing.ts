/**
 * Span export and trace-context helpers. With OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT set, every ended Effect span is handed as a finished span to the
 * OpenTelemetry SDK's BatchSpanProcessor and OTLP/HTTP (JSON) exporter (`layerExport`). Without
 * them nothing is installed: Effect's built-in tracer keeps its cheap in-memory spans (trace
 * ids still reach the logs) and nothing is exported.
 *
 * Cost (measured with `npm run bench -- tracing`): a query is two exported spans (the request
 * and QueryExecutor.query, whose stages are attributes unless it expands or fetches), the
 * platform's own per-request HTTP span is turned off (it duplicated ours), and no SDK span is
 * kept alive per Effect span (see ExportedSpan).
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as OtelResource from "@effect/opentelemetry/Resource"
import type { AttributeValue, Attributes, SpanContext, SpanKind, SpanStatus } from "@opentelemetry/api"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import type * as OtelResources from "@opentelemetry/resources"
import { BatchSpanProcessor, type ReadableSpan, type TimedEvent } from "@opentelemetry/sdk-trace-base"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Inspectable from "effect/Inspectable"
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

// ---------------------------------------------------------------------------------------------
// Export: Effect spans handed to the SDK's batch processor as finished spans.

/** Where finished spans go: the SDK's BatchSpanProcessor (queue, batching, OTLP exporter). */
export interface FinishedSpanSink {
  readonly onEnd: (span: ReadableSpan) => void
}

const otelKind: Record<Tracer.SpanKind, number> = { internal: 0, server: 1, client: 2, producer: 3, consumer: 4 }
const SAMPLED = 1
const STATUS_OK = 1
const STATUS_ERROR = 2

const hrTime = (nanos: bigint): [number, number] => [Number(nanos / 1_000_000_000n), Number(nanos % 1_000_000_000n)]

/** As @effect/opentelemetry converts attribute values: primitives as they are, anything else as text. */
const attributeValue = (value: unknown): AttributeValue => {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value
    case "bigint":
      return value.toString()
    default:
      if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number" || typeof v === "boolean")) {
        return value as AttributeValue
      }
      return Inspectable.toStringUnknown(value)
  }
}

const toAttributes = (record: ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>): Attributes => {
  const out: Attributes = {}
  const entries = record instanceof Map ? record.entries() : Object.entries(record)
  for (const [key, value] of entries) out[key] = attributeValue(value)
  return out
}

const spanContextOf = (span: Tracer.AnySpan): SpanContext => ({
  traceId: span.traceId,
  spanId: span.spanId,
  traceFlags: span.sampled ? SAMPLED : 0,
  isRemote: span._tag === "ExternalSpan",
})

/**
 * An Effect span that, once ended, is handed to the batch processor as an OpenTelemetry
 * finished span. The export pipeline is the SDK's (BatchSpanProcessor, OTLP/HTTP exporter and
 * its serialiser); what is skipped is the SDK's live span per Effect span — context lookups,
 * sampler, id generator, attribute validation per `setAttribute` — which with
 * @effect/opentelemetry's tracer was most of what export added to a request. Sampling is the
 * SDK default's (parent-based, always on): a span whose parent was not sampled is not exported.
 */
class ExportedSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId: string
  readonly traceId: string
  readonly sampled: boolean
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly links: Array<Tracer.SpanLink>
  private readonly events: Array<TimedEvent> = []

  constructor(
    private readonly exporter: SpanExport,
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
  ) {
    this.status = { _tag: "Started", startTime }
    this.links = links.slice()
    this.traceId = parent._tag === "Some" ? parent.value.traceId : randomHex(32)
    this.spanId = randomHex(16)
    this.sampled = parent._tag === "Some" ? parent.value.sampled : true
  }

  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    const startTime = this.status.startTime
    this.status = { _tag: "Ended", startTime, endTime, exit }
    if (!this.sampled) return
    let status: SpanStatus = { code: STATUS_OK }
    const attributes = toAttributes(this.attributes)
    if (exit._tag === "Failure") {
      if (Cause.isInterruptedOnly(exit.cause)) {
        status = { code: STATUS_OK, message: Cause.pretty(exit.cause) }
        attributes["span.label"] = "⚠︎ Interrupted"
        attributes["status.interrupted"] = true
      } else {
        const first = Cause.prettyErrors(exit.cause)[0]
        if (first !== undefined) {
          status = { code: STATUS_ERROR, message: first.message }
          this.events.push({
            name: "exception",
            time: hrTime(endTime),
            attributes: {
              "exception.type": first.name,
              "exception.message": first.message,
              "exception.stacktrace": Cause.pretty(exit.cause, { renderErrorCause: true }),
            },
          })
        }
      }
    }
    const context = spanContextOf(this)
    const start = hrTime(startTime)
    const endHr = hrTime(endTime)
    const durationNanos = endTime - startTime
    this.exporter.sink.onEnd({
      name: this.name,
      kind: otelKind[this.kind] as SpanKind,
      spanContext: () => context,
      ...(this.parent._tag === "Some" ? { parentSpanContext: spanContextOf(this.parent.value) } : {}),
      startTime: start,
      endTime: endHr,
      duration: hrTime(durationNanos < 0n ? 0n : durationNanos),
      ended: true,
      status,
      attributes,
      links: this.links.map((link) => ({ context: spanContextOf(link.span), attributes: toAttributes(link.attributes) })),
      events: this.events,
      resource: this.exporter.resource,
      instrumentationScope: this.exporter.scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    })
  }

  attribute(key: string, value: unknown): void {
    this.attributes.set(key, value)
  }

  event(name: string, startTime: bigint, attributes?: Record<string, unknown>): void {
    this.events.push({ name, time: hrTime(startTime), attributes: attributes === undefined ? {} : toAttributes(attributes) })
  }

  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    this.links.push(...links)
  }
}

interface SpanExport {
  readonly sink: FinishedSpanSink
  readonly resource: OtelResources.Resource
  readonly scope: { readonly name: string }
}

const hexDigits = "0123456789abcdef"
const randomHex = (length: number): string => {
  let out = ""
  for (let i = 0; i < length; i++) out += hexDigits[(Math.random() * 16) | 0]
  return out
}

/**
 * An Effect tracer whose spans go to `sink` when they end (see ExportedSpan). The instrumentation
 * scope is named after the service, as @effect/opentelemetry's tracer names it.
 */
export const makeExportTracer = (sink: FinishedSpanSink, resource: OtelResources.Resource, scopeName: string): Tracer.Tracer => {
  const exporter: SpanExport = { sink, resource, scope: { name: scopeName } }
  return Tracer.make({
    span: (name, parent, context, links, startTime, kind) =>
      new ExportedSpan(exporter, name, parent, context, links, startTime, kind),
    // No OpenTelemetry context to enter (see withoutContextPropagation).
    context: (execution) => execution(),
  })
}

/** Exports every Effect span over OTLP/HTTP for the life of the layer; flushes on close. */
export const layerExport = (settings: ExportSettings, options: { readonly nodeId: string }): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const resource = yield* OtelResource.Resource
      const processor = yield* Effect.acquireRelease(
        // Queue size, batch size and delay come from the standard OTEL_BSP_* variables.
        Effect.sync(() => new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.tracesUrl }))),
        (processor) =>
          // A collector that is down or refusing must not turn shutdown into a defect.
          Effect.tryPromise(() => processor.forceFlush().then(() => processor.shutdown())).pipe(
            Effect.catchAll((error) => Effect.logWarning("could not flush the last spans", error)),
            Effect.interruptible,
            Effect.timeoutOption("3 seconds"),
          ),
      )
      return Layer.setTracer(makeExportTracer(processor, resource, settings.serviceName))
    }),
  ).pipe(
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
