/**
 * The facade the rest of the server calls: it composes Wal, Memtable,
 * SSTableStore, Compactor and TenantGuard. A write is acknowledged once its
 * WAL batch is durable and it is in the memtable; each acknowledged batch gets
 * a local, strictly increasing commit sequence number (`seq`) that survives
 * restarts and is published to subscribers (the index) in order.
 *
 * Semantics:
 * - PutEntity replaces the whole entity: a row tombstone at the write's
 *   timestamp shadows every older cell, and the new cells carry that timestamp.
 *   `createdAt` is kept from the existing row unless the entity gives one.
 * - PutEdge / DeleteEdge touch one edge cell, leaving the rest of the row.
 * - DeleteEntity writes a row tombstone.
 * - Every key names its tenant; TenantGuard checks it against the caller's.
 *
 * CONTRACT (used by packages/index and packages/cluster): keep these
 * signatures; add to them only.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type {
  Corruption,
  Entity,
  EntityId,
  GraphEdge,
  Relation,
  StorageFailure,
  TenantId,
  TenantViolation,
  Unavailable,
} from "@allidb/core"

export type Mutation =
  | { readonly _tag: "PutEntity"; readonly tenant: TenantId; readonly entity: Entity }
  | { readonly _tag: "DeleteEntity"; readonly tenant: TenantId; readonly id: EntityId }
  | { readonly _tag: "PutEdge"; readonly tenant: TenantId; readonly from: EntityId; readonly edge: GraphEdge }
  | {
      readonly _tag: "DeleteEdge"
      readonly tenant: TenantId
      readonly from: EntityId
      readonly to: EntityId
      readonly relation: Relation
    }

/** Published after a batch is durable and visible to reads. */
export interface CommitEvent {
  readonly seq: number
  readonly tenant: TenantId
  /** Ids of the rows the batch touched (the index re-reads them). */
  readonly ids: ReadonlyArray<EntityId>
}

export interface WriteOptions {
  /** Wait for fdatasync before acknowledging (default: the engine's sync mode). */
  readonly sync?: boolean
}

export interface ScanOptions {
  /** Inclusive lower bound on entity id. */
  readonly start?: string
  /** Exclusive upper bound on entity id. */
  readonly end?: string
  readonly limit: number
  /** Opaque token from a previous page; overrides `start`. */
  readonly pageToken?: string
}

export interface ScanResult {
  readonly entities: ReadonlyArray<Entity>
  readonly nextPageToken?: string
}

/** A row as the index sees it during catch-up: `entity` is undefined when deleted. */
export interface ChangedRow {
  readonly id: EntityId
  readonly seq: number
  readonly entity: Entity | undefined
}

export type ReadError = StorageFailure | Corruption | TenantViolation
export type WriteError = StorageFailure | TenantViolation | Unavailable

export interface StorageEngineShape {
  /** Applies the mutations as one durable batch; returns its commit sequence number. */
  readonly write: (
    caller: TenantId,
    mutations: ReadonlyArray<Mutation>,
    options?: WriteOptions,
  ) => Effect.Effect<{ readonly seq: number }, WriteError>
  readonly get: (caller: TenantId, tenant: TenantId, id: EntityId) => Effect.Effect<Entity | undefined, ReadError>
  readonly getMany: (
    caller: TenantId,
    tenant: TenantId,
    ids: ReadonlyArray<EntityId>,
  ) => Effect.Effect<ReadonlyArray<Entity | undefined>, ReadError>
  /** Live entities of one tenant in id order, paged. */
  readonly scan: (caller: TenantId, tenant: TenantId, options: ScanOptions) => Effect.Effect<ScanResult, ReadError>
  /** Tenants that have any rows. */
  readonly tenants: Effect.Effect<ReadonlyArray<TenantId>, ReadError>
  /**
   * Rows of a tenant whose latest change has seq > `afterSeq`, deletions
   * included while their tombstones are kept (see the compaction grace
   * period). `afterSeq = 0` streams every row: a full rebuild.
   */
  readonly changedSince: (tenant: TenantId, afterSeq: number) => Stream.Stream<ChangedRow, ReadError>
  /** The newest acknowledged commit sequence number. */
  readonly lastSeq: Effect.Effect<number>
  /** A queue of every commit from now on, in seq order; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<CommitEvent>, never, Scope.Scope>
  /**
   * Called when tables enter the live set from outside the write path
   * (import, repair): a queue of tenants whose data changed.
   */
  readonly tableChanges: Effect.Effect<Queue.Dequeue<{ readonly tenants: ReadonlyArray<TenantId> }>, never, Scope.Scope>
}

export class StorageEngine extends Context.Tag("@allidb/storage/StorageEngine")<StorageEngine, StorageEngineShape>() {}
