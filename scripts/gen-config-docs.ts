// Rewrites the settings table of docs/CONFIGURATION.md from apps/allidbd/src/Config.ts.
import * as fs from "node:fs"
import { updateDocument } from "../apps/allidbd/src/ConfigDoc.js"

const file = new URL("../docs/CONFIGURATION.md", import.meta.url)
fs.writeFileSync(file, updateDocument(fs.readFileSync(file, "utf8")))
console.log("docs/CONFIGURATION.md updated")
