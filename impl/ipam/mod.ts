/**
 * IPAM drivers: the built-in default IPAM (research/libnetwork.md §2.5).
 * @module
 */
export {
  createDefaultIpam,
  DEFAULT_GLOBAL_POOLS,
  DEFAULT_LOCAL_POOLS,
  DEFAULT_V6_POOLS,
  GLOBAL_ADDRESS_SPACE,
  LOCAL_ADDRESS_SPACE,
  parseDefaultPool,
  SERIAL_OPTION,
} from "./default_ipam.ts";
export type { PredefinedPool } from "./default_ipam.ts";
export { createGlobalIpam } from "./global_ipam.ts";
