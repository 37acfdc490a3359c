/**
 * The kernel layer: the only code in impl/ that runs commands or enters namespaces.
 * @module
 */
export * from "./runner.ts";
export * from "./undo.ts";
export * from "./plan.ts";
export * from "./kernel.ts";
