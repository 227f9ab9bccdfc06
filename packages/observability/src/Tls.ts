/**
 * TLS material for every listener: loaded and validated once at start (any problem is a
 * TlsConfigError with one line naming the setting), handed out as Node https options and
 * @grpc/grpc-js server credentials, and reloaded on SIGHUP. A reload re-validates the files
 * first and keeps the old material if they are bad; servers get the new context through
 * `setSecureContext`, which applies to new handshakes only, so open connections live on.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import * as Grpc from "@grpc/grpc-js"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { TlsConfigError } from "./Errors.js"

export { TlsConfigError } from "./Errors.js"

/** `none`: no client certificate asked; `request`: asked, not required; `require`: mTLS. */
export type ClientAuth = "none" | "request" | "require"

export const clientAuthModes: ReadonlyArray<ClientAuth> = ["none", "request", "require"]

export interface Settings {
  readonly enabled: boolean
  readonly certFile: string
  readonly keyFile: string
  /** CA bundle that client certificates must chain to; required unless clientAuth is none. */
  readonly caFile?: string | undefined
  readonly clientAuth: ClientAuth
}

/** How each setting is named in errors: the flag and its environment variable. */
export const settingNames = {
  enabled: "tls (ALLIDB_ENABLE_TLS)",
  certFile: "tls-cert (ALLIDB_TLS_CERT)",
  keyFile: "tls-key (ALLIDB_TLS_KEY)",
  caFile: "tls-ca (ALLIDB_TLS_CA)",
  clientAuth: "tls-client-auth (ALLIDB_TLS_CLIENT_AUTH)",
} as const

/** Validated material, ready for a secure context. */
export interface Material {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer | undefined
  readonly subject: string
  readonly notBefore: Date
  readonly notAfter: Date
  readonly fingerprint256: string
}

/** The file contents `validate` checks; read by `load`. */
export interface Files {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer | undefined
}

const oneLine = (text: string): string => text.replace(/\s+/g, " ").trim()

const fail = (setting: keyof typeof settingNames, reason: string) =>
  Either.left(new TlsConfigError({ setting: settingNames[setting], reason: oneLine(reason) }))

const pemBlocks = (pem: string): Array<string> =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []

const parseCertificates = (
  pem: Buffer,
  setting: "certFile" | "caFile",
  path: string,
): Either.Either<Array<Crypto.X509Certificate>, TlsConfigError> => {
  const blocks = pemBlocks(pem.toString("utf8"))
  if (blocks.length === 0) return fail(setting, `${path} holds no PEM certificate`)
  const certificates: Array<Crypto.X509Certificate> = []
  for (const block of blocks) {
    try {
      certificates.push(new Crypto.X509Certificate(block))
    } catch (error) {
      return fail(setting, `${path} holds an unreadable certificate: ${String((error as Error).message)}`)
    }
  }
  return Either.right(certificates)
}

const iso = (date: Date): string => date.toISOString()

/**
 * Checks certificate, key and CA bundle against each other and against `now`: the key
 * must match the leaf certificate, every certificate must be inside its validity period,
 * every CA certificate must be a CA, and Node must accept the lot as a secure context.
 */
export const validate = (
  settings: Settings,
  files: Files,
  now: Date,
): Either.Either<Material, TlsConfigError> => {
  const certs = parseCertificates(files.cert, "certFile", settings.certFile)
  if (Either.isLeft(certs)) return Either.left(certs.left)
  const leaf = certs.right[0]
  let key: Crypto.KeyObject
  try {
    key = Crypto.createPrivateKey(files.key)
  } catch (error) {
    return fail(
      "keyFile",
      `${settings.keyFile} is not a usable PEM private key (encrypted keys are not supported): ${String((error as Error).message)}`,
    )
  }
  if (!leaf.checkPrivateKey(key)) {
    return fail("keyFile", `${settings.keyFile} does not match the certificate in ${settings.certFile}`)
  }
  const notBefore = new Date(leaf.validFrom)
  const notAfter = new Date(leaf.validTo)
  if (now < notBefore) return fail("certFile", `certificate in ${settings.certFile} is not valid before ${iso(notBefore)}`)
  if (now > notAfter) return fail("certFile", `certificate in ${settings.certFile} expired on ${iso(notAfter)}`)
  if (files.ca !== undefined) {
    const path = settings.caFile ?? ""
    const cas = parseCertificates(files.ca, "caFile", path)
    if (Either.isLeft(cas)) return Either.left(cas.left)
    for (const ca of cas.right) {
      if (!ca.ca) return fail("caFile", `${path}: "${oneLine(ca.subject)}" is not a CA certificate`)
      if (now > new Date(ca.validTo)) {
        return fail("caFile", `CA certificate "${oneLine(ca.subject)}" in ${path} expired on ${iso(new Date(ca.validTo))}`)
      }
      if (now < new Date(ca.validFrom)) {
        return fail(
          "caFile",
          `CA certificate "${oneLine(ca.subject)}" in ${path} is not valid before ${iso(new Date(ca.validFrom))}`,
        )
      }
    }
  }
  try {
    NodeTls.createSecureContext(contextOptions(files))
  } catch (error) {
    return fail("certFile", `cannot build a TLS context: ${String((error as Error).message)}`)
  }
  return Either.right({
    cert: files.cert,
    key: files.key,
    ca: files.ca,
    subject: oneLine(leaf.subject),
    notBefore,
    notAfter,
    fingerprint256: leaf.fingerprint256,
  })
}

const readSetting = (setting: "certFile" | "keyFile" | "caFile", path: string) =>
  Effect.tryPromise({
    try: () => Fs.readFile(path),
    catch: (error) =>
      new TlsConfigError({
        setting: settingNames[setting],
        reason: oneLine(`cannot read ${path}: ${String((error as Error).message)}`),
      }),
  })

/** Reads and validates the files named by enabled settings. */
export const load = (settings: Settings): Effect.Effect<Material, TlsConfigError> =>
  Effect.gen(function* () {
    if (settings.certFile.trim() === "") {
      return yield* new TlsConfigError({ setting: settingNames.certFile, reason: "required when TLS is enabled" })
    }
    if (settings.keyFile.trim() === "") {
      return yield* new TlsConfigError({ setting: settingNames.keyFile, reason: "required when TLS is enabled" })
    }
    if (!clientAuthModes.includes(settings.clientAuth)) {
      return yield* new TlsConfigError({
        setting: settingNames.clientAuth,
        reason: `must be one of ${clientAuthModes.join(", ")}, got ${JSON.stringify(settings.clientAuth)}`,
      })
    }
    const caFile = settings.caFile?.trim() === "" ? undefined : settings.caFile
    if (settings.clientAuth !== "none" && caFile === undefined) {
      return yield* new TlsConfigError({
        setting: settingNames.caFile,
        reason: `required when ${settingNames.clientAuth} is ${settings.clientAuth}`,
      })
    }
    const cert = yield* readSetting("certFile", settings.certFile)
    const key = yield* readSetting("keyFile", settings.keyFile)
    const ca = caFile === undefined ? undefined : yield* readSetting("caFile", caFile)
    const now = new Date(yield* Clock.currentTimeMillis)
    return yield* validate({ ...settings, caFile }, { cert, key, ca }, now)
  })

/** The secure-context part of the options (what `setSecureContext` accepts). */
export const contextOptions = (files: Files): NodeTls.SecureContextOptions =>
  files.ca === undefined ? { cert: files.cert, key: files.key } : { cert: files.cert, key: files.key, ca: files.ca }

/** Node https/tls server options for the material and client-auth mode. */
export const serverOptions = (material: Material, clientAuth: ClientAuth): Https.ServerOptions => ({
  ...contextOptions(material),
  minVersion: "TLSv1.2",
  requestCert: clientAuth !== "none",
  // Under `request` an unverified client still connects; the app can read socket.authorized.
  rejectUnauthorized: clientAuth === "require",
})

// ---------------------------------------------------------------------------------------------
// gRPC: a certificate provider we push reloads into.

/**
 * @grpc/grpc-js (1.10+) reloads server credentials through its experimental
 * CertificateProvider API: `createCertificateProviderServerCredentials` subscribes to the
 * provider and calls `setSecureContext` on its http2 servers on every update. (`createSsl`
 * has no reload.) The file watcher it ships polls on a timer; this provider is pushed to on
 * SIGHUP after validation instead.
 */
class PushedCertificateProvider implements Grpc.experimental.CertificateProvider {
  private readonly caListeners = new Set<Grpc.experimental.CaCertificateUpdateListener>()
  private readonly identityListeners = new Set<Grpc.experimental.IdentityCertificateUpdateListener>()
  constructor(private material: Material) {}
  update(material: Material): void {
    this.material = material
    for (const listener of this.caListeners) listener(this.caUpdate())
    for (const listener of this.identityListeners) listener(this.identityUpdate())
  }
  private caUpdate(): Grpc.experimental.CaCertificateUpdate | null {
    return this.material.ca === undefined ? null : { caCertificate: this.material.ca }
  }
  private identityUpdate(): Grpc.experimental.IdentityCertificateUpdate {
    return { certificate: this.material.cert, privateKey: this.material.key }
  }
  addCaCertificateListener(listener: Grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener)
    listener(this.caUpdate())
  }
  removeCaCertificateListener(listener: Grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener)
  }
  addIdentityCertificateListener(listener: Grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener)
    listener(this.identityUpdate())
  }
  removeIdentityCertificateListener(listener: Grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener)
  }
}

// ---------------------------------------------------------------------------------------------
// The service.

export const reloads = Metric.counter("allidb_tls_reloads_total", {
  description: "TLS material reloads (SIGHUP), by result",
  incremental: true,
})
export const certificateExpiry = Metric.gauge("allidb_tls_certificate_expiry_timestamp_seconds", {
  description: "Not-after time of the served TLS certificate, as a Unix timestamp",
})

export interface TlsShape {
  readonly enabled: boolean
  readonly clientAuth: ClientAuth
  /** The material currently served; none when TLS is off. */
  readonly current: Effect.Effect<Option.Option<Material>>
  /**
   * Makes the HTTP listener: an https.Server with the current material (tracked, so a
   * reload reaches it) when TLS is on, a plain http.Server otherwise. Shaped for
   * `NodeHttpServer.layer(tls.createHttpServer, { port })`.
   */
  readonly createHttpServer: () => Http.Server
  /** Node tls server options (for a raw tls/https listener); none when TLS is off. */
  readonly serverOptions: Effect.Effect<Option.Option<Https.ServerOptions>>
  /** Has a reload reach another TLS server (e.g. a node-to-node socket listener) until it closes. */
  readonly track: (server: NodeTls.Server) => Effect.Effect<void>
  /** gRPC server credentials: reloadable TLS (client cert required under `require`), or insecure. */
  readonly grpcCredentials: Grpc.ServerCredentials
  /** Re-reads and re-validates the files, then swaps them in; on error the old material stays. */
  readonly reload: Effect.Effect<Option.Option<Material>, TlsConfigError>
}

export class Tls extends Context.Tag("@allidb/observability/Tls")<Tls, TlsShape>() {}

const disabled = (): TlsShape => ({
  enabled: false,
  clientAuth: "none",
  current: Effect.succeed(Option.none()),
  createHttpServer: () => Http.createServer(),
  serverOptions: Effect.succeed(Option.none()),
  track: () => Effect.void,
  grpcCredentials: Grpc.ServerCredentials.createInsecure(),
  reload: Effect.succeed(Option.none()),
})

const observeExpiry = (material: Material) => Metric.set(certificateExpiry, material.notAfter.getTime() / 1000)

/**
 * Loads the material (failing with TlsConfigError) and, for the life of the scope, reloads
 * it whenever the process gets `signal` (default SIGHUP; null for none). The signal handler
 * is removed when the scope closes.
 */
export const make = (
  settings: Settings,
  options: { readonly signal?: NodeJS.Signals | null } = {},
): Effect.Effect<TlsShape, TlsConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const signal = options.signal === undefined ? "SIGHUP" : options.signal
    if (!settings.enabled) {
      const service = disabled()
      if (signal !== null) yield* onSignal(signal, Effect.logInfo(`${signal} received; TLS is off, nothing to reload`))
      return service
    }
    const initial = yield* load(settings)
    yield* observeExpiry(initial)
    // Plain state: read synchronously by createHttpServer (called by NodeHttpServer.layer's
    // thunk), written only by `reload`, which runs one at a time from the signal fiber.
    let latest = initial
    const servers = new Set<NodeTls.Server>()
    const provider = new PushedCertificateProvider(initial)
    // Argument order: the first provider is used for the server identity, the second for
    // the CA (grpc-js 1.14 passes them to the constructor in that order, whatever the
    // parameter names in its .d.ts say); passing the same provider for both is order-proof.
    const grpcCredentials = Grpc.experimental.createCertificateProviderServerCredentials(
      provider,
      initial.ca === undefined ? null : provider,
      settings.clientAuth === "require",
    )
    // grpc-js reads the credentials' context options when it binds, before it subscribes;
    // a watcher registered now makes the credentials subscribe to the provider (which
    // answers synchronously), so the options exist at bind time. Removed at scope close.
    const primer = () => {}
    yield* Effect.acquireRelease(
      Effect.sync(() => grpcCredentials._addWatcher(primer)),
      () => Effect.sync(() => grpcCredentials._removeWatcher(primer)),
    )

    const track = (server: NodeTls.Server) =>
      Effect.sync(() => {
        servers.add(server)
        server.once("close", () => servers.delete(server))
      })

    const createHttpServer = (): Http.Server => {
      const server = Https.createServer(serverOptions(latest, settings.clientAuth))
      servers.add(server)
      server.once("close", () => servers.delete(server))
      return server
    }

    const reload = Effect.gen(function* () {
      const next = yield* load(settings)
      latest = next
      for (const server of servers) server.setSecureContext(contextOptions(next))
      provider.update(next)
      yield* observeExpiry(next)
      return Option.some(next)
    }).pipe(
      Effect.tap((next) =>
        Effect.all([
          Metric.increment(Metric.tagged(reloads, "result", "ok")),
          Effect.logInfo("TLS material reloaded").pipe(
            Effect.annotateLogs(
              Option.match(next, {
                onNone: () => ({}),
                onSome: (m) => ({ subject: m.subject, not_after: iso(m.notAfter), fingerprint256: m.fingerprint256 }),
              }),
            ),
          ),
        ]),
      ),
      Effect.tapError((error) =>
        Effect.all([
          Metric.increment(Metric.tagged(reloads, "result", "error")),
          Effect.logError(`TLS reload failed, keeping the current certificates: ${error.message}`),
        ]),
      ),
      Effect.withSpan("Tls.reload"),
    )

    if (signal !== null) yield* onSignal(signal, Effect.ignore(reload))

    return {
      enabled: true,
      clientAuth: settings.clientAuth,
      current: Effect.sync(() => Option.some(latest)),
      createHttpServer,
      serverOptions: Effect.sync(() => Option.some(serverOptions(latest, settings.clientAuth))),
      track,
      grpcCredentials,
      reload,
    } satisfies TlsShape
  })

/**
 * Runs `action` once per delivery of `signal`, sequentially, in a fiber of the current
 * scope. The process handler only enqueues, so a burst of signals collapses into one run.
 */
const onSignal = (signal: NodeJS.Signals, action: Effect.Effect<void>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const deliveries = yield* Queue.sliding<void>(1)
    const handler = () => {
      Queue.unsafeOffer(deliveries, undefined)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on(signal, handler)),
      () => Effect.sync(() => process.off(signal, handler)),
    )
    yield* Queue.take(deliveries).pipe(Effect.zipRight(action), Effect.forever, Effect.forkScoped)
  })

/** The Tls service, reloading on SIGHUP while the layer is open. */
export const layer = (settings: Settings): Layer.Layer<Tls, TlsConfigError> => Layer.scoped(Tls, make(settings))

// ---------------------------------------------------------------------------------------------
// The client side: node-to-node calls and tests.

export interface ClientSettings {
  /** CA the server's certificate must chain to; Node's default roots when absent. */
  readonly caFile?: string | undefined
  /** Certificate and key to present (mTLS); both or neither. */
  readonly certFile?: string | undefined
  readonly keyFile?: string | undefined
}

export interface ClientMaterial {
  readonly ca: Buffer | undefined
  readonly cert: Buffer | undefined
  readonly key: Buffer | undefined
}

/** Reads client material, checking that a given key matches its certificate and both are valid now. */
export const loadClient = (settings: ClientSettings): Effect.Effect<ClientMaterial, TlsConfigError> =>
  Effect.gen(function* () {
    const ca = settings.caFile === undefined ? undefined : yield* readSetting("caFile", settings.caFile)
    if ((settings.certFile === undefined) !== (settings.keyFile === undefined)) {
      return yield* new TlsConfigError({
        setting: settings.certFile === undefined ? settingNames.certFile : settingNames.keyFile,
        reason: "a client certificate needs both the certificate and the key",
      })
    }
    if (settings.certFile === undefined || settings.keyFile === undefined) return { ca, cert: undefined, key: undefined }
    const cert = yield* readSetting("certFile", settings.certFile)
    const key = yield* readSetting("keyFile", settings.keyFile)
    const now = new Date(yield* Clock.currentTimeMillis)
    const checked = validate(
      { enabled: true, certFile: settings.certFile, keyFile: settings.keyFile, caFile: settings.caFile, clientAuth: "none" },
      { cert, key, ca },
      now,
    )
    if (Either.isLeft(checked)) return yield* checked.left
    return { ca, cert, key }
  })

/** Options for `https.request`, `tls.connect` or an https.Agent. */
export const clientConnectionOptions = (material: ClientMaterial): NodeTls.ConnectionOptions => ({
  ...(material.ca === undefined ? {} : { ca: material.ca }),
  ...(material.cert === undefined || material.key === undefined ? {} : { cert: material.cert, key: material.key }),
})

/** gRPC channel credentials for the material. */
export const grpcClientCredentials = (material: ClientMaterial): Grpc.ChannelCredentials =>
  Grpc.credentials.createSsl(material.ca ?? null, material.key ?? null, material.cert ?? null)

/** True when a TLS socket presented a certificate that chains to the configured CA. */
export const peerAuthorized = (socket: Net.Socket): boolean => socket instanceof NodeTls.TLSSocket && socket.authorized
