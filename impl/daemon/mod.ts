/**
 * The cnm daemon: the controller and its HTTP+JSON API on a unix socket.
 * @module
 */
export * from "./api.ts";
export * from "./daemon.ts";
export * from "./flags.ts";
