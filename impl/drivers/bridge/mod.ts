/**
 * The bridge driver.
 * @module
 */
export { createBridgeDriver } from "./bridge.ts";
export type { BridgeDriverOptions } from "./bridge.ts";
