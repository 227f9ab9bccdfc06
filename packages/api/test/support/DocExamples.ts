/**
 * Reading the examples of docs/API.md so tests can run them as documented.
 * An example is a marker comment (`<!-- KIND: name -->`) followed by a
 * request and an answer, each a ```json block. In an expected answer,
 * `"<number>"` stands for any number and any other `"<…>"` for any non-empty
 * string; other numbers match within 1e-6, everything else exactly.
 */
import { fileURLToPath } from "node:url"
import { assert } from "@effect/vitest"

export const API_MD = fileURLToPath(new URL("../../../../docs/API.md", import.meta.url))

export interface Example {
  readonly marker: string
  readonly request: unknown
  readonly answer: unknown
}

/** The text of one `## heading` section. */
export const section = (doc: string, heading: string): string => {
  const start = doc.indexOf(`\n## ${heading}\n`)
  assert.isAtLeast(start, 0, `docs/API.md has no "## ${heading}" section`)
  const next = doc.indexOf("\n## ", start + 4)
  return next < 0 ? doc.slice(start) : doc.slice(start, next)
}

export const examplesOf = (text: string, kind: string): Array<Example> => {
  const pattern = new RegExp(`<!-- ${kind}: ([^>]+?) -->\\s*\`\`\`json\\n([\\s\\S]*?)\`\`\`\\s*\`\`\`json\\n([\\s\\S]*?)\`\`\``, "g")
  return [...text.matchAll(pattern)].map((m) => ({
    marker: m[1]!,
    request: JSON.parse(m[2]!),
    answer: JSON.parse(m[3]!),
  }))
}

export const matches = (actual: unknown, expected: unknown, path: string): void => {
  if (expected === "<number>") {
    assert.isNumber(actual, path)
  } else if (typeof expected === "string" && expected.startsWith("<") && expected.endsWith(">")) {
    assert.isString(actual, path)
    assert.isNotEmpty(actual as string, path)
  } else if (typeof expected === "number") {
    assert.isNumber(actual, path)
    assert.closeTo(actual as number, expected, 1e-6, path)
  } else if (Array.isArray(expected)) {
    assert.isArray(actual, path)
    assert.strictEqual((actual as Array<unknown>).length, expected.length, `${path}.length`)
    for (const [i, e] of expected.entries()) matches((actual as Array<unknown>)[i], e, `${path}[${i}]`)
  } else if (typeof expected === "object" && expected !== null) {
    assert.isObject(actual, path)
    const a = actual as Record<string, unknown>
    assert.deepStrictEqual(Object.keys(a).sort(), Object.keys(expected).sort(), `${path} keys`)
    for (const [key, value] of Object.entries(expected)) matches(a[key], value, `${path}.${key}`)
  } else {
    assert.deepStrictEqual(actual, expected, path)
  }
}
