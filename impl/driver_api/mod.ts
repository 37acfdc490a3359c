/**
 * Contracts between the controller and its drivers.
 * @module
 */
export type * from "./network_driver.ts";
export { PORTMAP_OPTION } from "./network_driver.ts";
export type * from "./ipam_driver.ts";
