import { assert, describe, it } from "@effect/vitest"
import * as Bloom from "../src/Bloom.js"
import * as Row from "../src/Row.js"

describe("Bloom", () => {
  it("never misses an inserted key and keeps false positives near the budget", () => {
    const n = 20_000
    const inserted = Array.from({ length: n }, (_, i) => Row.makeKey("tenant", `id-${i}`))
    const filter = Bloom.build(Uint32Array.from(inserted, Bloom.hashKey), 10)
    for (const key of inserted) assert.isTrue(Bloom.mayContain(filter, Bloom.hashKey(key)))
    let falsePositives = 0
    const probes = 50_000
    for (let i = 0; i < probes; i++) {
      if (Bloom.mayContain(filter, Bloom.hashKey(Row.makeKey("tenant", `other-${i}`)))) falsePositives++
    }
    const rate = falsePositives / probes
    console.log(`[Bloom] 10 bits/key: false-positive rate ${(rate * 100).toFixed(2)}% over ${probes} absent keys`)
    // theory for 10 bits/key, k=7: ≈0.82%
    assert.isBelow(rate, 0.02)
    assert.isAbove(rate, 0)

    const loose = Bloom.build(Uint32Array.from(inserted, Bloom.hashKey), 4)
    let looseFp = 0
    for (let i = 0; i < probes; i++) {
      if (Bloom.mayContain(loose, Bloom.hashKey(Row.makeKey("tenant", `other-${i}`)))) looseFp++
    }
    assert.isAbove(looseFp / probes, rate)
  })

  it("handles an empty set and refuses nothing when malformed", () => {
    const empty = Bloom.build([], 10)
    assert.isFalse(Bloom.mayContain(empty, Bloom.hashKey("x")))
    assert.isTrue(Bloom.mayContain(new Uint8Array(0), 1))
    assert.isTrue(Bloom.mayContain(Uint8Array.from([0, 0, 99]), 1))
  })

  it("hash is stable: filters on disk depend on it (golden values)", () => {
    assert.deepStrictEqual(["", "a", Row.makeKey("t", "id")].map(Bloom.hashKey), [3954623016, 3441918203, 788644436])
  })
})
