/**
 * Errors of the observability package. A TLS setting that cannot be used stops start-up:
 * the app prints `message` (one line naming the setting) and exits 2.
 */
import * as Schema from "effect/Schema"

/** A TLS file or setting that cannot be used. `setting` is the flag and its variable. */
export class TlsConfigError extends Schema.TaggedError<TlsConfigError>("@allidb/observability/TlsConfigError")(
  "TlsConfigError",
  { setting: Schema.String, reason: Schema.String },
) {
  override get message(): string {
    return `${this.setting}: ${this.reason}`
  }
}
