/**
 * `npm run bench -- index [--quick] [--n N] [--dim D] [--queries Q] [--rounds R] [--storage real|fake] [--grown]`
 *
 * On a seeded Gaussian mixture (default 100,000 × 128; --quick: 20,000), in one
 * process, prints:
 * - ingest rate through the storage engine + UnifiedIndex (durable writes,
 *   then wait until the index reflects them) next to raw hnswlib-node addPoint;
 * - single-thread query QPS and p50/p99 through the QueryExecutor next to raw
 *   searchKnn at the same ef, with recall@10 of both against brute force;
 * - RSS; restart-to-ready from the snapshot vs a rebuild from storage.
 *
 * Needs a build (`npx tsc -b`): workspace packages (the index too) resolve to their dist.
 */
import * as Fs from "node:fs"
import * as Inspector from "node:inspector"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import hnswlib from "hnswlib-node"
import { Entity, QueryRequest, SeededRandom, type TenantId } from "@allidb/core"
import { StorageEngine } from "@allidb/storage"
// The built package, as the server runs it (tsx would recompile the sources
// with esbuild's keepNames helpers, which cost time on every closure).
import { IndexConfig, QueryExecutor, UnifiedIndex } from "@allidb/index"
import * as FakeStorage from "../../packages/index/test/FakeStorage.js"

const args = process.argv.slice(2)
const flag = (name: string) => args.includes(`--${name}`)
const option = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}
const quick = flag("quick")
const N = Number(option("n", quick ? "20000" : "100000"))
const DIM = Number(option("dim", "128"))
const QUERIES = Number(option("queries", quick ? "200" : "300"))
const QUERY_ROUNDS = Number(option("rounds", "9"))
const WARMUP_ROUNDS = Number(option("warmup", "5"))
const K = 10
const EF = 64
const M = 16
const EF_CONSTRUCTION = 200
const BATCH = 500
const SEED = Number(option("seed", "42"))
const storageKind = option("storage", "real")
const T = "bench" as TenantId

// --- data: a seeded Gaussian mixture; queries are held-out draws of it ------
const rng = SeededRandom.mulberry32
const random = rng(SEED)
const normal = () => Math.sqrt(-2 * Math.log(Math.max(random(), 1e-12))) * Math.cos(2 * Math.PI * random())
const CLUSTERS = 100
const centres = Array.from({ length: CLUSTERS }, () => Array.from({ length: DIM }, () => random() * 2 - 1))
const draw = () => {
  const c = centres[Math.floor(random() * CLUSTERS)]!
  return c.map((x) => x + normal() * 0.5)
}
const vectors: Array<Array<number>> = Array.from({ length: N }, draw)
const queries: Array<Array<number>> = Array.from({ length: QUERIES }, draw)

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`
const pct = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const log = (line: string) => console.log(line)
/** CPU seconds (user + system) this process used since `since`: robust to a shared, busy host. */
const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(since)
  return (d.user + d.system) / 1e6
}

// --- ground truth (cosine, exact) -----------------------------------------
const groundTruth = (): Array<Array<number>> => {
  const flat = new Float32Array(N * DIM)
  const norms = new Float32Array(N)
  for (let i = 0; i < N; i++) {
    let n = 0
    for (let j = 0; j < DIM; j++) {
      flat[i * DIM + j] = vectors[i]![j]!
      n += vectors[i]![j]! ** 2
    }
    norms[i] = Math.sqrt(n)
  }
  return queries.map((q) => {
    const qn = Math.hypot(...q)
    const best: Array<[number, number]> = []
    for (let i = 0; i < N; i++) {
      let dot = 0
      const base = i * DIM
      for (let j = 0; j < DIM; j++) dot += flat[base + j]! * q[j]!
      const d = 1 - dot / (norms[i]! * qn)
      if (best.length < K || d < best[best.length - 1]![0]) {
        best.push([d, i])
        best.sort((a, b) => a[0] - b[0])
        if (best.length > K) best.pop()
      }
    }
    return best.map(([, i]) => i)
  })
}

const recall = (truth: Array<Array<number>>, got: Array<Array<number>>) => {
  let hit = 0
  for (let q = 0; q < truth.length; q++) {
    const set = new Set(got[q])
    for (const t of truth[q]!) if (set.has(t)) hit++
  }
  return hit / (truth.length * K)
}

/** A raw index grown like AlliDB's (initial 1024 slots, resizeIndex ×2 when full): isolates the growth's effect. */
const buildGrown = () => {
  const grown = new hnswlib.HierarchicalNSW("cosine", DIM)
  let capacity = 1024
  grown.initIndex(capacity, M, EF_CONSTRUCTION, 100)
  for (let i = 0; i < N; i++) {
    if (i >= capacity) {
      capacity *= 2
      grown.resizeIndex(capacity)
    }
    grown.addPoint(vectors[i]!, i)
  }
  return grown
}

// --- the stack ---------------------------------------------------------------
const storageLayer = (dataDir: string): Layer.Layer<StorageEngine.StorageEngine> =>
  storageKind === "fake"
    ? Layer.effect(StorageEngine.StorageEngine, FakeStorage.make(fakeState))
    : (StorageEngine.layerFrom({ dataDir, syncMode: "always" }) as unknown as Layer.Layer<StorageEngine.StorageEngine>)
const fakeState = FakeStorage.makeState()

interface Stack {
  readonly storage: StorageEngine.StorageEngineShape
  readonly index: UnifiedIndex.UnifiedIndexShape
  readonly executor: QueryExecutor.QueryExecutorShape
  readonly tenants: UnifiedIndex.TenantsShape
  readonly scope: Scope.CloseableScope
}

const openStack = (dataDir: string): Effect.Effect<Stack> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const config = IndexConfig.layer({ dataDir, snapshotIntervalMs: 0, m: M, efConstruction: EF_CONSTRUCTION, efSearch: EF })
    const stack = QueryExecutor.layer.pipe(
      Layer.provideMerge(UnifiedIndex.layer),
      Layer.provideMerge(Layer.merge(storageLayer(dataDir), config)),
    )
    const context = yield* Layer.buildWithScope(stack, scope).pipe(Effect.orDie)
    return {
      storage: Context.get(context, StorageEngine.StorageEngine),
      index: Context.get(context, UnifiedIndex.UnifiedIndex),
      executor: Context.get(context, QueryExecutor.QueryExecutor),
      tenants: Context.get(context, UnifiedIndex.Tenants),
      scope,
    }
  })

const program = Effect.gen(function* () {
  log(`index benchmark: ${N} × ${DIM} (seeded Gaussian mixture, ${CLUSTERS} clusters, seed ${SEED}), M=${M}, efConstruction=${EF_CONSTRUCTION}, ef=${EF}, k=${K}`)
  log(`storage: ${storageKind === "fake" ? "in-memory fake (NOT durable)" : "real StorageEngine stack, syncMode=always (durable)"}; ${Os.cpus().length} CPUs, load average ${Os.loadavg().map((x) => x.toFixed(1)).join(" ")}`)
  const truth = groundTruth()

  // raw hnswlib-node, same process
  const raw = new hnswlib.HierarchicalNSW("cosine", DIM)
  raw.initIndex(N, M, EF_CONSTRUCTION, 100)
  let t0 = performance.now()
  let cpu0 = process.cpuUsage()
  for (let i = 0; i < N; i++) raw.addPoint(vectors[i]!, i)
  const rawInsertSeconds = (performance.now() - t0) / 1000
  const rawInsertCpu = cpuSeconds(cpu0)

  // through the engine
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "allidb-bench-index-"))
  const stack = yield* openStack(dataDir)
  const batches = Array.from({ length: Math.ceil(N / BATCH) }, (_, b) =>
    vectors.slice(b * BATCH, (b + 1) * BATCH).map(
      (vector, j): StorageEngine.Mutation => ({
        _tag: "PutEntity",
        tenant: T,
        entity: new Entity({ id: `e${b * BATCH + j}` as Entity["id"], vector, updatedAt: 0 }, true),
      }),
    ),
  )
  const ingestProfile = option("profile-ingest", "")
  const ingestSession = ingestProfile === "" ? undefined : new Inspector.Session()
  if (ingestSession !== undefined) {
    ingestSession.connect()
    ingestSession.post("Profiler.enable")
    ingestSession.post("Profiler.start")
  }
  t0 = performance.now()
  cpu0 = process.cpuUsage()
  let lastSeq = 0
  yield* Effect.forEach(
    batches,
    (batch) =>
      stack.storage.write(T, batch).pipe(
        Effect.tap(({ seq }) =>
          Effect.sync(() => {
            lastSeq = Math.max(lastSeq, seq)
          }),
        ),
      ),
    { concurrency: 4, discard: true },
  ).pipe(Effect.orDie)
  const writtenSeconds = (performance.now() - t0) / 1000
  yield* stack.index.awaitSeq(lastSeq)
  const ingestSeconds = (performance.now() - t0) / 1000
  const ingestCpu = cpuSeconds(cpu0)
  const applyStats = stack.tenants.applyStats()
  if (ingestSession !== undefined) {
    yield* Effect.async<void>((resume) => {
      ingestSession.post("Profiler.stop", (_error, result) => {
        Fs.writeFileSync(ingestProfile, JSON.stringify(result.profile))
        resume(Effect.void)
      })
    })
  }

  const requests = queries.map((vector) =>
    Schema.decodeUnknownSync(QueryRequest)({ vector, k: K, ef: EF, include_entities: false }),
  )
  const withEntities = queries.map((vector) => Schema.decodeUnknownSync(QueryRequest)({ vector, k: K, ef: EF }))
  // Raw searchKnn, the executor and the native search on AlliDB's own HNSW take
  // turns, a round of every query each, in an order that rotates every round,
  // so machine noise (this host is shared) and cache warmth hit all alike. Each
  // round is timed in wall time and in this process's CPU time; the figures are
  // medians over rounds.
  raw.setEf(EF)
  const rawLatencies: Array<number> = []
  const rawGot: Array<Array<number>> = []
  const latencies: Array<number> = []
  const got: Array<Array<number>> = []
  // Each query runs in its own fiber, as a request does in the server: one
  // long-lived fiber looping over thousands of queries would hit Effect's
  // auto-yield (every 2048 operations, via setTimeout) and time the scheduler.
  const runtime = yield* Effect.runtime<never>()
  const runQuery = Runtime.runSync(runtime)
  // AlliDB's HNSW searched through its native binding directly (float32 queries converted up front).
  const own = stack.tenants.get(T)!.hnsw!
  const float32Queries = queries.map((q) => Float32Array.from(q))
  const ownLabels = new Uint32Array(K)
  const ownDistances = new Float32Array(K)
  // Optional diagnostic: a raw index grown from 1024 slots by resizeIndex ×2, as AlliDB's grows.
  const grown = flag("grown") ? buildGrown() : undefined
  own.setEf(EF)
  grown?.setEf(EF)
  const profileFile = option("profile-queries", "")
  const session = profileFile === "" ? undefined : new Inspector.Session()
  if (session !== undefined) {
    session.connect()
    session.post("Profiler.enable")
    session.post("Profiler.start")
  }
  type Runner = { readonly name: string; readonly run: (round: number) => void }
  const runners: Array<Runner> = [
    {
      name: "raw",
      run: (round) => {
        for (let q = 0; q < QUERIES; q++) {
          const s = performance.now()
          const r = raw.searchKnn(queries[q]!, K)
          if (round >= 0) rawLatencies.push(performance.now() - s)
          if (round === 0) rawGot.push(r.neighbors)
        }
      },
    },
    {
      name: "allidb",
      run: (round) => {
        for (let q = 0; q < QUERIES; q++) {
          const s = performance.now()
          const r = runQuery(stack.executor.query(T, requests[q]!).pipe(Effect.orDie))
          if (round >= 0) latencies.push(performance.now() - s)
          if (round === 0) got.push(r.map((x) => Number(x.id.slice(1))))
        }
      },
    },
    {
      // The executor's own cost without the runtime entry of runSync: one fiber
      // runs the round (an embedded caller inside an Effect program), with
      // Effect's auto-yield pushed out of the round.
      name: "allidb, one fiber",
      run: () => {
        runQuery(
          Effect.forEach(requests, (r) => stack.executor.query(T, r), { discard: true }).pipe(
            Effect.orDie,
            Effect.withMaxOpsBeforeYield(Number.MAX_SAFE_INTEGER),
          ),
        )
      },
    },
    {
      name: "own",
      run: () => {
        for (let q = 0; q < QUERIES; q++) own.search(float32Queries[q]!, K, ownLabels, ownDistances)
      },
    },
  ]
  if (flag("diagnose")) {
    const tenantIndex = stack.tenants.get(T)!
    runners.push(
      {
        name: "own, decoded request vector",
        run: () => {
          for (let q = 0; q < QUERIES; q++) own.search(Float32Array.from(requests[q]!.vector), K, ownLabels, ownDistances)
        },
      },
      {
        name: "runSync of a trivial effect",
        run: () => {
          for (let q = 0; q < QUERIES; q++) runQuery(Effect.withFiberRuntime(() => Effect.succeed(q)))
        },
      },
      {
        name: "TenantIndex.searchKnn",
        run: () => {
          for (let q = 0; q < QUERIES; q++) tenantIndex.searchKnn(requests[q]!.vector, K, EF)
        },
      },
      {
        // A fiber's start and exit right after a native search (cold caches),
        // as the executor's fiber gets them, without the executor's own work.
        name: "own, then runSync of a trivial effect",
        run: () => {
          for (let q = 0; q < QUERIES; q++) {
            own.search(float32Queries[q]!, K, ownLabels, ownDistances)
            runQuery(Effect.withFiberRuntime(() => Effect.succeed(q)).pipe(Effect.orDie))
          }
        },
      },
    )
  }
  if (grown !== undefined) {
    runners.push({
      name: "grown",
      run: () => {
        for (let q = 0; q < QUERIES; q++) grown.searchKnn(queries[q]!, K)
      },
    })
  }
  // Warm-up: the executor's path through Effect's runtime takes a few thousand
  // calls to reach V8's optimised tiers (measured: the first rounds cost up to
  // twice the later ones), and the native searches warm their caches.
  for (let w = 0; w < WARMUP_ROUNDS; w++) for (const r of runners) r.run(-1)
  const wallUs: Record<string, Array<number>> = {}
  const cpuUs: Record<string, Array<number>> = {}
  for (const r of runners) {
    wallUs[r.name] = []
    cpuUs[r.name] = []
  }
  for (let round = 0; round < QUERY_ROUNDS; round++) {
    for (let j = 0; j < runners.length; j++) {
      const runner = runners[(round + j) % runners.length]!
      const t = performance.now()
      const c = process.cpuUsage()
      runner.run(round)
      cpuUs[runner.name]!.push((cpuSeconds(c) * 1e6) / QUERIES)
      wallUs[runner.name]!.push(((performance.now() - t) * 1000) / QUERIES)
    }
  }
  if (session !== undefined) {
    yield* Effect.async<void>((resume) => {
      session.post("Profiler.stop", (_error, result) => {
        Fs.writeFileSync(profileFile, JSON.stringify(result.profile))
        resume(Effect.void)
      })
    })
  }
  const median = (xs: Array<number>) => pct(xs, 50)
  const qpsOf = (name: string) => 1e6 / median(wallUs[name]!)
  const cpuOf = (name: string) => median(cpuUs[name]!)
  // Each round runs every contender back to back, so a round's ratio pairs
  // measurements taken under the same machine load; the median of those
  // per-round ratios is steadier on a shared host than a ratio of medians.
  const pairedCpuRatio = (name: string) => median(cpuUs.raw!.map((raw, r) => raw / cpuUs[name]![r]!))
  const rawQps = qpsOf("raw")
  const rawRecall = recall(truth, rawGot)
  const qps = qpsOf("allidb")
  const engineRecall = recall(truth, got)
  // With entities: the first pass reads every fetched row's block from its
  // table file (the block cache is cold), the second finds them cached.
  t0 = performance.now()
  for (const r of withEntities) yield* stack.executor.query(T, r).pipe(Effect.orDie)
  const qpsWithEntitiesCold = QUERIES / ((performance.now() - t0) / 1000)
  t0 = performance.now()
  for (const r of withEntities) yield* stack.executor.query(T, r).pipe(Effect.orDie)
  const qpsWithEntities = QUERIES / ((performance.now() - t0) / 1000)
  const rssLoaded = process.memoryUsage().rss

  t0 = performance.now()
  yield* stack.index.snapshot
  const snapshotSeconds = (performance.now() - t0) / 1000
  yield* Scope.close(stack.scope, Exit.void)

  // Storage alone, to tell its start-up (WAL replay, manifest) from the index's.
  const storageOpen = yield* Effect.gen(function* () {
    const scope = yield* Scope.make()
    const s0 = performance.now()
    yield* Layer.buildWithScope(storageLayer(dataDir), scope).pipe(Effect.orDie)
    const seconds = (performance.now() - s0) / 1000
    yield* Scope.close(scope, Exit.void)
    return seconds
  })
  // restart from the snapshot
  t0 = performance.now()
  const fromSnapshot = yield* openStack(dataDir)
  const snapshotRestart = (performance.now() - t0) / 1000
  const check = yield* fromSnapshot.executor.query(T, requests[0]!).pipe(Effect.orDie)
  yield* Scope.close(fromSnapshot.scope, Exit.void)
  // restart without one: a rebuild from storage
  Fs.rmSync(Path.join(dataDir, "index"), { recursive: true, force: true })
  t0 = performance.now()
  const rebuilt = yield* openStack(dataDir)
  const rebuildRestart = (performance.now() - t0) / 1000
  const check2 = yield* rebuilt.executor.query(T, requests[0]!).pipe(Effect.orDie)
  yield* Scope.close(rebuilt.scope, Exit.void)
  Fs.rmSync(dataDir, { recursive: true, force: true })

  const rawInsertRate = N / rawInsertSeconds
  const ingestRate = N / ingestSeconds
  log("")
  log(`query rounds: ${QUERY_ROUNDS} × ${QUERIES} queries per contender, order rotating; QPS and CPU are medians over rounds`)
  log("| measure | AlliDB (engine + index) | raw hnswlib-node | ratio |")
  log("|---|---|---|---|")
  log(`| ingest, vectors/s (wall) | ${ingestRate.toFixed(0)} (writes acked in ${writtenSeconds.toFixed(1)} s, indexed in ${ingestSeconds.toFixed(1)} s) | ${rawInsertRate.toFixed(0)} (addPoint) | ${(ingestRate / rawInsertRate).toFixed(2)}× |`)
  log(`| ingest, vectors per CPU-second | ${(N / ingestCpu).toFixed(0)} | ${(N / rawInsertCpu).toFixed(0)} | ${(rawInsertCpu / ingestCpu).toFixed(2)}× |`)
  log(`| of which the index's apply loop, s (main thread) | re-reads (getMany) ${(applyStats.readMs / 1000).toFixed(1)}, applying rows ${(applyStats.applyMs / 1000).toFixed(1)} = addPoint ${(applyStats.addPointMs / 1000).toFixed(1)} + the index's own work ${((applyStats.applyMs - applyStats.addPointMs) / 1000).toFixed(2)} (${(((applyStats.applyMs - applyStats.addPointMs) * 1000) / Math.max(1, applyStats.rows)).toFixed(1)} µs per row) | addPoint ${rawInsertSeconds.toFixed(1)} | |`)
  log(`| query QPS, 1 thread, ef=${EF} | ${qps.toFixed(0)} (ids only), ${qpsWithEntities.toFixed(0)} with entities fetched (${qpsWithEntitiesCold.toFixed(0)} on the first pass, block cache cold) | ${rawQps.toFixed(0)} (searchKnn) | ${(qps / rawQps).toFixed(2)}× |`)
  log(`| query CPU per query, µs | ${cpuOf("allidb").toFixed(0)} | ${cpuOf("raw").toFixed(0)} | ${(cpuOf("raw") / cpuOf("allidb")).toFixed(2)}× (median of per-round ratios ${pairedCpuRatio("allidb").toFixed(2)}×) |`)
  log(`| query QPS and CPU µs/query, executor in one fiber (no runSync per query) | ${qpsOf("allidb, one fiber").toFixed(0)}, ${cpuOf("allidb, one fiber").toFixed(0)} µs | | ${(qpsOf("allidb, one fiber") / rawQps).toFixed(2)}×, CPU ${(cpuOf("raw") / cpuOf("allidb, one fiber")).toFixed(2)}× (per-round ${pairedCpuRatio("allidb, one fiber").toFixed(2)}×) |`)
  log(`| (diagnostic) AlliDB's own HNSW searched through NativeHnsw: QPS, CPU µs/query | ${qpsOf("own").toFixed(0)}, ${cpuOf("own").toFixed(0)} | | ${(cpuOf("raw") / cpuOf("own")).toFixed(2)}× (per-round ${pairedCpuRatio("own").toFixed(2)}×) |`)
  log(`| (diagnostic) the executor's own CPU per query: executor − searchKnn on its HNSW, median of per-round differences, µs | ${median(cpuUs.allidb!.map((x, r) => x - cpuUs.own![r]!)).toFixed(1)} (fiber per query), ${median(cpuUs["allidb, one fiber"]!.map((x, r) => x - cpuUs.own![r]!)).toFixed(1)} (one fiber) | | |`)
  if (grown !== undefined) {
    log(`| (diagnostic) raw index grown by resizeIndex ×2 from 1024: QPS, CPU µs/query | | ${qpsOf("grown").toFixed(0)}, ${cpuOf("grown").toFixed(0)} | ${(cpuOf("raw") / cpuOf("grown")).toFixed(2)}× |`)
  }
  log(`| query p50 / p99, ms | ${pct(latencies, 50).toFixed(3)} / ${pct(latencies, 99).toFixed(3)} | ${pct(rawLatencies, 50).toFixed(3)} / ${pct(rawLatencies, 99).toFixed(3)} | |`)
  log(`| recall@10 | ${engineRecall.toFixed(4)} | ${rawRecall.toFixed(4)} | |`)
  log(`| restart to ready, s (storage open + index) | from snapshot ${snapshotRestart.toFixed(2)} | rebuild from storage ${rebuildRestart.toFixed(2)} | ${(rebuildRestart / snapshotRestart).toFixed(1)}× faster |`)
  log(`| of which the index, s (minus a storage-only open of ${storageOpen.toFixed(2)} s) | ${(snapshotRestart - storageOpen).toFixed(2)} | ${(rebuildRestart - storageOpen).toFixed(2)} | ${((rebuildRestart - storageOpen) / Math.max(0.001, snapshotRestart - storageOpen)).toFixed(1)}× faster |`)
  log(`| snapshot write, s | ${snapshotSeconds.toFixed(2)} | | |`)
  log(`| RSS after load (both indexes in memory) | ${mb(rssLoaded)} | | |`)
  log("")
  const before = `e${got[0]![0]}`
  for (const r of runners.slice(4)) log(`(diagnostic) ${r.name}: median CPU µs/query ${cpuOf(r.name).toFixed(0)}`)
  if (cpuUs["own, then runSync of a trivial effect"] !== undefined) {
    const minusOwn = (name: string) => median(cpuUs[name]!.map((x, r) => x - cpuUs.own![r]!)).toFixed(1)
    log(`(diagnostic) µs per query above searchKnn on AlliDB's HNSW, median of per-round differences: a trivial fiber after the search ${minusOwn("own, then runSync of a trivial effect")}; the executor in its own fiber ${minusOwn("allidb")}; the executor in one fiber ${minusOwn("allidb, one fiber")}`)
  }
  for (const r of runners) log(`CPU µs/query per round, ${r.name}: ${cpuUs[r.name]!.map((x) => x.toFixed(0)).join(" ")}`)
  log(`top-1 of query 0 before / after snapshot restart / after rebuild: ${before} / ${check[0]?.id} / ${check2[0]?.id}`)
})

Effect.runPromise(
  program.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))),
).catch((e) => {
  console.error(e)
  process.exit(1)
})
