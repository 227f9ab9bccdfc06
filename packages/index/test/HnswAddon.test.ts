import { assert, describe, it } from "@effect/vitest"
import hnswlib from "hnswlib-node"

// The native addon must be built by `npm ci` (allowScripts in package.json).
describe("hnswlib-node addon", () => {
  it("loads and answers a nearest-neighbour query", () => {
    const index = new hnswlib.HierarchicalNSW("l2", 2)
    index.initIndex(10)
    index.addPoint([0, 0], 0)
    index.addPoint([5, 5], 1)
    const result = index.searchKnn([4, 4], 1)
    assert.deepStrictEqual(result.neighbors, [1])
  })
})
