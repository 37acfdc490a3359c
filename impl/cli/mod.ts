/**
 * The `cnm` command line: parsing, the API client, output formats and execution.
 * @module
 */
export * from "./client.ts";
export * from "./format.ts";
export * from "./parse.ts";
export * from "./run.ts";
export { main } from "./main.ts";
