/**
 * Query filters (core QueryFilter), compiled once per query into a predicate
 * over an entity's indexed attributes, plus the posting keys that let the
 * executor estimate how many vectors can match without scanning them all.
 * Pure: no effects, no index access.
 */
import type { Metadata, MetadataCondition, MetadataValue, QueryFilter } from "@allidb/core"

/** What a filter can look at: the attributes the index keeps per entity. */
export interface Filterable {
  readonly type?: string | undefined
  readonly metadata?: Metadata | undefined
}

export interface CompiledFilter {
  readonly matches: (attributes: Filterable) => boolean
  /**
   * Each group is a union of posting keys that every match must hit (one
   * group per indexable condition: type, `eq`, `in`, bare value). A match is
   * in the intersection of the groups, so the smallest group bounds the
   * candidates. Empty when only ranges are used.
   */
  readonly postingGroups: ReadonlyArray<ReadonlyArray<string>>
}

export const typeKey = (type: string): string => `t\u0000${type}`

export const metadataKey = (key: string, value: MetadataValue): string => `m\u0000${key}\u0000${typeof value}\u0000${String(value)}`

/** Posting keys of one entity: its type and each metadata pair. */
export const postingKeys = (attributes: Filterable): Array<string> => {
  const keys: Array<string> = []
  if (attributes.type !== undefined) keys.push(typeKey(attributes.type))
  if (attributes.metadata !== undefined) {
    for (const key of Object.keys(attributes.metadata)) keys.push(metadataKey(key, attributes.metadata[key]!))
  }
  return keys
}

type Condition = (value: MetadataValue | undefined) => boolean

const isObject = (c: MetadataCondition): c is Exclude<MetadataCondition, MetadataValue> =>
  typeof c === "object" && c !== null

const compileCondition = (key: string, condition: MetadataCondition): [Condition, ReadonlyArray<string> | undefined] => {
  if (!isObject(condition)) return [(v) => v === condition, [metadataKey(key, condition)]]
  if ("eq" in condition) {
    const eq = condition.eq
    return [(v) => v === eq, [metadataKey(key, eq)]]
  }
  if ("in" in condition) {
    const values = condition.in
    const set = new Set<MetadataValue>(values)
    return [(v) => v !== undefined && set.has(v), values.map((v) => metadataKey(key, v))]
  }
  const { gt, gte, lt, lte } = condition
  // A range only ever matches numbers: "10" is not greater than 5.
  return [
    (v) =>
      typeof v === "number" &&
      (gt === undefined || v > gt) &&
      (gte === undefined || v >= gte) &&
      (lt === undefined || v < lt) &&
      (lte === undefined || v <= lte),
    undefined,
  ]
}

export const compile = (filter: QueryFilter | undefined): CompiledFilter | undefined => {
  if (filter === undefined) return undefined
  const checks: Array<(a: Filterable) => boolean> = []
  const groups: Array<ReadonlyArray<string>> = []
  if (filter.type !== undefined) {
    const types = typeof filter.type === "string" ? [filter.type] : filter.type
    const set = new Set(types)
    checks.push((a) => a.type !== undefined && set.has(a.type))
    groups.push(types.map(typeKey))
  }
  if (filter.metadata !== undefined) {
    for (const key of Object.keys(filter.metadata)) {
      const [check, group] = compileCondition(key, filter.metadata[key]!)
      checks.push((a) => check(a.metadata === undefined || !Object.hasOwn(a.metadata, key) ? undefined : a.metadata[key]))
      if (group !== undefined) groups.push(group)
    }
  }
  if (checks.length === 0) return undefined
  return {
    matches: (a) => {
      for (const check of checks) if (!check(a)) return false
      return true
    },
    postingGroups: groups,
  }
}
