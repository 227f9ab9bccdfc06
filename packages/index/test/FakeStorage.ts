/**
 * An in-memory StorageEngine with the contract's semantics, for index tests:
 * one seq per write batch, PutEntity replaces the row, edge writes touch one
 * edge, CommitEvents are published after the write is visible. `importRows`
 * changes rows behind the write path (no CommitEvent) and announces the
 * tenants on `tableChanges`, like an import or repair.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import { type Entity, Entity as EntityClass, type EntityId, GraphEdge, type TenantId } from "@allidb/core"
import { StorageEngine } from "@allidb/storage"

interface Row {
  readonly entity: Entity | undefined
  readonly seq: number
}

export interface FakeStorage extends StorageEngine.StorageEngineShape {
  readonly importRows: (tenant: TenantId, rows: ReadonlyArray<Entity | { readonly deleted: EntityId }>) => Effect.Effect<void>
  /** Rows of every tenant; pass the same instance to a second layer to simulate a restart. */
  readonly data: Map<string, Map<string, Row>>
}

export interface FakeState {
  readonly data: Map<string, Map<string, Row>>
  seq: number
}

export const makeState = (): FakeState => ({ data: new Map(), seq: 0 })

export const make = (state: FakeState = makeState()) =>
  Effect.gen(function* () {
    const commits = yield* PubSub.unbounded<StorageEngine.CommitEvent>()
    const tables = yield* PubSub.unbounded<{ readonly tenants: ReadonlyArray<TenantId> }>()
    const rowsOf = (tenant: string) => {
      let rows = state.data.get(tenant)
      if (rows === undefined) {
        rows = new Map()
        state.data.set(tenant, rows)
      }
      return rows
    }
    const fake: FakeStorage = {
      data: state.data,
      write: (_caller, mutations) =>
        Effect.gen(function* () {
          const seq = ++state.seq
          const touched = new Map<string, Array<EntityId>>()
          for (const m of mutations) {
            const rows = rowsOf(m.tenant)
            const ids = touched.get(m.tenant) ?? []
            touched.set(m.tenant, ids)
            switch (m._tag) {
              case "PutEntity":
                rows.set(m.entity.id, { entity: m.entity, seq })
                ids.push(m.entity.id)
                break
              case "DeleteEntity":
                rows.set(m.id, { entity: undefined, seq })
                ids.push(m.id)
                break
              case "PutEdge": {
                const current = rows.get(m.from)?.entity ?? new EntityClass({ id: m.from })
                const edges = (current.edges ?? []).filter(
                  (e) => !(e.to === m.edge.to && e.relation === m.edge.relation),
                )
                rows.set(m.from, { entity: new EntityClass({ ...current, edges: [...edges, m.edge] }), seq })
                ids.push(m.from)
                break
              }
              case "DeleteEdge": {
                const current = rows.get(m.from)?.entity
                if (current !== undefined) {
                  const edges = (current.edges ?? []).filter((e) => !(e.to === m.to && e.relation === m.relation))
                  rows.set(m.from, { entity: new EntityClass({ ...current, edges }), seq })
                }
                ids.push(m.from)
                break
              }
            }
          }
          for (const [tenant, ids] of touched) {
            yield* PubSub.publish(commits, { seq, tenant: tenant as TenantId, ids })
          }
          return { seq }
        }),
      get: (_caller, tenant, id) => Effect.sync(() => state.data.get(tenant)?.get(id)?.entity),
      getMany: (_caller, tenant, ids) => Effect.sync(() => ids.map((id) => state.data.get(tenant)?.get(id)?.entity)),
      scan: (_caller, tenant, options) =>
        Effect.sync(() => {
          const all = [...(state.data.get(tenant)?.entries() ?? [])]
            .filter(([id, r]) => r.entity !== undefined && (options.start === undefined || id >= options.start))
            .sort(([a], [b]) => (a < b ? -1 : 1))
          return { entities: all.slice(0, options.limit).map(([, r]) => r.entity!) }
        }),
      tenants: Effect.sync(() => [...state.data.keys()] as Array<TenantId>),
      changedSince: (tenant, afterSeq) =>
        Stream.suspend(() => {
          const rows = [...(state.data.get(tenant)?.entries() ?? [])]
            .filter(([, r]) => afterSeq === 0 || r.seq > afterSeq)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([id, r]) => ({ id: id as EntityId, seq: r.seq, entity: r.entity }))
          // Several chunks, like a real paged scan.
          return Stream.fromChunks(
            ...Array.from({ length: Math.ceil(rows.length / 500) }, (_, i) =>
              Chunk.fromIterable(rows.slice(i * 500, i * 500 + 500)),
            ),
          )
        }),
      lastSeq: Effect.sync(() => state.seq),
      subscribe: PubSub.subscribe(commits),
      tableChanges: PubSub.subscribe(tables),
      importRows: (tenant, rows) =>
        Effect.gen(function* () {
          const map = rowsOf(tenant)
          for (const row of rows) {
            if ("deleted" in row) map.delete(row.deleted)
            else map.set(row.id, { entity: row, seq: 0 })
          }
          yield* PubSub.publish(tables, { tenants: [tenant] })
        }),
    }
    return fake
  })

export const layer = (state?: FakeState): Layer.Layer<StorageEngine.StorageEngine> =>
  Layer.effect(StorageEngine.StorageEngine, make(state))

export const edge = (to: string, relation: string, weight = 1) =>
  new GraphEdge({ to: to as EntityId, relation: relation as GraphEdge["relation"], weight })
