/**
 * Test harness: starts the real built `allidbd` (apps/allidbd/dist/main.js)
 * as a child process on free ports with a temporary data dir, reads the
 * addresses from its "listening" log line, and always cleans up (kill +
 * rm -rf) when the scope closes. Shared by every package's server tests.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

export interface StartOptions {
  readonly args?: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** Reuse a data dir (restart tests); by default a fresh temporary one. */
  readonly dataDir?: string
  /** Wait for /ready (default) or only for the listening line. */
  readonly waitReady?: boolean
}

export interface Allidbd {
  readonly process: ChildProcess
  readonly dataDir: string
  readonly httpUrl: string
  /** "host:port" of the gRPC listener, when the log line names one. */
  readonly grpcAddress: string | undefined
  /** Every stdout line so far (JSON log lines). */
  readonly lines: () => ReadonlyArray<string>
  readonly stderr: () => string
  /** Sends a signal and waits for the exit code. */
  readonly stop: (signal?: NodeJS.Signals) => Effect.Effect<number | null>
}

export const makeTempDir = (prefix = "allidb-test-"): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

const waitExit = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once("exit", (code) => resolve(code)))

/** Runs allidbd to completion (for bad-setting tests): exit code, stdout, stderr. */
export const runToExit = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 15_000,
): Effect.Effect<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }> =>
  Effect.promise(
    () =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [MAIN, ...args], {
          env: { ...process.env, ...env },
          stdio: ["ignore", "pipe", "pipe"],
        })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d: Buffer) => {
          stdout += d.toString()
        })
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString()
        })
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
        child.on("exit", (code) => {
          clearTimeout(timer)
          resolve({ code, stdout, stderr })
        })
      }),
  )

export const start = (options: StartOptions = {}): Effect.Effect<Allidbd, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startPromise(options),
      catch: (e) => (e instanceof Error ? e : new Error(String(e))),
    }),
    (node) =>
      Effect.promise(async () => {
        if (node.process.exitCode === null && node.process.signalCode === null) {
          node.process.kill("SIGKILL")
          await waitExit(node.process)
        }
        if (options.dataDir === undefined) fs.rmSync(node.dataDir, { recursive: true, force: true })
      }),
  )

const startPromise = (options: StartOptions): Promise<Allidbd> => {
  const dataDir = options.dataDir ?? makeTempDir()
  const args = [
    "-http-addr=127.0.0.1:0",
    "-grpc-addr=127.0.0.1:0",
    `-data-dir=${dataDir}`,
    "-log-level=DEBUG",
    ...(options.args ?? []),
  ]
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  })
  const lines: Array<string> = []
  let stderr = ""
  let partial = ""
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString()
  })
  return new Promise<Allidbd>((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => fail(new Error("allidbd did not start within 30 s")), 30_000)
    const fail = (e: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(new Error(`${e.message}\nstderr: ${stderr}\nstdout: ${lines.join("\n")}`))
    }
    child.once("exit", (code) => fail(new Error(`allidbd exited early with code ${code}`)))
    child.stdout!.on("data", (d: Buffer) => {
      partial += d.toString()
      const parts = partial.split("\n")
      partial = parts.pop() ?? ""
      for (const line of parts) {
        lines.push(line)
        if (settled) continue
        let record: { message?: string; http?: string; grpc?: string }
        try {
          record = JSON.parse(line)
        } catch {
          continue
        }
        if (record.message === "listening" && record.http !== undefined) {
          const scheme = args.some((a) => /^--?tls(=true)?$/.test(a)) ? "https" : "http"
          const node: Allidbd = {
            process: child,
            dataDir,
            httpUrl: `${scheme}://${record.http}`,
            grpcAddress: record.grpc,
            lines: () => lines,
            stderr: () => stderr,
            stop: (signal = "SIGTERM") =>
              Effect.promise(() => {
                child.kill(signal)
                return waitExit(child)
              }),
          }
          if (options.waitReady === false) {
            settled = true
            clearTimeout(timer)
            resolve(node)
          } else {
            waitReady(node).then(
              () => {
                settled = true
                clearTimeout(timer)
                resolve(node)
              },
              (e: Error) => fail(e),
            )
          }
        }
      }
    })
  })
}

const waitReady = async (node: Allidbd): Promise<void> => {
  for (;;) {
    if (node.process.exitCode !== null) throw new Error("allidbd exited while starting")
    try {
      const res = await fetch(`${node.httpUrl}/ready`)
      if (res.status === 200) return
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A port that was free a moment ago (for tests that must name the port up front). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/** Polls a URL until it answers 200 (30 s at most). */
export const waitHttp = async (url: string): Promise<void> => {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).status === 200) return
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${url} did not answer 200 within 30 s`)
}
