/**
 * IPv4/IPv6 addresses and prefixes as bigints: parsing, formatting, containment and overlap.
 * Pure code, shared by IPAM, drivers and the controller.
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** An address family. */
export type Family = 4 | 6;

/** A parsed IP address. */
export interface IpAddress {
  family: Family;
  value: bigint;
}

const V4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseV4(s: string): bigint | undefined {
  const m = V4_RE.exec(s);
  if (!m) return undefined;
  let v = 0n;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    if (part.length > 1 && part.startsWith("0")) return undefined; // no octal-looking octets
    const n = Number(part);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length < 2) return undefined;
  let tail4: bigint | undefined;
  let text = s;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    text = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups = halves.length === 2
    ? [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail]
    : head;
  if (groups.length !== 8 || (halves.length === 2 && head.length + tail.length > 7)) {
    return undefined;
  }
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail4 !== undefined) v = (v & ~0xffffffffn) | tail4;
  return v;
}

/** Parses an address, or returns undefined. */
export function tryParseIp(s: string): IpAddress | undefined {
  const v4 = parseV4(s);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = s.includes(":") ? parseV6(s) : undefined;
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

/** Parses an address; throws InvalidArgumentError naming `what` when it is not one. */
export function parseIp(s: string, what = "address"): IpAddress {
  const ip = tryParseIp(s);
  if (!ip) throw new InvalidArgumentError(`Invalid ${what} "${s}": not an IP address`);
  return ip;
}

/** Formats an address in its canonical text form (RFC 5952 for IPv6). */
export function formatIp(family: Family, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // longest run of two or more zero groups becomes "::"
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return hex.slice(0, best).join(":") + "::" + hex.slice(best + bestLen).join(":");
}

/** Bit width of a family. */
export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** A network prefix such as 10.1.0.0/16: canonical (host bits zero). */
export class Prefix {
  readonly family: Family;
  readonly network: bigint;
  readonly bits: number;
  constructor(family: Family, network: bigint, bits: number) {
    this.family = family;
    this.bits = bits;
    this.network = network & Prefix.mask(family, bits);
  }

  /** The netmask of a family and prefix length, as a bigint. */
  static mask(family: Family, bits: number): bigint {
    const width = BigInt(familyBits(family));
    return ((1n << width) - 1n) ^ ((1n << (width - BigInt(bits))) - 1n);
  }

  /**
   * Parses `ADDR/LEN`. With `strict`, host bits must be zero (a subnet); without, the
   * address part is kept available through {@linkcode parseInterfaceAddress}.
   */
  static parse(s: string, what = "subnet", strict = true): Prefix {
    const slash = s.indexOf("/");
    if (slash < 0) {
      throw new InvalidArgumentError(`Invalid ${what} "${s}": expected CIDR notation ADDR/LEN`);
    }
    const ip = tryParseIp(s.slice(0, slash));
    const lenText = s.slice(slash + 1);
    if (!ip || !/^\d{1,3}$/.test(lenText)) {
      throw new InvalidArgumentError(`Invalid ${what} "${s}": not a CIDR`);
    }
    const bits = Number(lenText);
    if (bits > familyBits(ip.family)) {
      throw new InvalidArgumentError(
        `Invalid ${what} "${s}": prefix length ${bits} is too long for IPv${ip.family}`,
      );
    }
    const p = new Prefix(ip.family, ip.value, bits);
    if (strict && p.network !== ip.value) {
      throw new InvalidArgumentError(
        `Invalid ${what} "${s}": host bits are set (did you mean ${p}?)`,
      );
    }
    return p;
  }

  /** Number of addresses in the prefix. */
  get size(): bigint {
    return 1n << BigInt(familyBits(this.family) - this.bits);
  }

  /** The last address of the prefix (the IPv4 broadcast address). */
  get last(): bigint {
    return this.network + this.size - 1n;
  }

  /** True when the address lies inside this prefix. */
  contains(ip: IpAddress): boolean {
    return ip.family === this.family && ip.value >= this.network && ip.value <= this.last;
  }

  /** True when this prefix lies entirely inside `other`. */
  within(other: Prefix): boolean {
    return other.family === this.family && this.network >= other.network &&
      this.last <= other.last;
  }

  /** True when the two prefixes share any address. */
  overlaps(other: Prefix): boolean {
    return other.family === this.family && this.network <= other.last &&
      other.network <= this.last;
  }

  /** `ADDR/LEN` text of an address inside this prefix. */
  withAddress(value: bigint): string {
    return `${formatIp(this.family, value)}/${this.bits}`;
  }

  toString(): string {
    return `${formatIp(this.family, this.network)}/${this.bits}`;
  }
}

/** Parses `ADDR/LEN` where host bits are expected (an interface address). */
export function parseInterfaceAddress(
  s: string,
  what = "address",
): { ip: IpAddress; prefix: Prefix } {
  const prefix = Prefix.parse(s, what, false);
  const ip = parseIp(s.slice(0, s.indexOf("/")), what);
  return { ip, prefix };
}
