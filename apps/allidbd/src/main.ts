#!/usr/bin/env node
/**
 * `node apps/allidbd [flags]` starts a node; `node apps/allidbd keys create
 * --tenant T` mints an API key. A bad setting prints one line and exits 2.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Config from "./Config.js"
import * as Server from "./Server.js"

const fatal = (message: string, code: number): never => {
  process.stderr.write(`allidbd: ${message}\n`)
  process.exit(code)
}

const argv = process.argv.slice(2)

if (argv.some((a) => /^--?(help|h)$/.test(a))) {
  process.stdout.write(`${Config.helpText()}\n`)
  process.exit(0)
}

const loaded = Config.load(argv, process.env)
if (Either.isLeft(loaded)) fatal(loaded.left.message, 2)
const config = Either.getOrThrow(loaded)

NodeRuntime.runMain(Server.run(config), {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) return fatal(String((failure.value as { message?: unknown }).message ?? failure.value), 2)
    process.stderr.write(`allidbd: unexpected failure: ${Cause.pretty(exit.cause)}\n`)
    onExit(1)
  },
})
