/**
 * CIDR checks for topology files, worded for the file's author. Built on the npm package
 * ipaddr.js and nothing of the implementation under test (the suite shares no code with
 * what it judges; `conformance/imports_test.ts` enforces it).
 *
 * ipaddr.js is lenient where a topology file must not be: its `parse` takes "10.1",
 * "0x0a.0.0.1", octal "010.0.0.1" and zone ids ("fe80::1%eth0"), and reads "::1.2.3.4" as
 * the IPv4-mapped "::ffff:1.2.3.4". So this module accepts only:
 * - IPv4 as four decimal parts, 0–255, without leading zeros ("10.0.0.1");
 * - IPv6 as RFC 4291 text: groups of 1–4 hex digits, at most one "::", optionally ending in
 *   a dotted IPv4 part (itself four strict decimal parts) that stands for the last two
 *   groups, read literally ("::1.2.3.4" is ::102:304, "::ffff:1.2.3.4" is IPv4-mapped);
 *   no zone id, no brackets, no surrounding spaces;
 * - prefix lengths in decimal without leading zeros ("/8", not "/08").
 * @module
 */
import ipaddr from "ipaddr.js";

/** An address as ipaddr.js represents it. */
export type IpAddr = ipaddr.IPv4 | ipaddr.IPv6;

/** A parsed network prefix, with the text it came from. */
export interface Cidr {
  family: 4 | 6;
  bits: number;
  text: string;
  /** The network address (host bits are zero). */
  address: IpAddr;
  /** The network address as an integer, derived from its bytes. */
  network: bigint;
}

const V4 = /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/;
const V6_CHARS = /^[0-9a-fA-F:.]+$/;

/** Bit width of a family. */
function width(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** The address's bytes (network order) as one integer. */
function toBigInt(a: IpAddr): bigint {
  return a.toByteArray().reduce((v, b) => (v << 8n) | BigInt(b), 0n);
}

/** The integer as an address of `family`, or undefined when it does not fit. */
function fromBigInt(family: 4 | 6, value: bigint): IpAddr | undefined {
  const n = width(family) / 8;
  if (value < 0n || value >= 1n << BigInt(n * 8)) return undefined;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((value >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes);
}

function strictV4(s: string): ipaddr.IPv4 | undefined {
  if (!V4.test(s) || !ipaddr.IPv4.isValidFourPartDecimal(s)) return undefined;
  return ipaddr.IPv4.parse(s);
}

function strictV6(s: string): ipaddr.IPv6 | undefined {
  if (!s.includes(":") || !V6_CHARS.test(s)) return undefined; // no zone id, no brackets
  let text = s;
  if (s.includes(".")) {
    // a dotted tail stands for the last two groups, literally (ipaddr.js would turn
    // "::a.b.c.d" into "::ffff:a.b.c.d"); rewrite it as hex groups first
    const colon = s.lastIndexOf(":");
    const tail = strictV4(s.slice(colon + 1));
    if (!tail) return undefined;
    const [a, b, c, d] = tail.octets;
    text = `${s.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  if (!ipaddr.IPv6.isValid(text)) return undefined;
  const ip = ipaddr.IPv6.parse(text);
  return ip.zoneId === undefined ? ip : undefined;
}

/** Parses an address strictly (see the module doc) into ipaddr.js's form, or undefined. */
export function parseAddr(s: string): IpAddr | undefined {
  return strictV4(s) ?? strictV6(s);
}

/** Parses an IPv4 or IPv6 address (no prefix length), or undefined. */
export function parseIp(s: string): { family: 4 | 6; value: bigint } | undefined {
  const a = parseAddr(s);
  if (!a) return undefined;
  return { family: a.kind() === "ipv4" ? 4 : 6, value: toBigInt(a) };
}

/** The address with every bit after the first `bits` cleared. */
function networkOf(a: IpAddr, bits: number): IpAddr {
  const mask = a.kind() === "ipv4"
    ? ipaddr.IPv4.subnetMaskFromPrefixLength(bits)
    : ipaddr.IPv6.subnetMaskFromPrefixLength(bits);
  const m = mask.toByteArray();
  return ipaddr.fromByteArray(a.toByteArray().map((b, i) => b & m[i]));
}

/**
 * Parses `ADDR/BITS`; the address must be the network address (no host bits set).
 * Returns an error text instead when it is not a valid CIDR.
 */
export function parseCidr(s: string, family?: 4 | 6): Cidr | string {
  const m = s.match(/^([^/]+)\/(\d{1,3})$/);
  if (!m) return `bad CIDR "${s}" (want ADDRESS/BITS)`;
  const ip = parseAddr(m[1]);
  if (!ip) return `bad CIDR "${s}": "${m[1]}" is not an IP address`;
  const fam = ip.kind() === "ipv4" ? 4 : 6;
  if (family && fam !== family) return `bad CIDR "${s}": not IPv${family}`;
  if (m[2].length > 1 && m[2].startsWith("0")) {
    return `bad CIDR "${s}": prefix length "${m[2]}" has a leading zero`;
  }
  const bits = Number(m[2]);
  if (bits > width(fam)) return `bad CIDR "${s}": prefix length ${bits} > ${width(fam)}`;
  const net = networkOf(ip, bits);
  const network = toBigInt(net);
  if (network !== toBigInt(ip)) {
    return `bad CIDR "${s}": host bits set (the network is ${net}/${bits})`;
  }
  return { family: fam, bits, text: s, address: net, network };
}

/** True when address `ip` (an integer of the prefix's family) lies in `cidr`. */
export function contains(cidr: Cidr, ip: bigint): boolean {
  const a = fromBigInt(cidr.family, ip);
  return a !== undefined && a.match(cidr.address, cidr.bits);
}

/** True when the two prefixes share an address (prefixes either nest or are disjoint). */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.address.match(b.address, Math.min(a.bits, b.bits));
}

/** True when `inner` lies entirely inside `outer`. */
export function within(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.bits >= outer.bits &&
    inner.address.match(outer.address, outer.bits);
}
