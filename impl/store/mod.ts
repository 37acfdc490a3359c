/**
 * State stores. Embedded (node:sqlite) for local scope.
 * @module
 */
export * from "./store.ts";
export * from "./global.ts";
