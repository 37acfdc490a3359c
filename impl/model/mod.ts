/**
 * The CNM model: objects, names, addresses and errors. Imports nothing else of ours.
 * @module
 */
export * from "./errors.ts";
export * from "./ip.ts";
export * from "./limits.ts";
export * from "./names.ts";
export type * from "./objects.ts";
