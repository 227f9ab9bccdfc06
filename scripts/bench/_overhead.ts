/**
 * `npx tsx scripts/bench/_overhead.ts` — fixed per-query costs that sit on
 * AlliDB's kNN path but not on raw hnswlib-node's: decoding a QueryRequest
 * with a 128-d vector through its Schema and through core's
 * `decodeQueryRequest` (same result and errors, a fast path for plain kNN
 * requests), converting a Float32Array query to the plain array hnswlib-node
 * takes (both AlliDB and raw hnswlib pay it), and an Effect span (with the
 * default stack capture) around a trivial effect. Median of 5 rounds of 20,000.
 */
import { decodeQueryRequest, QueryRequest } from "@allidb/core"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { median } from "./_lib.js"

const decode = Schema.decodeUnknownSync(QueryRequest)
const vector = Array.from({ length: 128 }, (_, i) => Math.sin(i))
const request = { vector, k: 10, ef: 64, weights: { vector: 1, graph: 0, importance: 0, recency: 0 }, include_entities: false }
const N = 20_000
const perCall = (f: () => void) => {
  const t0 = performance.now()
  for (let i = 0; i < N; i++) f()
  return ((performance.now() - t0) / N) * 1000
}
const float32 = Float32Array.from(vector)
const rounds = { decode: [] as Array<number>, decodeFast: [] as Array<number>, toArray: [] as Array<number>, span: [] as Array<number>, spanNoStack: [] as Array<number>, bare: [] as Array<number> }
for (let r = 0; r < 5; r++) {
  rounds.decode.push(perCall(() => decode(request)))
  rounds.decodeFast.push(perCall(() => decodeQueryRequest(request)))
  rounds.toArray.push(perCall(() => Array.from(float32)))
  rounds.span.push(perCall(() => Effect.runSync(Effect.withSpan(Effect.succeed(1), "x"))))
  rounds.spanNoStack.push(perCall(() => Effect.runSync(Effect.withSpan(Effect.succeed(1), "x", { captureStackTrace: false }))))
  rounds.bare.push(perCall(() => Effect.runSync(Effect.succeed(1))))
}
console.log(`decode QueryRequest (128-d vector): ${median(rounds.decode).toFixed(1)} µs`)
console.log(`decodeQueryRequest (same request):  ${median(rounds.decodeFast).toFixed(1)} µs`)
console.log(`Array.from(Float32Array(128)):      ${median(rounds.toArray).toFixed(1)} µs`)
console.log(`Effect.withSpan (stack capture):    ${median(rounds.span).toFixed(1)} µs`)
console.log(`Effect.withSpan (no stack capture): ${median(rounds.spanNoStack).toFixed(1)} µs`)
console.log(`Effect.runSync (bare):              ${median(rounds.bare).toFixed(1)} µs`)
