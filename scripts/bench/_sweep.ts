/**
 * The ef sweep shared by `query` and `scale`: every system answers the same
 * queries at each ef, rounds interleaved (round r of every system before round
 * r+1 of any) so a noisy neighbour on this shared machine hits all alike.
 * Within a round the systems take their turns ef by ef, in an order that
 * rotates every round, so the points compared at one ef are measured moments
 * apart. QPS is the median over rounds; latency percentiles pool every round.
 */
import { type Dataset, queryOf, recallAt10, type Truth } from "./_data.js"
import { fmt, median, now, percentile, runConcurrent, table } from "./_lib.js"

export interface System {
  readonly name: string
  /** "in-process" or "HTTP ×c" etc. */
  readonly mode: string
  readonly concurrency: number
  readonly setEf: (ef: number) => Promise<void> | void
  /** Entity indexes, best first. */
  readonly search: (q: Float32Array, ef: number) => Promise<ArrayLike<number>> | ArrayLike<number>
  /** When present (single client), answers a whole round in one call and reports per-query latencies. */
  readonly searchAll?: (
    qs: ReadonlyArray<Float32Array>,
    ef: number,
  ) => Promise<{ got: Array<ArrayLike<number>>; latencies: Array<number>; seconds?: number }>
}

export interface Point {
  readonly system: string
  readonly mode: string
  readonly concurrency: number
  readonly ef: number
  readonly recall: number
  readonly qps: number
  readonly qpsRounds: ReadonlyArray<number>
  readonly p50: number
  readonly p99: number
}

export const sweep = async (
  d: Dataset,
  truth: Truth,
  systems: ReadonlyArray<System>,
  efs: ReadonlyArray<number>,
  rounds: number,
  queries = truth.count,
  warmupRounds = 1,
): Promise<Array<Point>> => {
  const state = new Map<string, { qps: Array<number>; lat: Array<number>; got: Array<ArrayLike<number>> }>()
  const keyOf = (s: System, ef: number) => `${s.name}|${s.mode}|${ef}`
  // Unmeasured rounds first: every system answers every query at every ef.
  // A JIT-compiled path (AlliDB's Effect runtime takes a few thousand calls
  // to reach V8's optimised tiers) and an index just loaded from disk (pages
  // not yet touched) would otherwise make the first measured round a
  // warm-up round for some systems and not for others.
  for (let w = 0; w < warmupRounds; w++) {
    for (const ef of efs) {
      for (const s of systems) {
        await s.setEf(ef)
        if (s.searchAll !== undefined) await s.searchAll(Array.from({ length: queries }, (_, q) => queryOf(d, q)), ef)
        else if (s.concurrency === 1) for (let q = 0; q < queries; q++) await s.search(queryOf(d, q), ef)
        else await runConcurrent(queries, s.concurrency, async (q) => void (await s.search(queryOf(d, q), ef)))
      }
    }
  }
  for (let r = 0; r < rounds; r++) {
    for (const ef of efs) {
      for (let j = 0; j < systems.length; j++) {
        const s = systems[(r + j) % systems.length]!
        await s.setEf(ef)
        const k = keyOf(s, ef)
        const st = state.get(k) ?? { qps: [], lat: [], got: new Array<ArrayLike<number>>(queries) }
        state.set(k, st)
        // Warm-up: a few queries outside the clock.
        for (let q = 0; q < Math.min(20, queries); q++) await s.search(queryOf(d, q), ef)
        if (s.searchAll !== undefined) {
          const qs = Array.from({ length: queries }, (_, q) => queryOf(d, q))
          const t0 = now()
          const run = await s.searchAll(qs, ef)
          st.qps.push(queries / (run.seconds ?? (now() - t0) / 1000))
          st.lat.push(...run.latencies)
          if (r === 0) for (let q = 0; q < queries; q++) st.got[q] = run.got[q]!
        } else if (s.concurrency === 1) {
          const t0 = now()
          for (let q = 0; q < queries; q++) {
            const t = now()
            const got = await s.search(queryOf(d, q), ef)
            st.lat.push(now() - t)
            if (r === 0) st.got[q] = got
          }
          st.qps.push(queries / ((now() - t0) / 1000))
        } else {
          const run = await runConcurrent(queries, s.concurrency, async (q) => {
            const got = await s.search(queryOf(d, q), ef)
            if (r === 0) st.got[q] = got
          })
          st.lat.push(...run.latencies)
          st.qps.push(queries / run.seconds)
        }
      }
    }
  }
  const points: Array<Point> = []
  for (const s of systems) {
    for (const ef of efs) {
      const st = state.get(keyOf(s, ef))!
      points.push({
        system: s.name,
        mode: s.mode,
        concurrency: s.concurrency,
        ef,
        recall: recallAt10(truth, st.got),
        qps: median(st.qps),
        qpsRounds: st.qps.map((x) => Math.round(x)),
        p50: percentile(st.lat, 50),
        p99: percentile(st.lat, 99),
      })
    }
  }
  return points
}

export const printSweep = (title: string, points: ReadonlyArray<Point>): string =>
  table(
    title,
    ["system", "mode", "ef", "recall@10", "QPS (median)", "p50 ms", "p99 ms"],
    points.map((p) => [p.system, p.mode, String(p.ef), fmt(p.recall, 3), fmt(p.qps), fmt(p.p50, 2), fmt(p.p99, 2)]),
  )

/**
 * The smallest ef of a system/mode reaching the recall target (or its best
 * recall when none does). Chosen by recall, which is deterministic, not by
 * QPS, which is noisy here: picking the fastest point would reward noise.
 */
export const atRecall = (points: ReadonlyArray<Point>, system: string, mode: string, target: number): Point | undefined => {
  const mine = points.filter((p) => p.system === system && p.mode === mode)
  const ok = mine.filter((p) => p.recall >= target).sort((a, b) => a.ef - b.ef)
  if (ok.length > 0) return ok[0]
  return [...mine].sort((a, b) => b.recall - a.recall)[0]
}
