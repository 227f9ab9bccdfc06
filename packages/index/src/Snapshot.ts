/**
 * Per-tenant index snapshots under `<dataDir>/index/<tenant-hash>/`:
 *
 *   hnsw-<gen>.bin     hnswlib's own index file (writeIndex)
 *   vectors-<gen>.bin  float32 vector mirror (nextLabel × dim) then norms (nextLabel)
 *   state-<gen>.bin    frames [u32 LE length][msgpack]: a header, then chunks of
 *                      attributes and of outgoing edges
 *   MANIFEST           JSON naming the generation, the seq it covers and every file
 *                      with its size and crc32, plus a crc32 of itself
 *
 * Files are written under `.tmp` names, fsynced and renamed; the MANIFEST
 * (same dance, then a directory fsync) is the commit point, so a crash leaves
 * either the old or the new generation. Loading checks every checksum and the
 * consistency of the pieces; any doubt is an error and the caller rebuilds
 * from storage. hnswlib reads and writes real paths itself, so this module
 * uses node:fs rather than the storage Disk service.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as FsP from "node:fs/promises"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import * as Effect from "effect/Effect"
import { Packr } from "msgpackr"
import { SnapshotUnusable } from "./Errors.js"
import { Slice } from "./EventLoop.js"
import { type Attributes, type HnswParams, TenantIndex } from "./TenantIndex.js"
import * as NativeHnsw from "./NativeHnsw.js"
import type { Metric } from "./UnifiedIndex.js"

export const FORMAT_VERSION = 1
const MANIFEST = "MANIFEST"
const CHUNK = 4096

const packr = new Packr({ useRecords: false, mapsAsObjects: true })

export interface ManifestFile {
  readonly role: "hnsw" | "vectors" | "state"
  readonly name: string
  readonly bytes: number
  readonly crc32: number
}

export interface Manifest {
  readonly format: number
  readonly tenant: string
  readonly generation: number
  /** Every commit up to this seq is reflected. */
  readonly seq: number
  readonly metric: Metric
  readonly dimension: number | null
  readonly files: ReadonlyArray<ManifestFile>
}

export const tenantDir = (root: string, tenant: string): string =>
  Path.join(root, "index", Crypto.createHash("sha256").update(tenant, "utf8").digest("hex").slice(0, 32))

const unusable = (tenant: string, reason: string) => new SnapshotUnusable({ tenant, reason })

const io = <A>(tenant: string, what: string, f: () => Promise<A>): Effect.Effect<A, SnapshotUnusable> =>
  Effect.tryPromise({ try: f, catch: (e) => unusable(tenant, `${what}: ${e instanceof Error ? e.message : String(e)}`) })

const fsyncPath = async (path: string, flags: string): Promise<void> => {
  const handle = await FsP.open(path, flags)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** crc32 of a file, streamed in 1 MiB chunks so the event loop keeps turning. */
const fileCrc32 = async (path: string): Promise<{ crc32: number; bytes: number }> => {
  let crc = 0
  let bytes = 0
  for await (const chunk of Fs.createReadStream(path, { highWaterMark: 1 << 20 })) {
    crc = Zlib.crc32(chunk as Buffer, crc)
    bytes += (chunk as Buffer).length
  }
  return { crc32: crc, bytes }
}

const manifestChecksum = (body: Manifest): number => Zlib.crc32(JSON.stringify(body))

const frame = (value: unknown): Buffer => {
  const payload = packr.pack(value)
  const header = Buffer.allocUnsafe(4)
  header.writeUInt32LE(payload.length, 0)
  return Buffer.concat([header, payload])
}

type AttrRow = [string, string | null, Record<string, unknown> | null, number | null, number | null, number]
type EdgeRow = [string, Array<[string, string, number]>]

interface StateHeader {
  readonly format: number
  readonly tenant: string
  readonly metric: Metric
  readonly dimension: number | null
  readonly capacity: number
  readonly nextLabel: number
  readonly liveVectors: number
  readonly freeLabels: ReadonlyArray<number>
}

/**
 * Writes a snapshot of `index` covering `seq`. The caller must keep the index
 * unchanged until this completes (hnswlib writes its file on a worker thread).
 */
export const write = (
  root: string,
  index: TenantIndex,
  seq: number,
  sliceMs: number,
): Effect.Effect<Manifest, SnapshotUnusable> =>
  Effect.gen(function* () {
    const tenant = index.tenant
    const dir = tenantDir(root, tenant)
    yield* io(tenant, "mkdir", () => FsP.mkdir(dir, { recursive: true }))
    const previous = yield* readManifest(dir, tenant).pipe(Effect.option)
    const generation = previous._tag === "Some" ? previous.value.generation + 1 : 1
    const slice = new Slice(sliceMs)

    // state: header, then attributes and edges in chunks (encoded slice by slice)
    const header: StateHeader = {
      format: FORMAT_VERSION,
      tenant,
      metric: index.metric,
      dimension: index.dimension ?? null,
      capacity: index.capacity,
      nextLabel: index.nextLabel,
      liveVectors: index.liveVectors,
      freeLabels: index.freeLabels,
    }
    const frames: Array<Buffer> = [frame(header)]
    let attrs: Array<AttrRow> = []
    for (const [id, a] of index.attrs) {
      attrs.push([id, a.type ?? null, a.metadata ?? null, a.importance ?? null, a.updatedAt ?? null, a.label])
      if (attrs.length === CHUNK) {
        frames.push(frame(["a", attrs]))
        attrs = []
        yield* slice.yieldIfDue
      }
    }
    if (attrs.length > 0) frames.push(frame(["a", attrs]))
    let edges: Array<EdgeRow> = []
    for (const [from, list] of index.graph.entries()) {
      edges.push([from, list.map((e) => [e.to, e.relation, e.weight])])
      if (edges.length === CHUNK) {
        frames.push(frame(["e", edges]))
        edges = []
        yield* slice.yieldIfDue
      }
    }
    if (edges.length > 0) frames.push(frame(["e", edges]))

    const files: Array<{ role: ManifestFile["role"]; name: string }> = [{ role: "state", name: `state-${generation}.bin` }]
    const statePath = Path.join(dir, `${files[0]!.name}.tmp`)
    yield* io(tenant, "write state", () => FsP.writeFile(statePath, frames))

    if (index.hnsw !== undefined && index.dimension !== undefined) {
      const d = index.dimension
      const n = index.nextLabel
      const vectorsName = `vectors-${generation}.bin`
      const vectorBytes = Buffer.from(index.vectors.buffer, index.vectors.byteOffset, n * d * 4)
      const normBytes = Buffer.from(index.norms.buffer, index.norms.byteOffset, n * 4)
      yield* io(tenant, "write vectors", () => FsP.writeFile(Path.join(dir, `${vectorsName}.tmp`), [vectorBytes, normBytes]))
      files.push({ role: "vectors", name: vectorsName })
      const hnswName = `hnsw-${generation}.bin`
      const hnsw = index.hnsw
      yield* io(tenant, "write hnsw", () => hnsw.writeIndex(Path.join(dir, `${hnswName}.tmp`)))
      files.push({ role: "hnsw", name: hnswName })
    }

    const described: Array<ManifestFile> = []
    for (const f of files) {
      const tmp = Path.join(dir, `${f.name}.tmp`)
      yield* io(tenant, "fsync", () => fsyncPath(tmp, "r+"))
      const { crc32, bytes } = yield* io(tenant, "checksum", () => fileCrc32(tmp))
      yield* io(tenant, "rename", () => FsP.rename(tmp, Path.join(dir, f.name)))
      described.push({ role: f.role, name: f.name, bytes, crc32 })
    }
    const manifest: Manifest = {
      format: FORMAT_VERSION,
      tenant,
      generation,
      seq,
      metric: index.metric,
      dimension: index.dimension ?? null,
      files: described,
    }
    const text = JSON.stringify({ ...manifest, checksum: manifestChecksum(manifest) })
    const manifestTmp = Path.join(dir, `${MANIFEST}.tmp`)
    yield* io(tenant, "write manifest", () => FsP.writeFile(manifestTmp, text))
    yield* io(tenant, "fsync manifest", () => fsyncPath(manifestTmp, "r+"))
    yield* io(tenant, "rename manifest", () => FsP.rename(manifestTmp, Path.join(dir, MANIFEST)))
    yield* io(tenant, "fsync dir", () => fsyncPath(dir, "r"))
    // Older generations are garbage once the new manifest is durable.
    const keep = new Set([MANIFEST, ...described.map((f) => f.name)])
    const names = yield* io(tenant, "list", () => FsP.readdir(dir))
    for (const name of names) {
      if (!keep.has(name)) yield* io(tenant, "remove", () => FsP.rm(Path.join(dir, name), { force: true }))
    }
    return manifest
  })

const readManifest = (dir: string, tenant: string): Effect.Effect<Manifest, SnapshotUnusable> =>
  Effect.gen(function* () {
    const text = yield* io(tenant, "read manifest", () => FsP.readFile(Path.join(dir, MANIFEST), "utf8"))
    const parsed = yield* Effect.try({
      try: () => JSON.parse(text) as Manifest & { readonly checksum: number },
      catch: () => unusable(tenant, "manifest is not JSON"),
    })
    const { checksum, ...body } = parsed
    if (checksum !== manifestChecksum(body)) return yield* unusable(tenant, "manifest checksum mismatch")
    if (body.format !== FORMAT_VERSION) return yield* unusable(tenant, `unknown snapshot format ${body.format}`)
    if (body.tenant !== tenant) return yield* unusable(tenant, "manifest names another tenant")
    return body
  })

export interface Loaded {
  readonly index: TenantIndex
  readonly seq: number
}

/** Reads the committed snapshot of `tenant`, verifying every file. */
export const load = (
  root: string,
  tenant: string,
  expected: { readonly metric: Metric; readonly dimension: number | undefined; readonly params: HnswParams },
  sliceMs: number,
): Effect.Effect<Loaded, SnapshotUnusable> =>
  Effect.gen(function* () {
    const dir = tenantDir(root, tenant)
    const manifest = yield* readManifest(dir, tenant)
    if (manifest.metric !== expected.metric) {
      return yield* unusable(tenant, `snapshot metric ${manifest.metric} differs from the configured ${expected.metric}`)
    }
    if (expected.dimension !== undefined && manifest.dimension !== null && manifest.dimension !== expected.dimension) {
      return yield* unusable(
        tenant,
        `snapshot dimension ${manifest.dimension} differs from the configured ${expected.dimension}`,
      )
    }
    const files = new Map(manifest.files.map((f) => [f.role, f]))
    for (const f of manifest.files) {
      const { crc32, bytes } = yield* io(tenant, `checksum ${f.name}`, () => fileCrc32(Path.join(dir, f.name)))
      if (bytes !== f.bytes || crc32 !== f.crc32) return yield* unusable(tenant, `${f.name} checksum mismatch`)
    }
    const stateFile = files.get("state")
    if (stateFile === undefined) return yield* unusable(tenant, "manifest names no state file")
    const state = yield* io(tenant, "read state", () => FsP.readFile(Path.join(dir, stateFile.name)))
    const slice = new Slice(sliceMs)
    const decoded = yield* Effect.try({
      try: () => {
        const values: Array<unknown> = []
        let offset = 0
        while (offset < state.length) {
          const length = state.readUInt32LE(offset)
          values.push(packr.unpack(state.subarray(offset + 4, offset + 4 + length)))
          offset += 4 + length
        }
        return values
      },
      catch: (e) => unusable(tenant, `state undecodable: ${String(e)}`),
    })
    const header = decoded[0] as StateHeader | undefined
    if (header === undefined || header.format !== FORMAT_VERSION || header.tenant !== tenant) {
      return yield* unusable(tenant, "state header invalid")
    }
    if (header.dimension !== manifest.dimension || header.metric !== manifest.metric) {
      return yield* unusable(tenant, "state header disagrees with the manifest")
    }
    const index = new TenantIndex(tenant, manifest.metric, expected.params, header.dimension ?? undefined)
    for (let i = 1; i < decoded.length; i++) {
      const [kind, rows] = decoded[i] as ["a", Array<AttrRow>] | ["e", Array<EdgeRow>]
      if (kind === "a") {
        for (const [id, type, metadata, importance, updatedAt, label] of rows as Array<AttrRow>) {
          const attrs: Attributes = {
            type: type ?? undefined,
            metadata: (metadata ?? undefined) as Attributes["metadata"],
            importance: importance ?? undefined,
            updatedAt: updatedAt ?? undefined,
            label,
          }
          index.attrs.set(id, attrs)
          if (label >= 0) index.labelToId[label] = id
        }
      } else {
        for (const [from, list] of rows as Array<EdgeRow>) {
          index.graph.setOutEdges(
            from,
            list.map(([to, relation, weight]) => ({ to, relation, weight })),
          )
        }
      }
      yield* slice.yieldIfDue
    }
    index.rebuildPostings()
    index.freeLabels = [...header.freeLabels]
    index.nextLabel = header.nextLabel
    index.liveVectors = header.liveVectors
    let live = 0
    for (const a of index.attrs.values()) if (a.label >= 0) live++
    if (live !== header.liveVectors) return yield* unusable(tenant, "live vector count disagrees with the attributes")

    const hnswFile = files.get("hnsw")
    const vectorsFile = files.get("vectors")
    if (header.dimension !== null) {
      if (hnswFile === undefined || vectorsFile === undefined) return yield* unusable(tenant, "vector files missing")
      const d = header.dimension
      const n = header.nextLabel
      if (vectorsFile.bytes !== n * d * 4 + n * 4) return yield* unusable(tenant, "vector mirror has the wrong size")
      const raw = yield* io(tenant, "read vectors", () => FsP.readFile(Path.join(dir, vectorsFile.name)))
      const hnsw = NativeHnsw.make(manifest.metric, d)
      yield* io(tenant, "read hnsw", () => hnsw.readIndex(Path.join(dir, hnswFile.name), false))
      if (hnsw.getCurrentCount() !== n || hnsw.getMaxElements() < n || hnsw.getNumDimensions() !== d) {
        return yield* unusable(tenant, "hnsw file disagrees with the state")
      }
      const capacity = hnsw.getMaxElements()
      index.hnsw = hnsw
      index.capacity = capacity
      index.vectors = new Float32Array(capacity * d)
      index.vectors.set(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + n * d * 4)))
      index.norms = new Float32Array(capacity)
      index.norms.set(new Float32Array(raw.buffer.slice(raw.byteOffset + n * d * 4, raw.byteOffset + n * d * 4 + n * 4)))
    } else if (header.liveVectors !== 0 || header.nextLabel !== 0) {
      return yield* unusable(tenant, "vectors without a dimension")
    }
    index.rebuildScoring()
    return { index, seq: manifest.seq }
  })

/** Removes a tenant's snapshot (after it was found unusable, so it is not retried). */
export const remove = (root: string, tenant: string): Effect.Effect<void> =>
  Effect.promise(() => FsP.rm(tenantDir(root, tenant), { recursive: true, force: true })).pipe(Effect.ignore)

export { SnapshotUnusable as Unusable } from "./Errors.js"
