export * as Coordinator from "./Coordinator.js"
export * as LocalCoordinator from "./LocalCoordinator.js"
