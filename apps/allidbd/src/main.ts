#!/usr/bin/env node
/**
 * `node apps/allidbd [flags]` starts a node; `node apps/allidbd keys create
 * --tenant T` mints an API key. A bad setting prints one line and exits 2.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
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

const teardown = <E, A>(exit: Exit.Exit<E, A>, onExit: (code: number) => void): void => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) {
    onExit(0)
    return
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof Server.StartupError) {
    fatal(failure.value.message, failure.value.exitCode)
  }
  process.stderr.write(`allidbd: stopped: ${Cause.squash(exit.cause)}\n`)
  onExit(1)
}

if (argv[0] === "keys") {
  // allidbd keys create --tenant T [-api-keys-file F]
  const rest = argv.slice(1)
  if (rest[0] !== "create") fatal("usage: allidbd keys create --tenant T [-api-keys-file FILE]", 2)
  const tenantAt = rest.findIndex((a) => /^--?tenant(=|$)/.test(a))
  const tenantArg = tenantAt < 0 ? undefined : rest[tenantAt]!.includes("=") ? rest[tenantAt]!.split("=")[1] : rest[tenantAt + 1]
  if (tenantArg === undefined || tenantArg === "") fatal("keys create: --tenant is required", 2)
  const others = rest.filter((_, i) => i !== 0 && i !== tenantAt && !(i === tenantAt + 1 && !rest[tenantAt]!.includes("=")))
  const loaded = Config.load(others, process.env)
  if (Either.isLeft(loaded)) fatal(loaded.left.message, 2)
  const config = Either.getOrThrow(loaded)
  const file = config.apiKeysFile ?? Server.defaultKeysFile(config)
  NodeRuntime.runMain(
    Effect.flatMap(Server.createKey(file, tenantArg!), (key) =>
      Effect.sync(() => {
        process.stdout.write(`${key}\n`)
        process.stderr.write(
          `allidbd: created a key for tenant ${JSON.stringify(tenantArg)}; only its hash is stored in ${file}. It is shown once.\n`,
        )
      }),
    ),
    { disableErrorReporting: true, disablePrettyLogger: true, teardown },
  )
} else {
  const loaded = Config.load(argv, process.env)
  if (Either.isLeft(loaded)) fatal(loaded.left.message, 2)
  NodeRuntime.runMain(Server.run(Either.getOrThrow(loaded)), {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown,
  })
}
