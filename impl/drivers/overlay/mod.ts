/**
 * The overlay driver.
 * @module
 */
export { createOverlayDriver, parseOverlayOptions } from "./overlay.ts";
export type { OverlayDriverOptions } from "./overlay.ts";
