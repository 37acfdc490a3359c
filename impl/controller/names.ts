/**
 * Names the parts of one controller give their objects in shared places.
 * @module
 */

/**
 * Name of the nft table a component owns for a prefix (nft names: letters, digits, `_`):
 * `<prefix>_bridge` for the bridge driver, `<prefix>_lb` for the services.
 */
export function nftTableName(prefix: string, component: string): string {
  return `${prefix.replace(/[^a-zA-Z0-9_]/g, "_")}_${component}`;
}

/**
 * The default gateway network's name (Docker's docker_gwbridge, research/libnetwork.md
 * §3.5; ./gateway_bridge.ts). Its endpoints are anonymous: no DNS names.
 */
export const GWBRIDGE = "docker_gwbridge";
