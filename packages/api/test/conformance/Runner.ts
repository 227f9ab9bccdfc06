/**
 * Runs one scenario through every surface and records a matrix cell per
 * surface: pass, n.a. (with the reason: an operation the surface does not
 * offer, or a request it cannot express) or FAIL (with the detail). A
 * passing surface's observation is compared with the first passing
 * surface's, so "the same outcome everywhere" is checked, not assumed.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as S from "./Surface.js"

export class NotApplicable extends Data.TaggedError("NotApplicable")<{ readonly reason: string }> {}

export class Mismatch extends Data.TaggedError("Mismatch")<{ readonly detail: string }> {}

/**
 * An observation made of parts a surface may or may not be able to observe
 * (a surface without get observes no get): surfaces are compared on the
 * parts both observed. Every scenario that uses it says which parts exist.
 */
export class Parts {
  constructor(readonly parts: Readonly<Record<string, unknown>>) {}
}

const agree = (a: unknown, b: unknown): boolean => {
  if (a instanceof Parts && b instanceof Parts) {
    return Object.keys(a.parts)
      .filter((k) => k in b.parts)
      .every((k) => approxEqual(a.parts[k], b.parts[k]))
  }
  return approxEqual(a, b)
}

export type Step<A> = Effect.Effect<A, NotApplicable | Mismatch>

export type Cell =
  | { readonly _tag: "pass" }
  | { readonly _tag: "na"; readonly reason: string }
  | { readonly _tag: "fail"; readonly detail: string }

export class Matrix {
  readonly rows: Array<{ readonly scenario: string; readonly cells: Map<string, Cell> }> = []
  readonly columns: Array<string> = []

  record(scenario: string, surface: string, cell: Cell): void {
    if (!this.columns.includes(surface)) this.columns.push(surface)
    let row = this.rows.find((r) => r.scenario === scenario)
    if (row === undefined) {
      row = { scenario, cells: new Map() }
      this.rows.push(row)
    }
    row.cells.set(surface, cell)
  }

  /** Plain-text table, then every n.a. reason and failure, numbered. */
  render(notes: ReadonlyArray<string>): string {
    const footnotes: Array<string> = []
    const label = (cell: Cell | undefined): string => {
      if (cell === undefined) return "-"
      if (cell._tag === "pass") return "pass"
      // One line per footnote: long decode trees are cut (the failing test prints them whole).
      const full = (cell._tag === "na" ? cell.reason : cell.detail).replace(/\s+/g, " ")
      const text = full.length > 240 ? `${full.slice(0, 240)}…` : full
      let index = footnotes.indexOf(text)
      if (index < 0) index = footnotes.push(text) - 1
      return `${cell._tag === "na" ? "n.a." : "FAIL"} [${index + 1}]`
    }
    const table = this.rows.map((r) => [r.scenario, ...this.columns.map((c) => label(r.cells.get(c)))])
    const header = ["scenario", ...this.columns]
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)))
    const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")
    return [
      line(header),
      widths.map((w) => "-".repeat(w)).join("-|-"),
      ...table.map(line),
      "",
      ...footnotes.map((f, i) => `[${i + 1}] ${f}`),
      ...notes.map((n) => `note: ${n}`),
    ].join("\n")
  }

  failures(): ReadonlyArray<string> {
    return this.rows.flatMap((r) =>
      [...r.cells.entries()].flatMap(([surface, cell]) =>
        cell._tag === "fail" ? [`${r.scenario} / ${surface}: ${cell.detail}`] : [],
      ),
    )
  }
}

/** The operation, or n.a. naming it when the surface does not offer it. */
export const op = <K extends S.OpName>(surface: S.Surface, name: K): Step<NonNullable<S.Surface[K]>> => {
  const fn = surface[name]
  return fn === undefined
    ? Effect.fail(new NotApplicable({ reason: `no ${name} operation` }))
    : Effect.succeed(fn as NonNullable<S.Surface[K]>)
}

/** The surface as a principal, or n.a. (the embedded node has no keys). */
export const as = (driver: S.Driver, principal: S.Principal): Step<S.Surface> => {
  const surface = driver.as(principal)
  return surface === undefined ? Effect.fail(new NotApplicable({ reason: `no notion of "${principal}" callers` })) : Effect.succeed(surface)
}

const show = (outcome: S.Outcome<unknown>): string =>
  outcome._tag === "Err"
    ? `${outcome.code}${outcome.field === undefined ? "" : ` (field ${outcome.field})`}: ${outcome.message}`
    : outcome._tag === "NotExpressible"
      ? `not expressible: ${outcome.reason}`
      : `ok ${JSON.stringify(outcome.value)?.slice(0, 300)}`

/** The value of an ok outcome; a refusal is a mismatch, an inexpressible request n.a. */
export const expectOk = <A>(what: string, outcome: Effect.Effect<S.Outcome<A>>): Step<A> =>
  Effect.flatMap(outcome, (o): Step<A> =>
    o._tag === "Ok"
      ? Effect.succeed(o.value)
      : o._tag === "NotExpressible"
        ? Effect.fail(new NotApplicable({ reason: o.reason }))
        : Effect.fail(new Mismatch({ detail: `${what}: expected ok, got ${show(o)}` })),
  )

/** An error with `code` (and `field`, when given); returns the message. */
export const expectErr = (
  what: string,
  outcome: Effect.Effect<S.Outcome<unknown>>,
  code: S.ErrorCode,
  field?: string,
): Step<string> =>
  Effect.flatMap(outcome, (o): Step<string> => {
    if (o._tag === "NotExpressible") return Effect.fail(new NotApplicable({ reason: o.reason }))
    if (o._tag === "Err" && o.code === code && (field === undefined || o.field === field)) return Effect.succeed(o.message)
    return Effect.fail(new Mismatch({ detail: `${what}: expected ${code}${field === undefined ? "" : ` naming ${field}`}, got ${show(o)}` }))
  })

export const check = (condition: boolean, detail: () => string): Step<void> =>
  condition ? Effect.void : Effect.fail(new Mismatch({ detail: detail() }))

/** Deep equality with numbers compared within `tolerance` (scores, float32 vectors). */
export const approxEqual = (a: unknown, b: unknown, tolerance = 1e-6): boolean => {
  if (typeof a === "number" && typeof b === "number") return Math.abs(a - b) <= tolerance
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => approxEqual(x, b[i], tolerance))
  if (typeof a === "object" && typeof b === "object" && a !== null && b !== null) {
    const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined).sort()
    const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined).sort()
    return (
      approxEqual(ka, kb, 0) &&
      ka.every((k) => approxEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], tolerance))
    )
  }
  return a === b
}

/**
 * Runs `body` on every driver; a passing surface's observation must equal
 * the reference (the first passing surface's). Returns the failures.
 */
export const scenario = (
  matrix: Matrix,
  drivers: ReadonlyArray<S.Driver>,
  name: string,
  body: (driver: S.Driver) => Step<unknown>,
): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function* () {
    let reference: { readonly surface: string; readonly observed: unknown } | undefined
    for (const driver of drivers) {
      const result = yield* Effect.either(body(driver))
      let cell: Cell
      if (result._tag === "Left") {
        cell = result.left._tag === "NotApplicable" ? { _tag: "na", reason: result.left.reason } : { _tag: "fail", detail: result.left.detail }
      } else if (reference === undefined) {
        reference = { surface: driver.name, observed: result.right }
        cell = { _tag: "pass" }
      } else if (agree(result.right, reference.observed)) {
        cell = { _tag: "pass" }
      } else {
        cell = {
          _tag: "fail",
          detail: `differs from ${reference.surface}: ${JSON.stringify(result.right)} vs ${JSON.stringify(reference.observed)}`,
        }
      }
      matrix.record(name, driver.name, cell)
    }
    return Array.from(matrix.rows.find((r) => r.scenario === name)?.cells.entries() ?? []).flatMap(([surface, cell]) => (cell._tag === "fail" ? [`${surface}: ${cell.detail}`] : []))
  })
