/**
 * @allidb/core — the domain model, shared errors and the hybrid logical clock.
 * Domain types are exported flat (`import { Entity, EntityId } from "@allidb/core"`);
 * the clock is a namespace (`Hlc.make`, `Hlc.compare`).
 */
export * from "./Entity.js"
export * from "./Errors.js"
export * as Hlc from "./Hlc.js"
export * from "./Ids.js"
export * from "./Query.js"
export * as SeededRandom from "./SeededRandom.js"
