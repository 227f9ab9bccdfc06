/**
 * AlliDB as the benchmarks drive it: the embeddable node Layer in this process
 * (`AlliDb.layer`), the built `allidbd` as a child process on free ports, its
 * native HTTP API and the typed RPC client. Also a per-commit cache of loaded
 * data dirs, so workloads that only read do not re-ingest.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Coordinator } from "@allidb/cluster"
import { decodeEntities as decodeEntitiesFast, decodeQueryRequest, type QueryRequest, tenantId } from "@allidb/core"
import { AlliDb } from "allidbd"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { type Dataset, dataKey, entityJson, type Spec } from "./_data.js"
import { CACHE_DIR, fmt, gitHead, log, now, ROOT, rssOf, sleep } from "./_lib.js"

export const MAIN = Path.join(ROOT, "apps", "allidbd", "dist", "main.js")
export const TENANT = tenantId("default")

/** Workloads need the build: the node layer and allidbd come from dist/. */
export const ensureBuilt = (): void => {
  if (Fs.existsSync(MAIN) && !process.argv.includes("--build")) return
  log("building (npx tsc -b)…")
  const r = spawnSync("npx", ["tsc", "-b"], { cwd: ROOT, stdio: "inherit" })
  if (r.status !== 0) throw new Error("npx tsc -b failed")
}

export type EntityJson = ReturnType<typeof entityJson>
// Entities arrive in their wire form too: core's decoder (the schema's result
// and errors, with a fast path for the common shapes).
const decodeEntities = decodeEntitiesFast

/** Pure kNN: the unified score reduced to similarity, ids and scores only. */
export const knnRequest = (vector: ReadonlyArray<number>, ef: number) => ({
  vector,
  k: 10,
  ef,
  weights: { vector: 1, graph: 0, importance: 0, recency: 0 },
  include_entities: false,
})

// --- the node Layer in this process ------------------------------------------------

export interface InProcess {
  readonly upsert: (batch: ReadonlyArray<EntityJson>, wait?: boolean) => Promise<void>
  readonly query: (request: typeof QueryRequest.Encoded) => Promise<ReadonlyArray<{ readonly id: string; readonly score: number }>>
  /**
   * Many queries one after another inside ONE Effect program (how an Effect
   * app embedding the Layer calls the Coordinator), each timed with
   * performance.now(); `query` above instead pays a runPromise per call.
   */
  readonly queryMany: (
    requests: ReadonlyArray<typeof QueryRequest.Encoded>,
    options?: { readonly decodeFirst?: boolean },
  ) => Promise<{
    readonly results: Array<ReadonlyArray<{ readonly id: string }>>
    readonly latencies: Array<number>
    /** Wall time of the timed loop (excludes decoding when decodeFirst). */
    readonly seconds: number
  }>
  readonly remove: (id: string) => Promise<void>
  readonly close: () => Promise<void>
}

export const openInProcess = async (dataDir: string): Promise<InProcess> => {
  const layer = AlliDb.layer(AlliDb.config({ dataDir, syncMode: "always" })).pipe(
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  )
  const runtime = ManagedRuntime.make(layer)
  const db = await runtime.runPromise(Coordinator.Coordinator)
  // A request arrives in its wire form and is decoded as core documents it
  // for that case (the schema's result and errors; a hand-checked fast path
  // for plain kNN requests, property-tested against the schema).
  const decodeQuery = decodeQueryRequest
  const quiet = <A, E>(e: Effect.Effect<A, E>) => e.pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  return {
    upsert: async (batch, wait = true) => {
      const r = await runtime.runPromise(quiet(db.upsert(TENANT, decodeEntities(batch), { wait })))
      if (r.failed.length > 0) throw new Error(`upsert refused ${r.failed.length} entities: ${JSON.stringify(r.failed[0])}`)
    },
    query: (request) => runtime.runPromise(quiet(db.query(TENANT, decodeQuery(request)))),
    queryMany: (requests, options) => {
      const latencies: Array<number> = []
      // decodeFirst: the requests are decoded before the clock starts, which
      // isolates the engine from Schema validation of the request (an
      // embedder that builds QueryRequest values once and reuses them).
      const decoded = options?.decodeFirst === true ? requests.map((r) => decodeQuery(r)) : undefined
      let started = 0
      const program = Effect.forEach(requests, (request, i) =>
        Effect.suspend(() => {
          const t0 = performance.now()
          if (i === 0) started = t0
          return db.query(TENANT, decoded === undefined ? decodeQuery(request) : decoded[i]!).pipe(
            Effect.tap(() =>
              Effect.sync(() => {
                latencies.push(performance.now() - t0)
              }),
            ),
          )
        }),
      )
      return runtime
        .runPromise(quiet(program))
        .then((results) => ({ results: results.map((r) => [...r]), latencies, seconds: (performance.now() - started) / 1000 }))
    },
    remove: (id) => runtime.runPromise(quiet(db.remove(TENANT, id as never).pipe(Effect.catchTag("NotFound", () => Effect.void)))),
    close: () => runtime.dispose(),
  }
}

export const entitiesOf = (d: Dataset, start: number, end: number): Array<EntityJson> => {
  const out: Array<EntityJson> = []
  for (let i = start; i < end; i++) out.push(entityJson(d, i))
  return out
}

/** Upserts every entity in batches with `concurrency` batches in flight; returns seconds. */
export const loadAll = async (
  upsert: (batch: ReadonlyArray<EntityJson>) => Promise<void>,
  d: Dataset,
  batchSize: number,
  concurrency: number,
  progress = true,
): Promise<number> => {
  const t0 = now()
  let next = 0
  let done = 0
  let lastLog = t0
  const worker = async () => {
    for (;;) {
      const start = next
      if (start >= d.n) return
      const end = Math.min(d.n, start + batchSize)
      next = end
      await upsert(entitiesOf(d, start, end))
      done += end - start
      if (progress && now() - lastLog > 15_000) {
        lastLog = now()
        log(`  … ${fmt(done)} / ${fmt(d.n)} (${fmt(done / ((now() - t0) / 1000))} entities/s)`)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return (now() - t0) / 1000
}

/**
 * A data dir holding the whole data set (ingested in-process, index snapshot
 * written on close), cached per data set and commit under .bench-cache/db/
 * (`all` pins the tag for its whole run, so a commit landing mid-run does not
 * force a reload).
 */
export const dataDirPath = (s: Spec): string =>
  Path.join(CACHE_DIR, "db", `${dataKey(s)}-${process.env.ALLIDB_BENCH_TAG ?? gitHead()}`)

export const loadedDataDir = async (d: Dataset): Promise<string> => {
  const dir = dataDirPath(d)
  if (Fs.existsSync(Path.join(dir, ".complete"))) return dir
  Fs.rmSync(dir, { recursive: true, force: true })
  Fs.mkdirSync(dir, { recursive: true })
  log(`loading ${fmt(d.n)} entities into ${Path.relative(ROOT, dir)} (in-process, cached for later workloads)…`)
  const db = await openInProcess(dir)
  const cpu0 = process.cpuUsage()
  const seconds = await loadAll((b) => db.upsert(b), d, 1000, 2)
  const cpu = process.cpuUsage(cpu0)
  await db.close()
  markLoaded(dir, d, seconds, (cpu.user + cpu.system) / 1e6)
  log(`  loaded in ${fmt(seconds, 1)} s`)
  return dir
}

/** `cpuSeconds`: this process's CPU time (user + system) during the load, when known. */
export const markLoaded = (dir: string, d: Dataset, seconds: number, cpuSeconds?: number): void =>
  Fs.writeFileSync(
    Path.join(dir, ".complete"),
    JSON.stringify({ seconds, entities: d.n, date: new Date().toISOString(), ...(cpuSeconds === undefined ? {} : { cpuSeconds }) }),
  )

/** How long the in-process load of a cached data dir took (wall, and CPU when recorded), and when. */
export const loadRecord = (
  dir: string,
): { readonly seconds: number; readonly cpuSeconds?: number; readonly entities: number; readonly date: string } =>
  JSON.parse(Fs.readFileSync(Path.join(dir, ".complete"), "utf8"))

/** A private copy of a loaded data dir, for workloads that write. */
export const copyDataDir = (dir: string): string => {
  const copy = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-allidb-"))
  Fs.cpSync(dir, copy, { recursive: true })
  Fs.rmSync(Path.join(copy, ".complete"), { force: true })
  return copy
}

// --- allidbd as a child process ------------------------------------------------------

export interface Server {
  readonly url: string
  readonly pid: number
  readonly dataDir: string
  /** ms from spawn to the first 200 from /ready. */
  readonly readyMs: number
  readonly rss: () => number
  readonly stop: () => Promise<number | null>
}

const waitExit = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once("exit", (code) => resolve(code)))

export const startServer = async (dataDir: string, extraArgs: ReadonlyArray<string> = []): Promise<Server> => {
  const t0 = now()
  const child = spawn(
    process.execPath,
    [MAIN, "-http-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", `-data-dir=${dataDir}`, "-log-level=INFO", ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"] },
  )
  let stderr = ""
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString()
  })
  const url = await new Promise<string>((resolve, reject) => {
    let partial = ""
    const timer = setTimeout(() => reject(new Error(`allidbd did not listen within 300 s\n${stderr}`)), 300_000)
    child.once("exit", (code) => reject(new Error(`allidbd exited with ${code}\n${stderr}`)))
    child.stdout!.on("data", (b: Buffer) => {
      partial += b.toString()
      const lines = partial.split("\n")
      partial = lines.pop() ?? ""
      for (const line of lines) {
        if (!line.includes('"listening"')) continue
        try {
          const record = JSON.parse(line) as { message?: string; http?: string }
          if (record.message === "listening" && record.http !== undefined) {
            clearTimeout(timer)
            resolve(`http://${record.http}`)
          }
        } catch {
          // not a JSON line
        }
      }
    })
  })
  for (;;) {
    if (child.exitCode !== null) throw new Error(`allidbd exited while starting\n${stderr}`)
    try {
      if ((await fetch(`${url}/ready`)).status === 200) break
    } catch {
      // not up yet
    }
    await sleep(20)
  }
  const readyMs = now() - t0
  child.stdout!.resume()
  return {
    url,
    pid: child.pid!,
    dataDir,
    readyMs,
    rss: () => rssOf(child.pid!),
    stop: async () => {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000)
      const code = await waitExit(child)
      clearTimeout(timer)
      return code
    },
  }
}

// --- HTTP /v1 ---------------------------------------------------------------------------

/**
 * fetch, retried once when the server closed a pooled keep-alive connection
 * just as it was reused ("other side closed"): undici retries only idempotent
 * methods itself, and the race is the transport's, not the request's.
 */
const fetchRetrying = async (url: string, init: RequestInit): Promise<Response> => {
  try {
    return await fetch(url, init)
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause
    if (cause?.code !== "UND_ERR_SOCKET") throw e
    return fetch(url, init)
  }
}

const post = async (url: string, body: unknown): Promise<unknown> => {
  const res = await fetchRetrying(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

export const httpUpsert = async (url: string, batch: ReadonlyArray<EntityJson>, wait = true): Promise<void> => {
  const r = (await post(`${url}/v1/entities`, { entities: batch, wait })) as { failed?: Array<unknown> }
  if (r.failed !== undefined && r.failed.length > 0) throw new Error(`upsert refused: ${JSON.stringify(r.failed[0])}`)
}

export const httpQuery = async (url: string, request: unknown): Promise<ReadonlyArray<{ readonly id: string; readonly score: number }>> =>
  ((await post(`${url}/v1/query`, request)) as { results: Array<{ id: string; score: number }> }).results

export const httpDelete = async (url: string, id: string): Promise<void> => {
  const res = await fetchRetrying(`${url}/v1/entities/${encodeURIComponent(id)}`, { method: "DELETE" })
  await res.text()
  if (res.status !== 200 && res.status !== 404) throw new Error(`DELETE ${id}: ${res.status}`)
}
