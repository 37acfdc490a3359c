/**
 * Services and load balancing: the nftables program (VIPs over numgen/jhash maps).
 * @module
 */
export * from "./plan.ts";
