#!/usr/bin/env node
// `npm run bench -- NAME [args]` runs scripts/bench/NAME.ts with tsx.
// Benchmarks are scripts, not tests: each prints its figures beside a baseline
// measured in the same run.
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const [name, ...args] = process.argv.slice(2)
const available = readdirSync(here)
  .filter((f) => f.endsWith(".ts") && !f.startsWith("_"))
  .map((f) => f.slice(0, -3))
if (name === undefined || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join("|")}> [options]`)
  process.exit(2)
}
const tsx = join(here, "..", "..", "node_modules", ".bin", "tsx")
if (!existsSync(tsx)) {
  console.error("tsx is missing: run npm ci first")
  process.exit(2)
}
const result = spawnSync(tsx, [join(here, `${name}.ts`), ...args], { stdio: "inherit" })
process.exit(result.status ?? 1)
