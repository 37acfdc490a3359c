/**
 * Just enough address arithmetic to validate topology files: parse IPv4/IPv6 addresses
 * and CIDRs, containment and overlap.
 * @module
 */

/** A parsed prefix: family, network address as a bigint, prefix length. */
export interface Cidr {
  family: 4 | 6;
  base: bigint;
  bits: number;
  text: string;
}

/** Parses an IPv4 address to a bigint, or undefined. */
export function parseIpv4(s: string): bigint | undefined {
  const m = s.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (!m) return undefined;
  let v = 0n;
  for (const part of m.slice(1)) {
    if (part.length > 1 && part.startsWith("0")) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

/** Parses an IPv6 address (no zone) to a bigint, or undefined. */
export function parseIpv6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.split("::").length > 2) return undefined;
  let text = s;
  // trailing dotted IPv4 (::ffff:1.2.3.4)
  const dotted = text.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted) {
    const v4 = parseIpv4(dotted[2]);
    if (v4 === undefined) return undefined;
    text = `${dotted[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const hs = head === "" ? [] : head.split(":");
  const ts = tail === undefined ? [] : tail === "" ? [] : tail.split(":");
  if (tail === undefined && hs.length !== 8) return undefined;
  if (tail !== undefined && hs.length + ts.length > 7) return undefined;
  const groups = [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

/** Parses an address of either family. */
export function parseIp(s: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = parseIpv4(s);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(s);
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

/**
 * Parses `ADDR/BITS`; the address must be the network address (no host bits set).
 * Returns an error text instead when it is not a valid CIDR.
 */
export function parseCidr(s: string, family?: 4 | 6): Cidr | string {
  const m = s.match(/^([^/]+)\/(\d{1,3})$/);
  if (!m) return `bad CIDR "${s}" (want ADDRESS/BITS)`;
  const ip = parseIp(m[1]);
  if (!ip) return `bad CIDR "${s}": "${m[1]}" is not an IP address`;
  if (family && ip.family !== family) return `bad CIDR "${s}": not IPv${family}`;
  const width = ip.family === 4 ? 32 : 128;
  const bits = Number(m[2]);
  if (bits > width) return `bad CIDR "${s}": prefix length ${bits} > ${width}`;
  const hostMask = (1n << BigInt(width - bits)) - 1n;
  if ((ip.value & hostMask) !== 0n) {
    return `bad CIDR "${s}": host bits set (the network is ${
      format(ip.value & ~hostMask, ip.family)
    }/${bits})`;
  }
  return { family: ip.family, base: ip.value, bits, text: s };
}

function format(v: bigint, family: 4 | 6): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((v >> s) & 0xffn).toString()).join(".");
  }
  const groups: string[] = [];
  for (let i = 7n; i >= 0n; i--) groups.push(((v >> (i * 16n)) & 0xffffn).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:::+/, "::");
}

/** True when address `ip` (same family) lies in `cidr`. */
export function contains(cidr: Cidr, ip: bigint): boolean {
  const width = cidr.family === 4 ? 32 : 128;
  const shift = BigInt(width - cidr.bits);
  return (ip >> shift) === (cidr.base >> shift);
}

/** True when two prefixes of the same family share an address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.bits <= b.bits ? contains(a, b.base) : contains(b, a.base);
}

/** True when `inner` lies entirely inside `outer`. */
export function within(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.bits <= inner.bits && contains(outer, inner.base);
}
