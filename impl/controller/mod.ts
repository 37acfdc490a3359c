/**
 * The controller.
 * @module
 */
export * from "./controller.ts";
