/**
 * CIDR checks for topology files, worded for the file's author, on top of the project's
 * one IP parser (impl/model/ip.ts, pure code: no implementation behaviour).
 * @module
 */
import { familyBits, Prefix, tryParseIp } from "../../impl/model/ip.ts";

/** A parsed network prefix, with the text it came from. */
export interface Cidr {
  family: 4 | 6;
  bits: number;
  text: string;
  prefix: Prefix;
}

/** Parses an IPv4 or IPv6 address (no prefix length), or undefined. */
export function parseIp(s: string): { family: 4 | 6; value: bigint } | undefined {
  return tryParseIp(s);
}

/**
 * Parses `ADDR/BITS`; the address must be the network address (no host bits set).
 * Returns an error text instead when it is not a valid CIDR.
 */
export function parseCidr(s: string, family?: 4 | 6): Cidr | string {
  const m = s.match(/^([^/]+)\/(\d{1,3})$/);
  if (!m) return `bad CIDR "${s}" (want ADDRESS/BITS)`;
  const ip = tryParseIp(m[1]);
  if (!ip) return `bad CIDR "${s}": "${m[1]}" is not an IP address`;
  if (family && ip.family !== family) return `bad CIDR "${s}": not IPv${family}`;
  const width = familyBits(ip.family);
  const bits = Number(m[2]);
  if (bits > width) return `bad CIDR "${s}": prefix length ${bits} > ${width}`;
  const prefix = new Prefix(ip.family, ip.value, bits);
  if (prefix.network !== ip.value) {
    return `bad CIDR "${s}": host bits set (the network is ${prefix})`;
  }
  return { family: ip.family, bits, text: s, prefix };
}

/** True when address `ip` (same family) lies in `cidr`. */
export function contains(cidr: Cidr, ip: bigint): boolean {
  return cidr.prefix.contains({ family: cidr.family, value: ip });
}

/** True when the two prefixes share an address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.prefix.overlaps(b.prefix);
}

/** True when `inner` lies entirely inside `outer`. */
export function within(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix.within(outer.prefix);
}
