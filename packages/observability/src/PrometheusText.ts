/**
 * A strict parser for the Prometheus text exposition format 0.0.4, used to check what
 * `/metrics` serves (unit and end-to-end tests). No maintained parser is installed, so this
 * checks the grammar line by line: HELP/TYPE comments, metric and label names, label value
 * escapes, sample values, one TYPE per family declared before its samples, families not
 * interleaved, histogram buckets with `le` and cumulative counts.
 */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped"

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Family {
  readonly name: string
  readonly type: MetricType
  readonly help: string | undefined
  readonly samples: ReadonlyArray<Sample>
}

export class ParseError extends Error {
  constructor(
    readonly line: number,
    reason: string,
  ) {
    super(`line ${line}: ${reason}`)
  }
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const types: ReadonlyArray<string> = ["counter", "gauge", "histogram", "summary", "untyped"]

const parseValue = (raw: string, line: number): number => {
  if (raw === "+Inf" || raw === "Inf") return Number.POSITIVE_INFINITY
  if (raw === "-Inf") return Number.NEGATIVE_INFINITY
  if (raw === "NaN") return Number.NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) throw new ParseError(line, `bad value ${JSON.stringify(raw)}`)
  return Number(raw)
}

/** Parses `{a="x",b="y"}` starting at `text[0] === "{"`; returns labels and the rest of the line. */
const parseLabels = (text: string, line: number): [Record<string, string>, string] => {
  const labels: Record<string, string> = {}
  let i = 1
  for (;;) {
    if (text[i] === "}") return [labels, text.slice(i + 1)]
    const eq = text.indexOf("=", i)
    if (eq < 0) throw new ParseError(line, "label without '='")
    const name = text.slice(i, eq)
    if (!labelName.test(name)) throw new ParseError(line, `bad label name ${JSON.stringify(name)}`)
    if (name in labels) throw new ParseError(line, `duplicate label ${name}`)
    if (text[eq + 1] !== '"') throw new ParseError(line, `label ${name} value not quoted`)
    let value = ""
    let j = eq + 2
    for (;;) {
      const c = text[j]
      if (c === undefined) throw new ParseError(line, `unterminated value for label ${name}`)
      if (c === '"') break
      if (c === "\n") throw new ParseError(line, "raw newline in label value")
      if (c === "\\") {
        const next = text[j + 1]
        if (next === "\\") value += "\\"
        else if (next === '"') value += '"'
        else if (next === "n") value += "\n"
        else throw new ParseError(line, `bad escape in label ${name}`)
        j += 2
        continue
      }
      value += c
      j++
    }
    labels[name] = value
    i = j + 1
    if (text[i] === ",") i++
    else if (text[i] !== "}") throw new ParseError(line, `expected ',' or '}' after label ${name}`)
  }
}

const familyOf = (sample: string, declared: ReadonlyMap<string, MetricType>): string => {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (sample.endsWith(suffix)) {
      const base = sample.slice(0, -suffix.length)
      const type = declared.get(base)
      if (type === "histogram" || type === "summary") return base
    }
  }
  return sample
}

/** Parses a whole exposition; throws ParseError naming the first offending line. */
export const parse = (text: string): ReadonlyArray<Family> => {
  const families: Array<{ name: string; type: MetricType; help: string | undefined; samples: Array<Sample> }> = []
  const declared = new Map<string, MetricType>()
  const helps = new Map<string, string>()
  const closed = new Set<string>()
  let current: (typeof families)[number] | undefined
  const lines = text.split("\n")
  if (lines[lines.length - 1] === "") lines.pop()
  lines.forEach((raw, index) => {
    const line = index + 1
    if (raw.trim() === "") return
    if (raw.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(raw)
      if (m === null) return // any other comment is allowed
      const [, kind, name, rest = ""] = m
      if (!metricName.test(name)) throw new ParseError(line, `bad metric name ${JSON.stringify(name)}`)
      if (kind === "HELP") {
        if (helps.has(name)) throw new ParseError(line, `second HELP for ${name}`)
        helps.set(name, rest)
        return
      }
      if (!types.includes(rest.trim())) throw new ParseError(line, `bad TYPE ${JSON.stringify(rest)}`)
      if (declared.has(name)) throw new ParseError(line, `second TYPE for ${name}`)
      if (families.some((f) => f.name === name)) throw new ParseError(line, `TYPE for ${name} after its samples`)
      declared.set(name, rest.trim() as MetricType)
      return
    }
    const nameEnd = raw.search(/[{ ]/)
    if (nameEnd <= 0) throw new ParseError(line, "sample without value")
    const name = raw.slice(0, nameEnd)
    if (!metricName.test(name)) throw new ParseError(line, `bad metric name ${JSON.stringify(name)}`)
    let labels: Record<string, string> = {}
    let rest = raw.slice(nameEnd)
    if (rest.startsWith("{")) [labels, rest] = parseLabels(rest, line)
    const fields = rest.trim().split(/\s+/)
    if (!rest.startsWith(" ") || fields.length < 1 || fields.length > 2 || fields[0] === "") {
      throw new ParseError(line, "expected ' value [timestamp]'")
    }
    const value = parseValue(fields[0], line)
    if (fields.length === 2 && !/^-?\d+$/.test(fields[1])) throw new ParseError(line, "bad timestamp")
    const family = familyOf(name, declared)
    if (current?.name !== family) {
      if (closed.has(family)) throw new ParseError(line, `samples of ${family} are not contiguous`)
      if (current !== undefined) closed.add(current.name)
      current = { name: family, type: declared.get(family) ?? "untyped", help: helps.get(family), samples: [] }
      families.push(current)
    }
    if (current.type === "histogram" && name === `${family}_bucket` && !("le" in labels)) {
      throw new ParseError(line, `histogram bucket of ${family} without le`)
    }
    current.samples.push({ name, labels, value })
  })
  for (const family of families) if (family.type === "histogram") checkHistogram(family)
  return families
}

const seriesKey = (labels: Readonly<Record<string, string>>): string =>
  JSON.stringify(
    Object.entries(labels)
      .filter(([k]) => k !== "le")
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  )

/** Buckets must be cumulative, end at +Inf, and the +Inf bucket must equal _count. */
const checkHistogram = (family: Family): void => {
  const series = new Map<string, { buckets: Array<[number, number]>; count: number | undefined }>()
  for (const s of family.samples) {
    const key = seriesKey(s.labels)
    const entry = series.get(key) ?? { buckets: [], count: undefined }
    series.set(key, entry)
    if (s.name.endsWith("_bucket")) entry.buckets.push([parseValue(s.labels.le, 0), s.value])
    else if (s.name.endsWith("_count")) entry.count = s.value
  }
  for (const [key, { buckets, count }] of series) {
    const last = buckets[buckets.length - 1]
    if (last === undefined || last[0] !== Number.POSITIVE_INFINITY) {
      throw new ParseError(0, `histogram ${family.name}${key} has no +Inf bucket`)
    }
    for (let i = 1; i < buckets.length; i++) {
      if (buckets[i][0] <= buckets[i - 1][0] || buckets[i][1] < buckets[i - 1][1]) {
        throw new ParseError(0, `histogram ${family.name}${key} buckets not cumulative`)
      }
    }
    if (count !== undefined && count !== last[1]) {
      throw new ParseError(0, `histogram ${family.name}${key}: +Inf bucket ${last[1]} != count ${count}`)
    }
  }
}

/** The value of the one sample named `name` whose labels include `labels`, if any. */
export const value = (
  families: ReadonlyArray<Family>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined => {
  for (const family of families) {
    for (const s of family.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value
    }
  }
  return undefined
}
