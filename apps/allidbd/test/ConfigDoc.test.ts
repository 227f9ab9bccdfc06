import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { updateDocument } from "../src/ConfigDoc.js"

describe("docs/CONFIGURATION.md", () => {
  it("lists exactly the settings the server parses (run `npm run docs:config` after changing them)", () => {
    const doc = fs.readFileSync(new URL("../../../docs/CONFIGURATION.md", import.meta.url), "utf8")
    assert.strictEqual(doc, updateDocument(doc))
  })
})
