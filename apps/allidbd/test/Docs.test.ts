/**
 * The examples in README.md and docs/CONFIGURATION.md, executed: the start
 * command from the README answers /health, and every `$ node apps/allidbd …`
 * transcript in CONFIGURATION.md prints exactly what the document shows.
 */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Allidbd from "./support/Allidbd.js"

const doc = (name: string) => fs.readFileSync(new URL(`../../../${name}`, import.meta.url), "utf8")

/** The words of a shell command line (no quoting is used in the documents). */
const words = (line: string) => line.trim().split(/\s+/)

describe("README.md", () => {
  it.scopedLive("the documented start command serves /health", () =>
    Effect.gen(function* () {
      const line = doc("README.md")
        .split("\n")
        .find((l) => l.startsWith("node apps/allidbd -"))
      assert.isDefined(line, "README shows a `node apps/allidbd …` command")
      // Same flags, but a temporary data dir so the test leaves nothing behind.
      const args = words(line!)
        .slice(2)
        .filter((a) => !a.startsWith("-data-dir="))
      const node = yield* Allidbd.start({ args })
      const health = yield* Effect.promise(() => fetch(`${node.httpUrl}/health`).then((r) => r.json()))
      assert.deepInclude(health, { healthy: true, status: "SERVING" })
      assert.strictEqual(yield* node.stop("SIGTERM"), 0)
    }))

  it("names the two commands of the contract", () => {
    const readme = doc("README.md")
    assert.include(readme, "npm ci && npm start")
    assert.include(readme, "npm test")
    assert.include(fs.readFileSync(new URL("../../../.ci/run", import.meta.url), "utf8"), "npm test")
  })
})

describe("docs/CONFIGURATION.md", () => {
  it.live("every `$ node apps/allidbd …` transcript prints what the document shows", () =>
    Effect.gen(function* () {
      const lines = doc("docs/CONFIGURATION.md").split("\n")
      let checked = 0
      for (const [i, line] of lines.entries()) {
        if (!line.startsWith("$ node apps/allidbd")) continue
        const expected = lines[i + 1]!
        const result = yield* Allidbd.runToExit(words(line).slice(3))
        assert.strictEqual(result.code, 2)
        assert.strictEqual(result.stderr.trim(), expected.trim())
        checked++
      }
      assert.isAbove(checked, 0)
    }))
})
