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
