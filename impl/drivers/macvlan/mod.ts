/**
 * The macvlan driver.
 * @module
 */
export { createMacvlanDriver } from "./macvlan.ts";
export type { MacvlanDriverOptions } from "./macvlan.ts";
