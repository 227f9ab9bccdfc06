/**
 * `npm run bench -- restart [--quick] [--sizes 10k,100k] [--repeats 3]`
 *
 * Time from spawning allidbd to its first 200 on /ready, at each data size:
 * from the index snapshot (written when the previous process stopped) and
 * from a rebuild (the snapshot dir `<data-dir>/index` deleted, so the index is
 * rebuilt from storage). Also the resident memory per stored vector: RSS of the
 * loaded node minus RSS of an empty one, divided by the entity count. Each
 * start is checked with a kNN query that must return 10 results.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { copyDataDir, ensureBuilt, httpQuery, knnRequest, loadedDataDir, type Server, startServer } from "./_allidb.js"
import { generate, label, queryOf, toArray } from "./_data.js"
import { fmt, isMain, log, median, numbers, option, quick, repeat, table, writeResult } from "./_lib.js"

export interface RestartOptions {
  readonly sizes: ReadonlyArray<number>
  readonly dim: number
  readonly repeats: number
}

const dirBytes = (dir: string): number => {
  let total = 0
  for (const e of Fs.readdirSync(dir, { withFileTypes: true })) {
    const p = Path.join(dir, e.name)
    total += e.isDirectory() ? dirBytes(p) : Fs.statSync(p).size
  }
  return total
}

export const runRestart = async (o: RestartOptions) => {
  ensureBuilt()
  const rows: Array<{
    n: number
    snapshotMs: number
    rebuildMs: number
    snapshotRounds: Array<number>
    rebuildRounds: Array<number>
    rssEmptyMiB: number
    rssLoadedMiB: number
    rssBytesPerVector: number
    diskMiB: number
  }> = []
  for (const n of o.sizes) {
    const d = generate({ n, dim: o.dim, queries: 20, seed: 42 })
    const dir = copyDataDir(await loadedDataDir(d))
    const empty = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-empty-"))
    const check = async (s: Server) => {
      const rs = await httpQuery(s.url, knnRequest(toArray(queryOf(d, 0)), 64))
      if (rs.length !== 10) throw new Error(`restarted node answered ${rs.length} results`)
    }
    const emptyRss: Array<number> = []
    const loadedRss: Array<number> = []
    log(`restart ${label(d)}…`)
    const snapshot = await repeat(o.repeats, async () => {
      const e = await startServer(empty)
      emptyRss.push(e.rss())
      await e.stop()
      const s = await startServer(dir)
      await check(s)
      loadedRss.push(s.rss())
      await s.stop()
      return s.readyMs
    })
    const rebuild = await repeat(o.repeats, async () => {
      Fs.rmSync(Path.join(dir, "index"), { recursive: true, force: true })
      const s = await startServer(dir)
      await check(s)
      await s.stop()
      return s.readyMs
    })
    const diskMiB = dirBytes(dir) / 2 ** 20
    Fs.rmSync(dir, { recursive: true, force: true })
    Fs.rmSync(empty, { recursive: true, force: true })
    const rssEmpty = median(emptyRss)
    const rssLoaded = median(loadedRss)
    rows.push({
      n,
      snapshotMs: median(snapshot),
      rebuildMs: median(rebuild),
      snapshotRounds: snapshot.map(Math.round),
      rebuildRounds: rebuild.map(Math.round),
      rssEmptyMiB: rssEmpty / 2 ** 20,
      rssLoadedMiB: rssLoaded / 2 ** 20,
      rssBytesPerVector: (rssLoaded - rssEmpty) / n,
      diskMiB,
    })
  }
  table(
    `allidbd start → ready (× ${o.dim}, median of ${o.repeats})`,
    ["entities", "from snapshot ms", "rebuild ms", "rebuild ÷ snapshot", "RSS empty MiB", "RSS loaded MiB", "RSS bytes/vector", "data dir MiB"],
    rows.map((r) => [
      fmt(r.n),
      fmt(r.snapshotMs),
      fmt(r.rebuildMs),
      `${fmt(r.rebuildMs / r.snapshotMs, 1)}×`,
      fmt(r.rssEmptyMiB),
      fmt(r.rssLoadedMiB),
      fmt(r.rssBytesPerVector),
      fmt(r.diskMiB),
    ]),
  )
  return { dim: o.dim, repeats: o.repeats, rows }
}

export const restartOptionsFromArgs = (): RestartOptions => ({
  sizes: numbers("sizes", quick ? "5k,10k" : "10k,100k"),
  dim: Number(option("dim", "128")),
  repeats: Number(option("repeats", "3")),
})

if (isMain(import.meta.url)) {
  const started = Date.now()
  const result = await runRestart(restartOptionsFromArgs())
  writeResult("restart", { ...result, seconds: (Date.now() - started) / 1000 })
}
