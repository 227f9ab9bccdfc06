/**
 * One vitest project per package (`npx vitest --project storage`). Workspace
 * packages resolve to their TypeScript sources, so tests never run stale
 * builds; the server tests spawn the built `apps/allidbd/dist` instead.
 */
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const root = fileURLToPath(new URL(".", import.meta.url))
const packages = ["core", "observability", "storage", "index", "cluster", "api", "client"]

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@allidb\/([a-z-]+)$/, replacement: `${root}packages/$1/src/index.ts` },
      { find: /^allidbd$/, replacement: `${root}apps/allidbd/src/index.ts` },
    ],
  },
  test: {
    coverage: {
      provider: "v8",
      include: ["packages/*/src/**", "apps/*/src/**"],
      reporter: ["text-summary", "text"],
    },
    projects: [
      ...packages.map((name) => ({
        extends: true as const,
        test: { name, include: [`packages/${name}/test/**/*.test.ts`] },
      })),
      { extends: true as const, test: { name: "allidbd", include: ["apps/allidbd/test/**/*.test.ts"] } },
      { extends: true as const, test: { name: "examples", include: ["examples/**/*.test.ts"] } },
    ],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
