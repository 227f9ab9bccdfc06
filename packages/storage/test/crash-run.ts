/**
 * Command-line driver of the kill -9 crash harness (scripts/crash-storage).
 * Usage: crash-run.ts [rounds=200] [seed=random]
 */
import { runCrashRounds } from "./crashHarness.js"

const rounds = Number(process.argv[2] ?? 200)
const seed = Number(process.argv[3] ?? Date.now() % 1_000_000)
const started = Date.now()
console.log(`crash-storage: ${rounds} rounds, seed ${seed} (replay: scripts/crash-storage ${rounds} ${seed})`)
runCrashRounds({ rounds, seed, log: (line) => console.log(line) }).then(
  (summary) => {
    console.log(
      `crash-storage: PASS ${summary.rounds} rounds in ${((Date.now() - started) / 1000).toFixed(1)} s — ` +
        `${summary.acknowledged} acknowledged writes, ${summary.inflightAtKill} in flight at a kill, ` +
        `${summary.liveKeys} live keys, ${summary.tableFiles} tables, ${summary.walSegments} WAL segments at the end`,
    )
  },
  (error) => {
    console.error(`crash-storage: FAIL (seed ${seed}): ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
