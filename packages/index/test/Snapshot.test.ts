/**
 * Restarts: from a good snapshot (load + catch-up), and from damaged or
 * inconsistent ones (rebuild from storage) — the answers must not change.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { EntityId } from "@allidb/core"
import * as Metrics from "../src/Metrics.js"
import * as Snapshot from "../src/Snapshot.js"
import * as FakeStorage from "./FakeStorage.js"
import * as Harness from "./Harness.js"

const { entity, T, request } = Harness
const N = 3000
const DIM = 16
const vectors = Harness.clustered({ seed: 7, count: N + 20, dim: DIM, clusters: 12, spread: 0.4 })
const queries = vectors.slice(N)

const rows = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, j) => {
    const i = from + j
    return entity(`e${i}`, {
      vector: vectors[i]!,
      type: i % 3 === 0 ? "a" : "b",
      metadata: { n: i % 10 },
      importance: (i % 5) / 4,
      updatedAt: 1_000 + i,
      edges: [FakeStorage.edge(`e${(i * 13) % N}`, "next", 0.5 + (i % 2) / 4)],
    })
  })

/** Everything a query can show: ids, scores, explain paths, for plain, filtered and expanded queries. */
const answers = (h: Harness.Harness) =>
  Effect.forEach(queries, (vector) =>
    Effect.all([
      h.executor.query(T, request({ vector, k: 10, ef: 200, include_entities: false })),
      h.executor.query(T, request({ vector, k: 10, ef: 200, filter: { type: "a", metadata: { n: { gte: 3 } } } })),
      h.executor.query(T, request({ vector, k: 10, ef: 200, explain: true, expand: { hops: 2, factor: 2 } })),
    ]).pipe(
      Effect.map((lists) =>
        lists.map((list) =>
          list.map((r) => [r.id, r.score.toFixed(6), r.explain?.path.map((s) => `${s.from}>${s.to}`).join(",") ?? ""]),
        ),
      ),
    ),
  )

const rebuilds = Metric.value(Metrics.rebuilds).pipe(Effect.map((s) => s.count))

/** Runs `f` with a harness over `state` in its own scope and closes it (a "process lifetime"). */
const lifetime = <A, E>(
  state: FakeStorage.FakeState,
  dataDir: string,
  f: (h: Harness.Harness) => Effect.Effect<A, E>,
  config: Parameters<typeof Harness.make>[0]["config"] = { snapshotOnClose: false },
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const h = yield* Harness.make({ dataDir, state, config }).pipe(Scope.extend(scope))
    const a = yield* f(h)
    yield* Scope.close(scope, Exit.void)
    return a
  })

const damage = (file: string, at: (size: number) => number) => {
  const bytes = Fs.readFileSync(file)
  const i = at(bytes.length)
  bytes[i] = bytes[i]! ^ 0xff
  Fs.writeFileSync(file, bytes)
}

describe("Snapshot", () => {
  it.live(
    "restart from a snapshot, then from damaged and inconsistent ones, answers the same",
    () =>
      Effect.gen(function* () {
        const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-snap-"))
        const state = FakeStorage.makeState()
        const before = yield* lifetime(state, dataDir, (h) =>
          Effect.gen(function* () {
            for (let i = 0; i < N; i += 500) yield* h.put(rows(i, Math.min(N, i + 500)))
            yield* h.write(
              Array.from({ length: 100 }, (_, i) => ({
                _tag: "DeleteEntity" as const,
                tenant: T,
                id: `e${i * 7}` as EntityId,
              })),
            )
            yield* h.index.snapshot
            // After the snapshot: overwrites, new rows, deletes and an edge — the catch-up must bring them.
            yield* h.put([...rows(N - 50, N).map((e) => entity(e.id, { vector: vectors[N - e.id.length]!, type: "a" }))])
            yield* h.write([
              { _tag: "DeleteEntity", tenant: T, id: "e1" as EntityId },
              { _tag: "PutEdge", tenant: T, from: "e2" as EntityId, edge: FakeStorage.edge("e4", "late", 1) },
            ])
            return yield* answers(h)
          }),
        )
        const dir = Snapshot.tenantDir(dataDir, T)
        assert.isTrue(Fs.existsSync(Path.join(dir, "MANIFEST")))

        let r0 = yield* rebuilds
        const fromSnapshot = yield* lifetime(state, dataDir, answers, { snapshotOnClose: true })
        assert.strictEqual(yield* rebuilds, r0, "loaded, not rebuilt")
        assert.deepStrictEqual(fromSnapshot, before)

        // The close above wrote a fresh snapshot; damage each part in turn.
        const files = Fs.readdirSync(dir)
        const hnsw = files.find((f) => f.startsWith("hnsw-"))!
        const state_ = files.find((f) => f.startsWith("state-"))!
        for (const [what, hurt] of [
          ["hnsw file", () => damage(Path.join(dir, hnsw), (n) => Math.floor(n / 2))],
          ["state file", () => damage(Path.join(dir, state_), (n) => n - 3)],
          ["manifest", () => Fs.writeFileSync(Path.join(dir, "MANIFEST"), "{\"format\":1")],
        ] as const) {
          const copy = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-snap-copy-"))
          Fs.cpSync(dataDir, copy, { recursive: true })
          const copyDir = Snapshot.tenantDir(copy, T)
          // hurt() acts on `dir`; run it against the copy by swapping paths
          Fs.rmSync(dir, { recursive: true })
          Fs.cpSync(copyDir, dir, { recursive: true })
          hurt()
          r0 = yield* rebuilds
          const after = yield* lifetime(state, dataDir, answers)
          assert.strictEqual(yield* rebuilds, r0 + 1, `a damaged ${what} means a rebuild`)
          assert.deepStrictEqual(after, before, `same answers after a damaged ${what}`)
          Fs.rmSync(dir, { recursive: true })
          Fs.cpSync(copyDir, dir, { recursive: true })
        }

        // A snapshot ahead of storage (storage lost its tail) is not trusted either.
        const shorter = FakeStorage.makeState()
        r0 = yield* rebuilds
        yield* lifetime(shorter, dataDir, (h) => h.put(rows(0, 10)))
        const rebuilt = yield* lifetime(shorter, dataDir, (h) => h.index.stats)
        assert.strictEqual(rebuilt[0]!.entities, 10)
        assert.isAtLeast(yield* rebuilds, r0 + 1)
      }),
    120_000,
  )
})
