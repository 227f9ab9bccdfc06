/**
 * Errors internal to the index. None leaves the process: a damaged snapshot
 * is logged and answered by a rebuild from storage.
 */
import * as Data from "effect/Data"

/** A snapshot that cannot be used (missing, damaged, inconsistent, or an I/O error while writing it). */
export class SnapshotUnusable extends Data.TaggedError("SnapshotUnusable")<{
  readonly tenant: string
  readonly reason: string
}> {
  override get message(): string {
    return `index snapshot of tenant ${JSON.stringify(this.tenant)} unusable: ${this.reason}`
  }
}
