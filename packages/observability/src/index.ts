export * as Logging from "./Logging.js"
