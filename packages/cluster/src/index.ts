export * as Coordinator from "./Coordinator.js"
