export * as Disk from "./Disk.js"
export * as StorageEngine from "./StorageEngine.js"
