/**
 * The checks the hand-written wire-form decoders (Entity.ts, Query.ts) share:
 * each states a schema's rule in plain code, so the fast paths accept exactly
 * what the schemas accept (their tests compare both on generated input). Not
 * exported from the package.
 */

/** A plain object (what JSON.parse makes), not a class instance or array. */
export const isPlainObject = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return false
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/** What `new C(props, true)` makes of `props` for a Schema class whose defaults `props` already holds. */
export const instanceOf = <C>(klass: { readonly prototype: C }, props: object): C =>
  Object.assign(Object.create(klass.prototype as object) as object, props) as C

export const isFiniteNumber = (u: unknown): u is number => typeof u === "number" && Number.isFinite(u)

/** VectorEmbedding's rule: 1..maxDimension finite numbers. */
export const isVectorValue = (u: unknown, maxDimension: number): u is ReadonlyArray<number> => {
  if (!Array.isArray(u) || u.length === 0 || u.length > maxDimension) return false
  for (let i = 0; i < u.length; i++) if (!isFiniteNumber(u[i])) return false
  return true
}

/** At most `max` UTF-8 bytes (a string of n UTF-16 units has at most 3n: short ones skip the count). */
export const utf8AtMost = (s: string, max: number): boolean => s.length * 3 <= max || Buffer.byteLength(s, "utf8") <= max
