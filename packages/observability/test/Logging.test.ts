import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import * as Logging from "../src/Logging.js"

describe("Logging", () => {
  it.effect("writes one JSON object per line with node, level, annotations and span ids", () => {
    const lines: Array<string> = []
    return Effect.gen(function* () {
      yield* Effect.logWarning("disk", "slow", { ms: 12 }).pipe(Effect.annotateLogs("tenant", "acme"))
      const span = yield* Effect.gen(function* () {
        yield* Effect.logError("inside")
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("Wal.append"))
      assert.strictEqual(lines.length, 2)
      assert.isTrue(lines.every((l) => l.endsWith("\n") && !l.slice(0, -1).includes("\n")))
      const [first, second] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.strictEqual(first.level, "WARN")
      assert.strictEqual(first.node, "n1")
      assert.strictEqual(first.message, 'disk slow {"ms":12}')
      assert.strictEqual(first.tenant, "acme")
      assert.isUndefined(first.trace_id)
      assert.strictEqual(second.level, "ERROR")
      assert.strictEqual(second.trace_id, span.traceId)
      assert.strictEqual(second.span_id, span.spanId)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logging.jsonLogger("n1", (l) => lines.push(l)))))
  })

  it.effect("records only warnings and errors as span events; every line still goes to the log", () => {
    const lines: Array<string> = []
    const events: Array<string> = []
    return Effect.gen(function* () {
      const base = yield* Effect.tracer
      // The built-in tracer, noting the events its spans receive.
      const recording = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          const span = base.span(name, parent, context, links, startTime, kind, options)
          const event = span.event.bind(span)
          span.event = (eventName, time, attributes) => {
            events.push(eventName)
            event(eventName, time, attributes)
          }
          return span
        },
        context: (execution) => execution(),
      })
      yield* Effect.gen(function* () {
        yield* Effect.logDebug("chatter")
        yield* Effect.logInfo("access")
        yield* Effect.logWarning("slow disk")
        yield* Effect.logError("failed")
      }).pipe(Effect.withSpan("request"), Effect.withTracer(recording))
      assert.deepStrictEqual(events, ["slow disk", "failed"])
      assert.deepStrictEqual(
        lines.map((l) => (JSON.parse(l) as { message: string }).message),
        ["chatter", "access", "slow disk", "failed"],
      )
    }).pipe(
      Effect.provide(Logging.layer({ nodeId: "n1", level: "DEBUG" })),
      // The layer's JSON logger writes to stdout; this one captures the same lines.
      Effect.provide(Logger.add(Logging.jsonLogger("n1", (l) => lines.push(l)))),
    )
  })

  it("parses levels case-insensitively, WARNING as WARN", () => {
    assert.deepStrictEqual(Logging.parseLevel("debug"), Option.some("DEBUG"))
    assert.deepStrictEqual(Logging.parseLevel("Warning"), Option.some("WARN"))
    assert.isTrue(Option.isNone(Logging.parseLevel("verbose")))
  })
})
