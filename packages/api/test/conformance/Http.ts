/**
 * Plain HTTP plumbing shared by the native and the compatible REST adapters:
 * a JSON call that never throws, and the check that an error answer's status
 * and its `code` say the same thing (a mismatch is reported as `unknown`, so
 * the scenario fails instead of trusting either).
 */
import * as Effect from "effect/Effect"
import { API_KEY_HEADER } from "../../src/Auth.js"
import * as S from "./Surface.js"

export interface Answer {
  readonly status: number
  readonly body: unknown
}

export const call = (
  base: string,
  method: string,
  path: string,
  apiKey: string | undefined,
  body?: unknown,
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const headers: Record<string, string> = {}
    if (apiKey !== undefined) headers[API_KEY_HEADER] = apiKey
    const init: RequestInit = { method, headers }
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      // JSON cannot carry NaN or ±Infinity: JSON.stringify sends null, which the server must refuse the same way.
      init.body = JSON.stringify(body)
    }
    const response = await fetch(base + path, init)
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = text === "" ? undefined : JSON.parse(text)
    } catch {
      // left as text: an error answer that is not JSON fails the status check below
    }
    return { status: response.status, body: parsed }
  })

const STATUS_OF: { readonly [K in S.ErrorCode]?: number } = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  deadline_exceeded: 504,
  unavailable: 503,
  internal: 500,
}

export const record = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {}

/** An error answer as a common outcome: `{error, code, field?}` with a status that matches the code. */
export const errorOutcome = (answer: Answer): S.Outcome<never> => {
  const body = record(answer.body)
  if (typeof body.code !== "string" || typeof body.error !== "string") {
    return S.err("unknown", `HTTP ${answer.status} without a JSON error body: ${JSON.stringify(answer.body)}`)
  }
  const code = S.codeFromName(body.code)
  const expected = STATUS_OF[code]
  if (expected !== undefined && expected !== answer.status && !(code === "resource_exhausted")) {
    return S.err("unknown", `HTTP ${answer.status} answered with code ${body.code}: ${body.error}`)
  }
  return S.err(code, body.error, typeof body.field === "string" ? body.field : undefined)
}

/** 2xx → `onOk(body)`, anything else → the error outcome. */
export const outcome = <A>(answer: Answer, onOk: (body: Record<string, unknown>) => A): S.Outcome<A> =>
  answer.status >= 200 && answer.status < 300 ? S.ok(onOk(record(answer.body))) : errorOutcome(answer)
