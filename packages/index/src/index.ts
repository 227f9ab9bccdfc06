export * as QueryExecutor from "./QueryExecutor.js"
export * as UnifiedIndex from "./UnifiedIndex.js"
