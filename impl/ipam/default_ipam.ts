/**
 * The built-in "default" IPAM driver: libnetwork's `ipams/defaultipam` (research/libnetwork.md
 * §2.5). Pools come from predefined ranges (first fit) or are given by the user; addresses are
 * handed out lowest-free first, or round robin in serial mode.
 *
 * Allocated addresses are kept as a sorted list of merged intervals of bigints, never as a
 * bitmap, so a /8 or a /64 pool costs memory only for the addresses actually handed out.
 *
 * Differences from Docker, on purpose:
 * - The IPv6 local default pool is the fixed ULA `fd00:c0ff:ee00::/48`. Docker derives a ULA
 *   /48 from a hash of the host id (`daemon/daemon.go`), which differs from host to host.
 * - There is no Exclude list (host routes and nameservers): the contract has no field for it.
 * - An ip-range request whose parent subnet is not allocated yet is overlap-checked like any
 *   other request. Docker skips that check (moby#46756); only an exact, already allocated parent
 *   is shared.
 * - Preferred network, broadcast and subnet-router anycast addresses are rejected as invalid
 *   arguments naming the reason; Docker answers "Address already in use" for them.
 * - Releasing a pool also frees the addresses allocated through it, so a sharer that goes away
 *   does not leak addresses in a parent subnet that stays allocated.
 * @module
 */
import type {
  AddressRequestOptions,
  IpamCapability,
  IpamDriver,
  PoolRequest,
  PoolResponse,
} from "../driver_api/ipam_driver.ts";
import { ForbiddenError, InvalidArgumentError, NotFoundError } from "../model/errors.ts";
import { type Family, familyBits, formatIp, parseIp, Prefix } from "../model/ip.ts";

/** A predefined address range and the prefix length it is split into (`--default-address-pool`). */
export type PredefinedPool = { base: string; size: number };

/** The local (per-host) default address space. */
export const LOCAL_ADDRESS_SPACE = "LocalDefault";
/** The global (swarm-scope) default address space. */
export const GLOBAL_ADDRESS_SPACE = "GlobalDefault";
/** Pool option that turns on serial (round-robin) address allocation. */
export const SERIAL_OPTION = "com.docker.network.ipam.serial";

/** Docker's local predefined IPv4 pools (`ipamutils/utils.go`, research/libnetwork.md §2.5). */
export const DEFAULT_LOCAL_POOLS: readonly PredefinedPool[] = Object.freeze([
  { base: "172.17.0.0/16", size: 16 },
  { base: "172.18.0.0/16", size: 16 },
  { base: "172.19.0.0/16", size: 16 },
  { base: "172.20.0.0/14", size: 16 },
  { base: "172.24.0.0/14", size: 16 },
  { base: "172.28.0.0/14", size: 16 },
  { base: "192.168.0.0/16", size: 20 },
]);

/** Docker's global predefined pool: 10.0.0.0/8 split into /24s (research/libnetwork.md §2.5). */
export const DEFAULT_GLOBAL_POOLS: readonly PredefinedPool[] = Object.freeze([
  { base: "10.0.0.0/8", size: 24 },
]);

/**
 * The local IPv6 predefined pool. Docker derives a ULA /48 (`fd` + 40 bits of sha256(host id))
 * when no IPv6 pool is configured (research/libnetwork.md §2.5); we use a fixed one so that
 * results are reproducible.
 */
export const DEFAULT_V6_POOLS: readonly PredefinedPool[] = Object.freeze([
  { base: "fd00:c0ff:ee00::/48", size: 64 },
]);

/**
 * Parses and validates a predefined pool, the value of a future `--default-pool` flag:
 * `"10.10.0.0/16/24"` (CIDR then split size), Docker's `"base=10.10.0.0/16,size=24"`, or an
 * object `{ base, size }`. Returns it with the base in canonical form.
 * Throws InvalidArgumentError when the base is not a canonical CIDR or the size does not fit.
 */
export function parseDefaultPool(spec: string | PredefinedPool): PredefinedPool {
  let baseText: string;
  let sizeText: string;
  const shown = typeof spec === "string" ? spec : `${spec.base}/${spec.size}`;
  if (typeof spec === "string") {
    const text = spec.trim();
    const kv = /^base=([^,]+),size=([^,]*)$/.exec(text);
    const vk = /^size=([^,]*),base=([^,]+)$/.exec(text);
    const slash = text.lastIndexOf("/");
    if (kv) {
      [baseText, sizeText] = [kv[1], kv[2]];
    } else if (vk) {
      [baseText, sizeText] = [vk[2], vk[1]];
    } else if (slash > 0 && text.slice(0, slash).includes("/")) {
      [baseText, sizeText] = [text.slice(0, slash), text.slice(slash + 1)];
    } else {
      throw new InvalidArgumentError(
        `Invalid default pool "${spec}": expected CIDR/SIZE such as 10.10.0.0/16/24`,
      );
    }
  } else {
    baseText = spec.base;
    sizeText = String(spec.size);
  }
  if (!/^\d{1,3}$/.test(sizeText)) {
    throw new InvalidArgumentError(
      `Invalid default pool "${shown}": size "${sizeText}" is not a prefix length`,
    );
  }
  const base = Prefix.parse(baseText, "default pool base");
  const size = Number(sizeText);
  if (size < base.bits) {
    throw new InvalidArgumentError(
      `Invalid default pool "${shown}": size /${size} is shorter than the base prefix /${base.bits}`,
    );
  }
  if (size > familyBits(base.family)) {
    throw new InvalidArgumentError(
      `Invalid default pool "${shown}": size /${size} is too long for IPv${base.family}`,
    );
  }
  return { base: base.toString(), size };
}

/**
 * A set of bigints stored as sorted, merged, non-adjacent intervals `[lo, hi]`. Finding the
 * lowest member-free value at or after `x` is one binary search.
 */
class IntervalSet {
  #lo: bigint[] = [];
  #hi: bigint[] = [];

  /** Index of the last interval whose start is <= v, or -1. */
  #find(v: bigint): number {
    let a = 0, b = this.#lo.length - 1, r = -1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (this.#lo[m] <= v) {
        r = m;
        a = m + 1;
      } else b = m - 1;
    }
    return r;
  }

  has(v: bigint): boolean {
    const i = this.#find(v);
    return i >= 0 && v <= this.#hi[i];
  }

  /** Adds v; false when it was already there. */
  add(v: bigint): boolean {
    const i = this.#find(v);
    if (i >= 0 && v <= this.#hi[i]) return false;
    const joinLeft = i >= 0 && this.#hi[i] === v - 1n;
    const joinRight = i + 1 < this.#lo.length && this.#lo[i + 1] === v + 1n;
    if (joinLeft && joinRight) {
      this.#hi[i] = this.#hi[i + 1];
      this.#lo.splice(i + 1, 1);
      this.#hi.splice(i + 1, 1);
    } else if (joinLeft) {
      this.#hi[i] = v;
    } else if (joinRight) {
      this.#lo[i + 1] = v;
    } else {
      this.#lo.splice(i + 1, 0, v);
      this.#hi.splice(i + 1, 0, v);
    }
    return true;
  }

  /** Removes v; false when it was not there. */
  delete(v: bigint): boolean {
    const i = this.#find(v);
    if (i < 0 || v > this.#hi[i]) return false;
    const lo = this.#lo[i], hi = this.#hi[i];
    if (lo === hi) {
      this.#lo.splice(i, 1);
      this.#hi.splice(i, 1);
    } else if (v === lo) {
      this.#lo[i] = v + 1n;
    } else if (v === hi) {
      this.#hi[i] = v - 1n;
    } else {
      this.#hi[i] = v - 1n;
      this.#lo.splice(i + 1, 0, v + 1n);
      this.#hi.splice(i + 1, 0, hi);
    }
    return true;
  }

  /** The lowest value in [from, to] that is not in the set, if any. */
  firstFree(from: bigint, to: bigint): bigint | undefined {
    const i = this.#find(from);
    // intervals are merged, so the value after an interval's end is free
    const c = i >= 0 && from <= this.#hi[i] ? this.#hi[i] + 1n : from;
    return c <= to ? c : undefined;
  }

  *values(): Generator<bigint> {
    for (let i = 0; i < this.#lo.length; i++) {
      for (let v = this.#lo[i]; v <= this.#hi[i]; v++) yield v;
    }
  }

  get size(): bigint {
    let n = 0n;
    for (let i = 0; i < this.#lo.length; i++) n += this.#hi[i] - this.#lo[i] + 1n;
    return n;
  }
}

/** An allocated subnet of an address space; possibly shared by several ip-range pools. */
interface Subnet {
  prefix: Prefix;
  /** Held by a request without ip-range (Docker: not `autoRelease`). */
  held: boolean;
  /** Ip-ranges (text) of the sub-pool requests sharing this subnet. */
  ranges: Set<string>;
  /** Allocated addresses, shared by every pool id of this subnet. */
  addrs: IntervalSet;
  /** Which pool id allocated each address, so releasing a pool frees its addresses. */
  owners: Map<bigint, string>;
}

/** One pool id handed out by requestPool. */
interface PoolUse {
  id: string;
  space: AddressSpace;
  subnet: Subnet;
  /** The ip-range addresses come from; absent = the whole subnet. */
  range?: Prefix;
  serial: boolean;
  /** Serial mode: the last address handed out automatically. */
  cursor?: bigint;
}

interface AddressSpace {
  name: string;
  /** Predefined pools of both families, in order; requests filter by family. */
  predefined: { base: Prefix; size: number }[];
  /** Allocated subnets by their text. */
  subnets: Map<string, Subnet>;
}

function compilePools(pools: readonly PredefinedPool[]): { base: Prefix; size: number }[] {
  return pools.map((p) => {
    const ok = parseDefaultPool(p);
    return { base: Prefix.parse(ok.base), size: ok.size };
  });
}

function familyName(v6: boolean): string {
  return v6 ? "IPv6" : "IPv4";
}

/** The first address greater than or equal to v that is a multiple of step. */
function alignUp(v: bigint, step: bigint): bigint {
  const r = v % step;
  return r === 0n ? v : v + step - r;
}

/** The IPv4 network address, unless the subnet is a /31 or /32; IPv6: the ::0 always. */
function networkReserved(p: Prefix): boolean {
  return p.family === 6 || p.size > 2n;
}

/** The IPv4 broadcast address, unless the subnet is a /31 or /32. */
function broadcastReserved(p: Prefix): boolean {
  return p.family === 4 && p.size > 2n;
}

/**
 * Creates libnetwork's default IPAM driver (research/libnetwork.md §2.5). `localPools` and
 * `globalPools` replace Docker's predefined IPv4 pools of each address space; `v6Pools` are the
 * local IPv6 predefined pools (defaults: {@linkcode DEFAULT_LOCAL_POOLS},
 * {@linkcode DEFAULT_GLOBAL_POOLS}, {@linkcode DEFAULT_V6_POOLS}). As in Docker, pools are
 * sorted into IPv4 and IPv6 by family, so an IPv6 entry in `localPools` or `globalPools` works
 * too. `snapshot()` returns the allocation state, for debugging.
 *
 * Every method runs synchronously inside its promise, so concurrent calls never interleave.
 */
export function createDefaultIpam(options: {
  localPools?: PredefinedPool[];
  globalPools?: PredefinedPool[];
  v6Pools?: PredefinedPool[];
} = {}): IpamDriver & { snapshot(): unknown } {
  const spaces = new Map<string, AddressSpace>([
    [LOCAL_ADDRESS_SPACE, {
      name: LOCAL_ADDRESS_SPACE,
      predefined: compilePools([
        ...(options.localPools ?? DEFAULT_LOCAL_POOLS),
        ...(options.v6Pools ?? DEFAULT_V6_POOLS),
      ]),
      subnets: new Map(),
    }],
    [GLOBAL_ADDRESS_SPACE, {
      name: GLOBAL_ADDRESS_SPACE,
      predefined: compilePools(options.globalPools ?? DEFAULT_GLOBAL_POOLS),
      subnets: new Map(),
    }],
  ]);
  const uses = new Map<string, PoolUse>();

  function getSpace(name: string): AddressSpace {
    const space = spaces.get(name);
    if (!space) {
      throw new InvalidArgumentError(
        `Unknown address space "${name}": expected ${LOCAL_ADDRESS_SPACE} or ${GLOBAL_ADDRESS_SPACE}`,
      );
    }
    return space;
  }

  function getUse(poolId: string): PoolUse {
    const use = uses.get(poolId);
    if (!use) throw new NotFoundError(`Address pool "${poolId}" not found`);
    return use;
  }

  function findOverlap(space: AddressSpace, p: Prefix): Subnet | undefined {
    for (const s of space.subnets.values()) if (s.prefix.overlaps(p)) return s;
    return undefined;
  }

  function addSubnet(space: AddressSpace, prefix: Prefix): Subnet {
    const s: Subnet = {
      prefix,
      held: false,
      ranges: new Set(),
      addrs: new IntervalSet(),
      owners: new Map(),
    };
    space.subnets.set(prefix.toString(), s);
    return s;
  }

  /** First fit over the predefined pools, skipping allocated subnets (§2.5). */
  function allocatePredefined(space: AddressSpace, v6: boolean): Prefix {
    const family: Family = v6 ? 6 : 4;
    // allocated subnets never overlap each other, so one sorted sweep per base is enough
    const taken = [...space.subnets.values()]
      .map((s) => s.prefix)
      .filter((p) => p.family === family)
      .sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
    for (const { base, size } of space.predefined) {
      if (base.family !== family) continue;
      const step = 1n << BigInt(familyBits(family) - size);
      let cand = base.network;
      for (const t of taken) {
        if (t.last < cand) continue;
        if (t.network > cand + step - 1n) break;
        // overlapped: jump past it, to the next boundary of the split size
        cand = alignUp(t.last + 1n, step);
      }
      if (cand + step - 1n <= base.last) return new Prefix(family, cand, size);
    }
    throw new ForbiddenError(
      `No free ${familyName(v6)} pool in address space ${space.name}: ` +
        "all predefined address pools have been fully subnetted",
    );
  }

  function requestPoolSync(req: PoolRequest): PoolResponse {
    const space = getSpace(req.addressSpace);
    const v6 = req.v6 === true;
    const serial = req.options?.[SERIAL_OPTION] === "true";
    const poolText = req.pool ?? "";
    const subText = req.subPool ?? "";
    if (poolText === "" && subText !== "") {
      throw new InvalidArgumentError(
        `Invalid pool request: ip-range ${subText} given without a subnet`,
      );
    }

    let subnet: Subnet;
    let range: Prefix | undefined;
    if (poolText === "") {
      subnet = addSubnet(space, allocatePredefined(space, v6));
      subnet.held = true;
    } else {
      const prefix = Prefix.parse(poolText, "subnet");
      if ((prefix.family === 6) !== v6) {
        throw new InvalidArgumentError(
          `Invalid subnet ${prefix}: it is ${familyName(prefix.family === 6)} but an ` +
            `${familyName(v6)} pool was requested`,
        );
      }
      if (subText !== "") {
        range = Prefix.parse(subText, "ip-range");
        if (range.family !== prefix.family) {
          throw new InvalidArgumentError(
            `Invalid ip-range ${range}: pool ${prefix} is ${familyName(prefix.family === 6)}`,
          );
        }
        if (!range.within(prefix)) {
          throw new InvalidArgumentError(`Invalid ip-range ${range}: not inside pool ${prefix}`);
        }
      }
      const existing = space.subnets.get(prefix.toString());
      if (range && existing) {
        // Docker's sub-pool rule (§2.5, moby#46756): share the parent, addresses stay unique
        if (existing.ranges.has(range.toString())) {
          throw new ForbiddenError(
            `Pool ${prefix} overlaps with pool ${existing.prefix} on this address space: ` +
              `ip-range ${range} is already allocated`,
          );
        }
        subnet = existing;
      } else {
        const hit = findOverlap(space, prefix);
        if (hit) {
          // Docker: ErrPoolOverlap "Pool overlaps with other one on this address space"
          throw new ForbiddenError(
            `Pool ${prefix} overlaps with pool ${hit.prefix} on this address space`,
          );
        }
        subnet = addSubnet(space, prefix);
      }
      if (range) subnet.ranges.add(range.toString());
      else subnet.held = true;
    }

    // PoolID formats: "<AS>/<subnet>" or "<AS>/<subnet>/<ip-range>" (§2.5)
    const id = `${space.name}/${subnet.prefix}` + (range ? `/${range}` : "");
    uses.set(id, { id, space, subnet, range, serial });
    return { poolId: id, pool: subnet.prefix.toString(), meta: {} };
  }

  function releasePoolSync(poolId: string): void {
    const use = getUse(poolId);
    uses.delete(poolId);
    const s = use.subnet;
    for (const [addr, owner] of s.owners) {
      if (owner === poolId) {
        s.owners.delete(addr);
        s.addrs.delete(addr);
      }
    }
    if (use.range) s.ranges.delete(use.range.toString());
    else s.held = false;
    // the parent is freed with its last user (Docker: autoRelease, §2.5)
    if (!s.held && s.ranges.size === 0) use.space.subnets.delete(s.prefix.toString());
  }

  function requestAddressSync(poolId: string, preferred?: string): string {
    const use = getUse(poolId);
    const s = use.subnet;
    const p = s.prefix;
    let value: bigint;
    if (preferred !== undefined && preferred !== "") {
      const ip = parseIp(preferred, "preferred address");
      const shown = formatIp(ip.family, ip.value);
      // inside the subnet is enough; the ip-range need not contain it (as Docker)
      if (!p.contains(ip)) throw new InvalidArgumentError(`Address ${shown} is outside pool ${p}`);
      if (ip.value === p.network && networkReserved(p)) {
        throw new InvalidArgumentError(
          p.family === 4
            ? `Address ${shown} is the network address of pool ${p}`
            : `Address ${shown} is the subnet-router anycast address of pool ${p}`,
        );
      }
      if (ip.value === p.last && broadcastReserved(p)) {
        throw new InvalidArgumentError(`Address ${shown} is the broadcast address of pool ${p}`);
      }
      // Docker: ErrIPAlreadyAllocated "Address already in use" (§2.5)
      if (s.addrs.has(ip.value)) throw new ForbiddenError(`Address ${shown} already in use`);
      value = ip.value;
    } else {
      const r = use.range ?? p;
      const first = (from: bigint, to: bigint): bigint | undefined => {
        for (;;) {
          const c = s.addrs.firstFree(from, to);
          if (c === undefined) return undefined;
          if ((c === p.network && networkReserved(p)) || (c === p.last && broadcastReserved(p))) {
            from = c + 1n;
            continue;
          }
          return c;
        }
      };
      // lowest free, or in serial mode the next free after the last one, wrapping (§2.5)
      const found = use.serial && use.cursor !== undefined
        ? first(use.cursor + 1n, r.last) ?? first(r.network, use.cursor)
        : first(r.network, r.last);
      if (found === undefined) {
        // Docker: ErrNoAvailableIPs "no available addresses on this pool"
        throw new ForbiddenError(
          `Address pool exhausted: no available addresses on this pool ${p}` +
            (use.range ? ` (ip-range ${use.range})` : ""),
        );
      }
      value = found;
      if (use.serial) use.cursor = value;
    }
    s.addrs.add(value);
    s.owners.set(value, poolId);
    return p.withAddress(value);
  }

  function releaseAddressSync(poolId: string, address: string): void {
    const use = getUse(poolId);
    const p = use.subnet.prefix;
    const ip = parseIp(address, "address");
    if (!p.contains(ip)) {
      throw new InvalidArgumentError(
        `Address ${formatIp(ip.family, ip.value)} is outside pool ${p}`,
      );
    }
    use.subnet.addrs.delete(ip.value);
    use.subnet.owners.delete(ip.value);
  }

  return {
    type: "default",
    capabilities(): IpamCapability {
      return { requiresRequestReplay: true };
    },
    defaultAddressSpaces() {
      return { local: LOCAL_ADDRESS_SPACE, global: GLOBAL_ADDRESS_SPACE };
    },
    // deno-lint-ignore require-await
    async requestPool(req: PoolRequest): Promise<PoolResponse> {
      return requestPoolSync(req);
    },
    // deno-lint-ignore require-await
    async releasePool(poolId: string): Promise<void> {
      releasePoolSync(poolId);
    },
    // deno-lint-ignore require-await
    async requestAddress(
      poolId: string,
      preferred?: string,
      _options?: AddressRequestOptions,
    ): Promise<string> {
      // The gateway request needs nothing special: it comes right after requestPool, so the
      // lowest free address is the `.1` (§2.5).
      return requestAddressSync(poolId, preferred);
    },
    // deno-lint-ignore require-await
    async releaseAddress(poolId: string, address: string): Promise<void> {
      releaseAddressSync(poolId, address);
    },
    snapshot() {
      const out: Record<string, unknown> = {};
      for (const space of spaces.values()) {
        out[space.name] = [...space.subnets.values()].map((s) => ({
          subnet: s.prefix.toString(),
          held: s.held,
          ipRanges: [...s.ranges],
          allocated: s.addrs.size <= 4096n
            ? [...s.addrs.values()].map((v) => formatIp(s.prefix.family, v))
            : `${s.addrs.size} addresses`,
        }));
      }
      out.pools = [...uses.keys()];
      return out;
    },
  };
}
