/**
 * @allidb/client — the typed client of an AlliDB node (`AlliDbClient.layer`)
 * and a Promise facade for code that does not use Effect (`connect`).
 */
export * as AlliDbClient from "./AlliDbClient.js"
export * as PromiseClient from "./PromiseClient.js"
export { connect } from "./PromiseClient.js"
