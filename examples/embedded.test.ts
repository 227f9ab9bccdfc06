import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { nodeLayer, program } from "./embedded.js"

describe("examples/embedded.ts", () => {
  it.live("embeds a node, writes, queries with expansion, and reads back after a restart", () =>
    Effect.gen(function* () {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "allidb-embedded-"))
      try {
        const first = yield* program.pipe(Effect.provide(nodeLayer(dataDir)))
        assert.deepStrictEqual(first.written.map(String), ["paper:attention", "paper:bert", "author:vaswani", "paper:resnet"])
        const ids = first.results.map((r) => String(r.id))
        assert.deepStrictEqual(ids.slice(0, 2), ["paper:attention", "paper:bert"], "nearest papers first")
        assert.include(ids, "author:vaswani", "the author (no vector) is reached by expansion")
        const author = first.results.find((r) => r.id === "author:vaswani")!
        assert.strictEqual(author.path, 1, "one hop from paper:attention")
        assert.isBelow(author.score, first.results[0]!.score, "expansion never outranks the direct match")
        // The same data dir again: storage and index come back with the data.
        const second = yield* program.pipe(Effect.provide(nodeLayer(dataDir)))
        assert.deepStrictEqual(second.results.map((r) => String(r.id)), ids)
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true })
      }
    }))
})
