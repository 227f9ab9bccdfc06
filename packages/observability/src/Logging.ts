/**
 * Structured JSON logs: one line per event on stdout with time, level, node,
 * message, annotations and — inside a traced request — trace and span ids.
 */
import * as Context from "effect/Context"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as List from "effect/List"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import * as AccessLog from "./AccessLog.js"

export type Level = "DEBUG" | "INFO" | "WARN" | "ERROR"

export const levels: ReadonlyArray<Level> = ["DEBUG", "INFO", "WARN", "ERROR"]

const toLogLevel = (level: Level): LogLevel.LogLevel => {
  switch (level) {
    case "DEBUG":
      return LogLevel.Debug
    case "INFO":
      return LogLevel.Info
    case "WARN":
      return LogLevel.Warning
    case "ERROR":
      return LogLevel.Error
  }
}

const renderMessage = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((p) => (typeof p === "string" ? p : safeJson(p))).join(" ")
}

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

const renderCause = (cause: unknown): string | undefined => {
  const text = String(cause)
  return text === "" || text === "All fibers interrupted without errors." ? undefined : text
}

/** The JSON line logger. `write` is injectable for tests. */
export const jsonLogger = (nodeId: string, write: (line: string) => void = (line) => process.stdout.write(line)) =>
  Logger.make<unknown, void>(({ annotations, cause, context, date, logLevel, message, spans }) => {
    const record: Record<string, unknown> = {
      time: date.toISOString(),
      level: logLevel.label === "WARN" ? "WARN" : logLevel.label,
      node: nodeId,
      message: renderMessage(message),
    }
    const span = Context.getOption(FiberRefs.getOrDefault(context, FiberRef.currentContext), Tracer.ParentSpan)
    if (Option.isSome(span)) {
      record.trace_id = span.value.traceId
      record.span_id = span.value.spanId
    }
    // The request id is fiber-local state (AccessLog.currentRequestId), not an annotation.
    const requestId = FiberRefs.getOrDefault(context, AccessLog.currentRequestId)
    if (requestId !== undefined) record.request_id = requestId
    for (const [key, value] of HashMap.toEntries(annotations)) record[key] = value
    if (!List.isNil(spans)) record.spans = List.toArray(spans).map((s) => s.label)
    const causeText = cause._tag === "Empty" ? undefined : renderCause(cause)
    if (causeText !== undefined) record.cause = causeText
    write(`${safeJson(record)}\n`)
  })

/**
 * Effect also records every log line written inside a span as an event on that span. For the
 * access line (one per request) and debug lines that repeats what the span already holds and
 * was most of an exported span's bytes; warnings and errors stay, where a trace viewer shows
 * them. Every line still reaches the JSON log with its trace and span ids.
 */
export const spanEventLogger: Logger.Logger<unknown, unknown> = Logger.filterLogLevel(
  Logger.tracerLogger,
  LogLevel.greaterThanEqual(LogLevel.Warning),
)

/**
 * Replaces the default logger with the JSON logger, keeps only warnings and errors as span
 * events (`spanEventLogger`) and sets the minimum level.
 */
export const layer = (options: { readonly nodeId: string; readonly level: Level }): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.replace(Logger.defaultLogger, jsonLogger(options.nodeId)),
    Logger.replace(Logger.tracerLogger, spanEventLogger),
    Logger.minimumLogLevel(toLogLevel(options.level)),
  )

export const parseLevel = (raw: string): Option.Option<Level> => {
  const upper = raw.toUpperCase()
  return upper === "WARNING"
    ? Option.some("WARN")
    : (levels as ReadonlyArray<string>).includes(upper)
      ? Option.some(upper as Level)
      : Option.none()
}
