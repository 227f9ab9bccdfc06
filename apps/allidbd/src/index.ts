/**
 * allidbd as a library: embed a whole node in another Effect program.
 *
 * ```ts
 * import { AlliDb } from "allidbd"
 * const node = AlliDb.layer(AlliDb.config({ dataDir: "./data" }))
 * ```
 */
export * as AlliDb from "./Node.js"
export * as Config from "./Config.js"
