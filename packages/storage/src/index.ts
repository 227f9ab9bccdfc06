export * as Disk from "./Disk.js"
export * as StorageMetrics from "./Metrics.js"
export * as StorageConfig from "./StorageConfig.js"
export * as StorageEngine from "./StorageEngine.js"
