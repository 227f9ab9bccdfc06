/**
 * Embedding AlliDB in another Effect program: provide the node's Layer and
 * call the Coordinator directly — no listeners, no network. Run it with
 * `npx tsx examples/embedded.ts [data-dir]`; the tests run `program` too.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Coordinator } from "@allidb/cluster"
import { Entity, QueryRequest, tenantId } from "@allidb/core"
import { AlliDb } from "allidbd"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const tenant = tenantId("docs")

const entities = Schema.decodeUnknownSync(Schema.Array(Entity))([
  {
    id: "paper:attention",
    type: "paper",
    vector: [0.9, 0.1, 0.0],
    metadata: { year: 2017 },
    importance: 0.9,
    chunks: [{ id: "abstract", text: "The dominant sequence transduction models…" }],
    edges: [{ to: "author:vaswani", relation: "written_by", weight: 1 }],
  },
  { id: "paper:bert", type: "paper", vector: [0.8, 0.3, 0.1], metadata: { year: 2018 }, importance: 0.8 },
  { id: "author:vaswani", type: "author", metadata: { name: "Ashish Vaswani" } },
  { id: "paper:resnet", type: "paper", vector: [0.0, 0.2, 0.9], metadata: { year: 2015 } },
])

/** Writes four entities, then asks for the nearest papers and their authors. */
export const program = Effect.gen(function* () {
  const db = yield* Coordinator.Coordinator
  const written = yield* db.upsert(tenant, entities)
  const results = yield* db.query(
    tenant,
    Schema.decodeUnknownSync(QueryRequest)({
      vector: [1, 0.1, 0],
      k: 4,
      expand: { hops: 1, factor: 2, relations: ["written_by"] },
      explain: true,
    }),
  )
  return { written: written.ids, results: results.map((r) => ({ id: r.id, score: r.score, path: r.explain?.path.length ?? 0 })) }
})

/** The node as one Layer, on a data dir of your choice. */
export const nodeLayer = (dataDir: string) => AlliDb.layer(AlliDb.config({ dataDir, syncMode: "always" }))

if (process.argv[1] !== undefined && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const dataDir = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), "allidb-embedded-"))
  const result = await Effect.runPromise(program.pipe(Effect.provide(nodeLayer(dataDir))))
  console.log(JSON.stringify(result, null, 2))
}
