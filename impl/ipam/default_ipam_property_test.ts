/**
 * Property tests of the default IPAM with fast-check (issue 14): random sequences of
 * requestPool (explicit subnet with or without ip-range, predefined, gateway), requestAddress
 * (any, specific, specific but taken, the gateway), releaseAddress and releasePool, on small
 * IPv4 and IPv6 pools so that exhaustion is reached, checked against a model (the live
 * addresses of each subnet, a linear scan for the next address).
 *
 * Docker's rules checked (research/libnetwork.md §2.5, default_ipam.ts): addresses are unique
 * across the pools sharing a subnet; automatic ones come from the ip-range when there is one,
 * lowest free first (serial: next after the last, wrapping); the IPv4 network and broadcast
 * addresses (but for /31 and /32) and the IPv6 subnet-router anycast `::0` are never handed
 * out; a live gateway is never handed out again; a released address is free again; releasing
 * a pool frees its addresses and the subnet with its last user; every failure is a typed
 * error (InvalidArgumentError, ForbiddenError, NotFoundError) with a one-line message.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { createDefaultIpam, GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE } from "./mod.ts";
import { ForbiddenError, InvalidArgumentError, NotFoundError } from "../model/errors.ts";
import type { IpamDriver } from "../driver_api/ipam_driver.ts";

type ErrorClass = typeof InvalidArgumentError | typeof ForbiddenError | typeof NotFoundError;
type Family = 4 | 6;

// --- addresses as bigints ------------------------------------------------------------------

const WIDTH = { 4: 32, 6: 128 } as const;

interface Net {
  family: Family;
  network: bigint;
  bits: number;
}

function size(n: Net): bigint {
  return 1n << BigInt(WIDTH[n.family] - n.bits);
}

function last(n: Net): bigint {
  return n.network + size(n) - 1n;
}

function inside(n: Net, v: bigint): boolean {
  return v >= n.network && v <= last(n);
}

function overlaps(a: Net, b: Net): boolean {
  return a.family === b.family && a.network <= last(b) && b.network <= last(a);
}

/** Address text: IPv4 dotted, IPv6 as eight uncompressed groups (the IPAM takes any form). */
function text(family: Family, v: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join(".");
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(16 * i)) & 0xffffn).toString(16));
  return groups.join(":");
}

function cidr(n: Net): string {
  return `${text(n.family, n.network)}/${n.bits}`;
}

function net(s: string): Net {
  const [addr, bits] = ipaddr.parseCIDR(s);
  return { family: addr.kind() === "ipv4" ? 4 : 6, network: toBig(addr), bits };
}

function toBig(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((a, b) => (a << 8n) | BigInt(b), 0n);
}

/** The canonical text of an address (RFC 5952 for IPv6), as the IPAM must answer. */
function canonical(family: Family, v: bigint): string {
  const bytes: number[] = [];
  for (let i = WIDTH[family] / 8 - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(8 * i)) & 255n));
  const addr = ipaddr.fromByteArray(bytes);
  return addr.kind() === "ipv6" ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/** Reserved by Docker: the IPv4 network and broadcast addresses (not /31, /32), IPv6 `::0`. */
function reserved(n: Net, v: bigint): boolean {
  if (n.family === 6) return v === n.network;
  return n.bits < 31 && (v === n.network || v === last(n));
}

// --- the universe the operations draw from ---------------------------------------------------

/** Small predefined pools: four /28 (local), four /29 (global), four /124 (local IPv6). */
const LOCAL_POOLS = [{ base: "10.1.0.0/26", size: 28 }];
const GLOBAL_POOLS = [{ base: "10.1.0.0/27", size: 29 }];
const V6_POOLS = [{ base: "fd00:1::/122", size: 124 }];

/** Explicit subnets: inside, across and outside the predefined bases, some overlapping. */
const SUBNETS: Record<Family, Net[]> = {
  4: [
    "10.1.0.0/28",
    "10.1.0.16/28",
    "10.1.0.32/29",
    "10.1.0.0/27",
    "10.1.0.48/30",
    "10.1.0.52/31",
    "10.1.0.54/32",
    "10.1.0.64/28",
    "10.1.0.72/29",
  ].map(net),
  6: [
    "fd00:1::/124",
    "fd00:1::10/124",
    "fd00:1::20/125",
    "fd00:1::/123",
    "fd00:1::28/126",
    "fd00:1::2c/127",
    "fd00:2::/124",
  ].map(net),
};

const SPACES = [LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE];

/** Predefined pools per space and family, as [base, split size]. */
const PREDEFINED: Record<string, Record<Family, [Net, number][]>> = {
  [LOCAL_ADDRESS_SPACE]: {
    4: LOCAL_POOLS.map((p) => [net(p.base), p.size]),
    6: V6_POOLS.map((p) => [net(p.base), p.size]),
  },
  [GLOBAL_ADDRESS_SPACE]: { 4: GLOBAL_POOLS.map((p) => [net(p.base), p.size]), 6: [] },
};

// --- the model --------------------------------------------------------------------------------

interface MSubnet {
  space: string;
  net: Net;
  /** Held by a pool without ip-range. */
  held: boolean;
  /** The ip-ranges (cidr) of the pools sharing it. */
  ranges: Set<string>;
  /** Live addresses and the pool id that took each. */
  live: Map<bigint, string>;
}

interface MPool {
  id: string;
  subnet: MSubnet;
  range?: Net;
  serial: boolean;
  cursor?: bigint;
  gateway?: bigint;
}

class Model {
  readonly subnets: MSubnet[] = [];
  readonly pools = new Map<string, MPool>();

  subnetOf(space: string, n: Net): MSubnet | undefined {
    return this.subnets.find((s) =>
      s.space === space && s.net.family === n.family && s.net.network === n.network &&
      s.net.bits === n.bits
    );
  }

  /** The first predefined subnet of the split size that overlaps nothing allocated. */
  predefined(space: string, family: Family): Net | undefined {
    const taken = this.subnets.filter((s) => s.space === space).map((s) => s.net);
    for (const [base, bits] of PREDEFINED[space][family]) {
      const step = 1n << BigInt(WIDTH[family] - bits);
      for (let c = base.network; c + step - 1n <= last(base); c += step) {
        const cand = { family, network: c, bits };
        if (!taken.some((t) => overlaps(t, cand))) return cand;
      }
    }
    return undefined;
  }

  /** The next automatic address of a pool (a linear scan), if any. */
  nextAddress(p: MPool): bigint | undefined {
    const r = p.range ?? p.subnet.net;
    const free = (v: bigint) => !reserved(p.subnet.net, v) && !p.subnet.live.has(v);
    const scan = (from: bigint, to: bigint) => {
      for (let v = from; v <= to; v++) if (free(v)) return v;
      return undefined;
    };
    if (p.serial && p.cursor !== undefined) {
      return scan(p.cursor + 1n, last(r)) ?? scan(r.network, p.cursor);
    }
    return scan(r.network, last(r));
  }

  /** What requestAddress must do: the address, or the error class. */
  request(p: MPool, preferred?: bigint): bigint | ErrorClass {
    const s = p.subnet;
    if (preferred === undefined) return this.nextAddress(p) ?? ForbiddenError;
    if (!inside(s.net, preferred) || reserved(s.net, preferred)) return InvalidArgumentError;
    if (s.live.has(preferred)) return ForbiddenError;
    return preferred;
  }

  releasePool(p: MPool): void {
    this.pools.delete(p.id);
    const s = p.subnet;
    for (const [v, owner] of s.live) if (owner === p.id) s.live.delete(v);
    if (p.range) s.ranges.delete(cidr(p.range));
    else s.held = false;
    if (!s.held && s.ranges.size === 0) this.subnets.splice(this.subnets.indexOf(s), 1);
  }
}

// --- operations -------------------------------------------------------------------------------

type Op =
  | {
    k: "pool";
    space: number;
    v6: boolean;
    /** An index into SUBNETS, or -1: a predefined pool. */
    subnet: number;
    /** An ip-range: prefix length above the subnet's, and which one of that size. */
    range?: { extra: number; which: number; outside: boolean };
    serial: boolean;
    /** The gateway: none, the next free address, or an offset into the subnet. */
    gateway: "none" | "auto" | number;
    wrongFamily: boolean;
  }
  | { k: "any"; pool: number; burst: number }
  | { k: "specific"; pool: number; offset: number; taken: boolean; foreign: boolean }
  | { k: "release"; pool: number; pick: number; live: boolean; retake: boolean }
  | { k: "releasePool"; pool: number }
  | { k: "unknown" };

/** True `yes` times in `yes + no`. */
function sometimes(yes: number, no: number): fc.Arbitrary<boolean> {
  return fc.oneof({ weight: yes, arbitrary: fc.constant(true) }, {
    weight: no,
    arbitrary: fc.constant(false),
  });
}

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("pool" as const),
      space: fc.integer({ min: 0, max: 1 }),
      v6: fc.boolean(),
      subnet: fc.integer({ min: -1, max: 8 }),
      range: fc.option(
        fc.record({ extra: fc.nat(4), which: fc.nat(), outside: sometimes(1, 6) }),
        { nil: undefined },
      ),
      serial: fc.boolean(),
      gateway: fc.oneof(fc.constant("none" as const), fc.constant("auto" as const), fc.nat(20)),
      wrongFamily: sometimes(1, 15),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant("any" as const),
      pool: fc.nat(),
      burst: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("specific" as const),
      pool: fc.nat(),
      offset: fc.integer({ min: -2, max: 20 }),
      taken: fc.boolean(),
      foreign: sometimes(1, 8),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("release" as const),
      pool: fc.nat(),
      pick: fc.nat(),
      live: sometimes(4, 1),
      retake: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("releasePool" as const), pool: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unknown" as const) }) },
);

/** Runs `p`; its value, or the error it threw (which must be a typed, one-line one). */
async function outcome<T>(p: Promise<T>): Promise<{ ok: T } | { err: Error }> {
  try {
    return { ok: await p };
  } catch (err) {
    assert.ok(
      err instanceof InvalidArgumentError || err instanceof ForbiddenError ||
        err instanceof NotFoundError,
      `an untyped error: ${err}`,
    );
    assert.ok(!err.message.includes("\n") && !err.message.endsWith("."), err.message);
    return { err };
  }
}

function assertError(r: { ok: unknown } | { err: Error }, cls: ErrorClass, what: string): void {
  assert.ok("err" in r, `${what}: expected ${cls.name}, got ${JSON.stringify(r)}`);
  assert.ok(r.err instanceof cls, `${what}: expected ${cls.name}, got ${r.err}`);
}

/** The checker of one run: the IPAM, the model, and the live gateways. */
class Run {
  readonly ipam: IpamDriver & { snapshot(): unknown };
  readonly model = new Model();
  readonly log: string[] = [];
  /** How often each outcome was reached, to show the runs reach them. */
  readonly seen = { exhausted: 0, taken: 0, invalid: 0, addresses: 0 };

  constructor() {
    this.ipam = createDefaultIpam({
      localPools: LOCAL_POOLS,
      globalPools: GLOBAL_POOLS,
      v6Pools: V6_POOLS,
    });
  }

  /** The model pool a seed picks, or undefined (no pool). */
  pick(seed: number): MPool | undefined {
    const ids = [...this.model.pools.keys()];
    return ids.length ? this.model.pools.get(ids[seed % ids.length]) : undefined;
  }

  /**
   * requestAddress on a pool, against the model: the same address or error; and, for an
   * address, Docker's rules whatever the model says.
   */
  async request(p: MPool, preferred?: bigint, gateway = false): Promise<bigint | undefined> {
    const s = p.subnet;
    const fam = s.net.family;
    const want = this.model.request(p, preferred);
    const pref = preferred === undefined ? undefined : text(fam, preferred);
    const what = `requestAddress(${p.id}, ${pref ?? "any"})`;
    this.log.push(what);
    const r = await outcome(this.ipam.requestAddress(p.id, pref, { gateway }));
    if (typeof want !== "bigint") {
      assertError(r, want, what);
      if (want === ForbiddenError) this.seen[preferred === undefined ? "exhausted" : "taken"]++;
      else this.seen.invalid++;
      return undefined;
    }
    this.seen.addresses++;
    assert.ok("ok" in r, `${what}: expected ${text(fam, want)}, got ${"err" in r && r.err}`);
    const [addrText, bits] = r.ok.split("/");
    const v = toBig(ipaddr.parse(addrText));
    assert.equal(r.ok, `${canonical(fam, v)}/${s.net.bits}`, `${what}: canonical, pool's length`);
    assert.equal(Number(bits), s.net.bits);
    // Docker's rules, independently of the model's choice
    assert.ok(inside(s.net, v), `${what}: ${r.ok} outside ${cidr(s.net)}`);
    assert.ok(!s.live.has(v), `${what}: ${r.ok} is already live`);
    assert.ok(!reserved(s.net, v), `${what}: ${r.ok} is reserved`);
    if (preferred === undefined) {
      if (p.range) assert.ok(inside(p.range, v), `${what}: ${r.ok} outside ${cidr(p.range)}`);
      for (const q of this.model.pools.values()) {
        if (q.subnet === s && q.gateway !== undefined) {
          assert.notEqual(v, q.gateway, `${what}: the gateway of ${q.id}`);
        }
      }
    }
    assert.equal(text(fam, v), text(fam, want), `${what}: the model's choice`);
    s.live.set(v, p.id);
    if (preferred === undefined && p.serial) p.cursor = v;
    return v;
  }

  async step(o: Op): Promise<void> {
    const m = this.model;
    switch (o.k) {
      case "pool": {
        const space = SPACES[o.space];
        const fam: Family = o.v6 ? 6 : 4;
        const list = SUBNETS[fam];
        const subnet = o.subnet < 0 ? undefined : list[o.subnet % list.length];
        let range: Net | undefined;
        if (subnet && o.range) {
          const bits = Math.min(WIDTH[fam], subnet.bits + o.range.extra);
          const count = 1n << BigInt(bits - subnet.bits);
          const step = 1n << BigInt(WIDTH[fam] - bits);
          const at = BigInt(o.range.which) % count;
          // outside: the same size, just past the subnet
          const network = o.range.outside ? last(subnet) + 1n : subnet.network + at * step;
          range = { family: fam, network, bits };
        }
        const v6 = o.wrongFamily ? !o.v6 : o.v6;
        const req = {
          addressSpace: space,
          pool: subnet && cidr(subnet),
          subPool: range && cidr(range),
          v6,
          options: o.serial ? { "com.docker.network.ipam.serial": "true" } : undefined,
        };
        const what = `requestPool(${JSON.stringify(req)})`;
        this.log.push(what);
        const r = await outcome(this.ipam.requestPool(req));
        // the model's verdict
        let want: Net | ErrorClass;
        let shared: MSubnet | undefined;
        if (!subnet) want = m.predefined(space, v6 ? 6 : 4) ?? ForbiddenError;
        else if (o.wrongFamily || (range && !inside(subnet, range.network))) {
          want = InvalidArgumentError;
        } else {
          shared = range ? m.subnetOf(space, subnet) : undefined;
          if (shared) want = shared.ranges.has(cidr(range!)) ? ForbiddenError : subnet;
          else {
            const hit = m.subnets.some((s) => s.space === space && overlaps(s.net, subnet));
            want = hit ? ForbiddenError : subnet;
          }
        }
        if (typeof want === "function") {
          assertError(r, want, what);
          return;
        }
        assert.ok("ok" in r, `${what}: expected ${cidr(want)}, got ${"err" in r && r.err}`);
        const got = net(r.ok.pool);
        assert.deepEqual(got, want, `${what}: the pool`);
        assert.ok(!m.pools.has(r.ok.poolId), `${what}: pool id ${r.ok.poolId} is live already`);
        assert.equal(
          r.ok.poolId,
          `${space}/${r.ok.pool}` +
            (range ? `/${canonical(fam, range.network)}/${range.bits}` : ""),
        );
        const s = shared ?? m.subnetOf(space, want) ??
          { space, net: want, held: false, ranges: new Set(), live: new Map() };
        if (!m.subnets.includes(s)) m.subnets.push(s);
        if (range) s.ranges.add(cidr(range));
        else s.held = true;
        const p: MPool = { id: r.ok.poolId, subnet: s, range, serial: o.serial };
        m.pools.set(p.id, p);
        if (o.gateway !== "none") {
          // the gateway: requested right after the pool, as libnetwork does
          const pref = o.gateway === "auto" ? undefined : s.net.network + BigInt(o.gateway);
          const gw = await this.request(p, pref, true);
          if (gw !== undefined) p.gateway = gw;
        }
        return;
      }
      case "any": {
        const p = this.pick(o.pool);
        if (!p) return;
        // a burst of concurrent requests: each runs whole, in call order
        const before = new Map(p.subnet.live);
        const wants: (bigint | ErrorClass)[] = [];
        const sim: MPool = { ...p, subnet: { ...p.subnet, live: new Map(before) } };
        for (let i = 0; i < o.burst; i++) {
          const w = m.request(sim);
          wants.push(w);
          if (typeof w === "bigint") {
            sim.subnet.live.set(w, p.id);
            if (sim.serial) sim.cursor = w;
          }
        }
        const all = await Promise.all(
          wants.map(() => outcome(this.ipam.requestAddress(p.id))),
        );
        this.log.push(`${o.burst} x requestAddress(${p.id})`);
        const seen = new Set<string>();
        all.forEach((r, i) => {
          const w = wants[i];
          if (typeof w !== "bigint") {
            this.seen.exhausted++;
            return assertError(r, w, `burst ${i}`);
          }
          this.seen.addresses++;
          assert.ok("ok" in r, `burst ${i}: ${"err" in r && r.err}`);
          const v = toBig(ipaddr.parse(r.ok.split("/")[0]));
          assert.ok(!seen.has(r.ok) && !before.has(v), `burst ${i}: ${r.ok} handed out twice`);
          assert.ok(!reserved(p.subnet.net, v) && inside(p.range ?? p.subnet.net, v), r.ok);
          assert.equal(v, w, `burst ${i}: the model's choice`);
          seen.add(r.ok);
          p.subnet.live.set(v, p.id);
          if (p.serial) p.cursor = v;
        });
        return;
      }
      case "specific": {
        const p = this.pick(o.pool);
        if (!p) return;
        if (o.foreign) {
          // an address of the other family: outside the pool, for both calls
          const other = p.subnet.net.family === 4
            ? `fd00:1::${o.offset + 2}`
            : `10.1.0.${o.offset + 2}`;
          const what = `${p.id} and ${other}`;
          assertError(
            await outcome(this.ipam.requestAddress(p.id, other)),
            InvalidArgumentError,
            what,
          );
          assertError(
            await outcome(this.ipam.releaseAddress(p.id, other)),
            InvalidArgumentError,
            what,
          );
          this.seen.invalid++;
          return;
        }
        const live = [...p.subnet.live.keys()];
        const v = o.taken && live.length
          ? live[(o.offset + 2) % live.length]
          : p.subnet.net.network + BigInt(o.offset);
        await this.request(p, v);
        return;
      }
      case "release": {
        const p = this.pick(o.pool);
        if (!p) return;
        const s = p.subnet;
        const live = [...s.live.keys()];
        const v = o.live && live.length
          ? live[o.pick % live.length]
          : s.net.network + BigInt(o.pick % 24) - 2n;
        const what = `releaseAddress(${p.id}, ${text(s.net.family, v)})`;
        this.log.push(what);
        const r = await outcome(this.ipam.releaseAddress(p.id, text(s.net.family, v)));
        if (!inside(s.net, v)) return assertError(r, InvalidArgumentError, what);
        assert.ok("ok" in r, `${what}: ${"err" in r && r.err}`);
        s.live.delete(v);
        for (const q of m.pools.values()) {
          if (q.subnet === s && q.gateway === v) q.gateway = undefined;
        }
        // released: available again, to this very pool
        if (o.retake && !reserved(s.net, v)) assert.equal(await this.request(p, v), v);
        return;
      }
      case "releasePool": {
        const p = this.pick(o.pool);
        if (!p) return;
        this.log.push(`releasePool(${p.id})`);
        const r = await outcome(this.ipam.releasePool(p.id));
        assert.ok("ok" in r, `releasePool(${p.id}): ${"err" in r && r.err}`);
        m.releasePool(p);
        // gone: its id is unknown now
        assertError(await outcome(this.ipam.requestAddress(p.id)), NotFoundError, "after release");
        return;
      }
      case "unknown": {
        const id = `${LOCAL_ADDRESS_SPACE}/10.99.0.0/24`;
        assertError(await outcome(this.ipam.requestAddress(id)), NotFoundError, "unknown pool");
        assertError(await outcome(this.ipam.releaseAddress(id, "10.99.0.1")), NotFoundError, id);
        assertError(await outcome(this.ipam.releasePool(id)), NotFoundError, id);
        return;
      }
    }
  }

  /** The IPAM's own view (snapshot) equals the model: subnets, ip-ranges, live addresses. */
  assertState(): void {
    const snap = this.ipam.snapshot() as Record<string, unknown>;
    for (const space of SPACES) {
      const got = (snap[space] as { subnet: string; ipRanges: string[]; allocated: string[] }[])
        .map((s) => ({
          subnet: cidr(net(s.subnet)),
          ranges: s.ipRanges.map((r) => cidr(net(r))).sort(),
          live: s.allocated.map((a) => toBig(ipaddr.parse(a))).sort((a, b) => a < b ? -1 : 1),
        }))
        .sort((a, b) => a.subnet < b.subnet ? -1 : 1);
      const want = this.model.subnets.filter((s) => s.space === space)
        .map((s) => ({
          subnet: cidr(s.net),
          ranges: [...s.ranges].sort(),
          live: [...s.live.keys()].sort((a, b) => a < b ? -1 : 1),
        }))
        .sort((a, b) => a.subnet < b.subnet ? -1 : 1);
      assert.deepEqual(got, want, `${space} after:\n${this.log.slice(-8).join("\n")}`);
    }
    assert.deepEqual(
      (snap.pools as string[]).slice().sort(),
      [...this.model.pools.keys()].sort(),
    );
  }
}

Deno.test("default IPAM: random pool and address sequences keep Docker's rules (model-checked)", async () => {
  const seen = { exhausted: 0, taken: 0, invalid: 0, addresses: 0, shared: 0, v6: 0 };
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 80, size: "max" }), async (ops) => {
      const run = new Run();
      for (const o of ops) {
        await run.step(o);
        run.assertState();
      }
      for (const k of ["exhausted", "taken", "invalid", "addresses"] as const) {
        seen[k] += run.seen[k];
      }
      seen.shared += run.model.subnets.filter((s) => s.ranges.size + (s.held ? 1 : 0) > 1).length;
      seen.v6 += run.model.subnets.filter((s) => s.net.family === 6 && s.live.size > 0).length;
    }),
    { seed: 2014, numRuns: 400 },
  );
  // the runs reach exhaustion, taken addresses, shared subnets and IPv6 pools
  for (const [k, n] of Object.entries(seen)) assert.ok(n > 0, `${k}: ${JSON.stringify(seen)}`);
});
