/**
 * Prometheus exposition of every Effect `Metric` in the process, plus the request metrics
 * every API surface records. Rendering goes through maintained code: @effect/opentelemetry
 * turns the global Effect metric registry into OpenTelemetry metric data, and the
 * OpenTelemetry Prometheus exporter (as a MetricReader that never starts its own server)
 * serialises it. `GET /metrics` is a route on the app's HttpLayerRouter.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { type CollectionResult, DataPointType, type MetricData, type MetricProducer } from "@opentelemetry/sdk-metrics"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import type * as Scope from "effect/Scope"

/** The content type Prometheus expects for the text format. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

export interface PrometheusShape {
  /** The Prometheus text exposition of all Effect metrics registered so far. */
  readonly render: Effect.Effect<string>
}

export class Prometheus extends Context.Tag("@allidb/observability/Metrics")<Prometheus, PrometheusShape>() {}

/**
 * Effect counters are not `incremental` unless asked, which OpenTelemetry maps to an
 * up-down counter and Prometheus then types as a gauge. Our counters only ever go up and
 * are named `_total` by convention, so a `_total` sum is promoted to a monotonic counter.
 * The unit "1" that @effect/opentelemetry puts on every untagged metric is dropped: it
 * carries no information and would add a `# UNIT` comment to every family.
 */
const conventional = (metric: MetricData): MetricData => {
  const descriptor = metric.descriptor.unit === "1" ? { ...metric.descriptor, unit: "" } : metric.descriptor
  if (metric.dataPointType === DataPointType.SUM && !metric.isMonotonic && metric.descriptor.name.endsWith("_total")) {
    return { ...metric, descriptor, isMonotonic: true }
  }
  return { ...metric, descriptor }
}

const conventionalProducer = (inner: MetricProducer): MetricProducer => ({
  collect: (options) =>
    inner.collect(options).then(
      (result): CollectionResult => ({
        ...result,
        resourceMetrics: {
          ...result.resourceMetrics,
          scopeMetrics: result.resourceMetrics.scopeMetrics.map((scope) => ({
            ...scope,
            metrics: scope.metrics.map(conventional),
          })),
        },
      }),
    ),
})

/** Registers the Effect metric producer with a Prometheus exporter for the life of the scope. */
export const make: Effect.Effect<PrometheusShape, never, Scope.Scope | OtelResource.Resource> = Effect.gen(function* () {
  // The exporter's own HTTP server is never started: /metrics is served by the app's router.
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
  const producer = yield* OtelMetrics.makeProducer
  yield* OtelMetrics.registerProducer(conventionalProducer(producer), () => exporter)
  // Same settings as the exporter's private serializer (no prefix, no timestamps, no scope labels).
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
  const render = Effect.promise(() => exporter.collect()).pipe(
    Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics)),
    Effect.withSpan("Metrics.render"),
  )
  return { render }
})

/**
 * The Prometheus service with its own OpenTelemetry resource: `service.name` (default
 * "allidbd") and the node id as `service.instance.id`, shown on the `target_info` line.
 */
export const layer = (options: { readonly nodeId: string; readonly serviceName?: string | undefined }) =>
  Layer.scoped(Prometheus, make).pipe(
    Layer.provide(
      OtelResource.layer({
        serviceName: options.serviceName ?? "allidbd",
        attributes: { "service.instance.id": options.nodeId },
      }),
    ),
  )

/** Mounts `GET /metrics` on the app's HttpLayerRouter. */
export const route: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | Prometheus> = HttpLayerRouter.use((router) =>
  Effect.flatMap(Prometheus, (prometheus) =>
    router.add(
      "GET",
      "/metrics",
      Effect.map(prometheus.render, (body) => HttpServerResponse.text(body, { contentType })),
    ),
  ),
)

// ---------------------------------------------------------------------------------------------
// Request metrics shared by every surface.

/** The API surfaces; a closed set so the label stays bounded. */
export type Surface = "http" | "compat" | "grpc" | "rpc" | "internal"

/** Why a request was refused before it reached a handler; a closed set. */
export type RejectReason =
  | "unauthenticated"
  | "permission_denied"
  | "invalid_argument"
  | "payload_too_large"
  | "deadline_exceeded"
  | "rate_limited"
  | "overloaded"
  | "tls"

export const requestsTotal = Metric.counter("allidb_requests_total", {
  description: "Requests served, by surface, route template and status",
  incremental: true,
})

export const requestDurationSeconds = Metric.histogram(
  "allidb_request_duration_seconds",
  // 0.25 ms .. ~16 s
  MetricBoundaries.exponential({ start: 0.000_25, factor: 2, count: 17 }),
  "Request latency, by surface and route template",
)

export const rateLimitedTotal = Metric.counter("allidb_rate_limited_total", {
  description: "Requests refused by a rate limit (429 / RESOURCE_EXHAUSTED)",
  incremental: true,
})

export const rejectedRequestsTotal = Metric.counter("allidb_rejected_requests_total", {
  description: "Requests refused before reaching a handler, by reason",
  incremental: true,
})

/**
 * Route labels must be templates (`/v1/entities/:id`), never concrete paths. As a last guard
 * against a caller passing raw paths, the number of distinct route labels is capped; routes
 * past the cap are counted under "other" so a bug cannot explode the series count.
 */
export const maxRouteLabels = 256
const seenRoutes = new Set<string>()

export const routeLabel = (route: string): string => {
  if (seenRoutes.has(route)) return route
  if (seenRoutes.size >= maxRouteLabels) return "other"
  seenRoutes.add(route)
  return route
}

export interface RequestSample {
  readonly surface: Surface
  /** The route template or RPC/gRPC method name. */
  readonly route: string
  /** HTTP status code, gRPC status name or RPC outcome tag; a bounded set per surface. */
  readonly status: number | string
  readonly durationSeconds: number
}

/**
 * The labelled request counter and histogram, made once per label set: tagging a metric makes
 * a new key whose hash and text are computed on creation, which profiled at a few percent of
 * a cheap request when done per request. Label sets are bounded (see `routeLabel`).
 */
const requestCounters = new Map<string, Metric.Metric.Counter<number>>()
const requestHistograms = new Map<string, Metric.Metric.Histogram<number>>()

const requestCounter = (surface: Surface, route: string, status: string): Metric.Metric.Counter<number> => {
  const key = `${surface}\u0000${route}\u0000${status}`
  let counter = requestCounters.get(key)
  if (counter === undefined) {
    counter = Metric.taggedWithLabels(requestsTotal, [
      MetricLabel.make("surface", surface),
      MetricLabel.make("route", route),
      MetricLabel.make("status", status),
    ])
    requestCounters.set(key, counter)
  }
  return counter
}

const requestHistogram = (surface: Surface, route: string): Metric.Metric.Histogram<number> => {
  const key = `${surface}\u0000${route}`
  let histogram = requestHistograms.get(key)
  if (histogram === undefined) {
    histogram = Metric.taggedWithLabels(requestDurationSeconds, [
      MetricLabel.make("surface", surface),
      MetricLabel.make("route", route),
    ])
    requestHistograms.set(key, histogram)
  }
  return histogram
}

/**
 * `recordRequest` for code already inside a synchronous step (RequestTelemetry.observe): the
 * same updates, without an effect per metric. Nothing in the server tags metrics per fiber
 * (`Effect.tagMetrics`), so no fiber labels are lost.
 */
export const unsafeRecordRequest = (sample: RequestSample): void => {
  const route = routeLabel(sample.route)
  requestCounter(sample.surface, route, String(sample.status)).unsafeUpdate(1, [])
  requestHistogram(sample.surface, route).unsafeUpdate(sample.durationSeconds, [])
}

/** Counts one finished request and observes its latency. */
export const recordRequest = (sample: RequestSample): Effect.Effect<void> =>
  Effect.sync(() => unsafeRecordRequest(sample))

/** A rate-limited request is also a rejected one (reason "rate_limited"). */
export const recordRateLimited = (surface: Surface): Effect.Effect<void> =>
  Effect.zipRight(
    Metric.increment(Metric.tagged(rateLimitedTotal, "surface", surface)),
    recordRejected(surface, "rate_limited"),
  )

export const recordRejected = (surface: Surface, reason: RejectReason): Effect.Effect<void> =>
  Metric.increment(
    Metric.taggedWithLabels(rejectedRequestsTotal, [MetricLabel.make("surface", surface), MetricLabel.make("reason", reason)]),
  )
