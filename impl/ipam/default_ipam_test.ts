import assert from "node:assert/strict";
import { createDefaultIpam, parseDefaultPool, type PredefinedPool } from "./mod.ts";
import { ForbiddenError, InvalidArgumentError, NotFoundError } from "../model/errors.ts";
import type { IpamDriver, PoolRequest } from "../driver_api/ipam_driver.ts";

const L = "LocalDefault";
const G = "GlobalDefault";

type ErrorClass = new (...args: any[]) => Error;

async function rejectsWith(p: Promise<unknown>, cls: ErrorClass, text: string | RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (typeof text === "string") assert.ok(e.message.includes(text), e.message);
    else assert.match(e.message, text);
    assert.ok(!e.message.includes("\n") && !e.message.endsWith("."), e.message);
    return true;
  });
}

function throwsWith(f: () => unknown, cls: ErrorClass, text: string) {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.ok(e.message.includes(text), e.message);
    return true;
  });
}

function req(addressSpace: string, extra: Partial<PoolRequest> = {}): PoolRequest {
  return { addressSpace, v6: false, ...extra };
}

async function poolOf(ipam: IpamDriver, pool: string, subPool?: string, serial = false) {
  const r = await ipam.requestPool(
    req(L, {
      pool,
      subPool,
      v6: pool.includes(":"),
      options: serial ? { "com.docker.network.ipam.serial": "true" } : undefined,
    }),
  );
  return r.poolId;
}

async function take(ipam: IpamDriver, id: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await ipam.requestAddress(id));
  return out;
}

Deno.test("createDefaultIpam() describes itself like libnetwork's default IPAM", () => {
  const ipam = createDefaultIpam();
  assert.equal(ipam.type, "default");
  assert.deepEqual(ipam.capabilities(), { requiresRequestReplay: true });
  assert.deepEqual(ipam.defaultAddressSpaces(), { local: L, global: G });
});

Deno.test("requestPool() takes the first free predefined pool", async (t) => {
  await t.step("local IPv4 follows Docker's order", async () => {
    const ipam = createDefaultIpam();
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await ipam.requestPool(req(L))).pool);
    assert.deepEqual(got, [
      "172.17.0.0/16",
      "172.18.0.0/16",
      "172.19.0.0/16",
      "172.20.0.0/16",
      "172.21.0.0/16",
    ]);
    const r = await ipam.requestPool(req(L));
    assert.equal(r.poolId, "LocalDefault/172.22.0.0/16");
    assert.deepEqual(r.meta, {});
  });

  await t.step("after the 172.x pools come 192.168.x.0/20 pools", async () => {
    const ipam = createDefaultIpam();
    for (let i = 0; i < 15; i++) await ipam.requestPool(req(L));
    assert.equal((await ipam.requestPool(req(L))).pool, "192.168.0.0/20");
    assert.equal((await ipam.requestPool(req(L))).pool, "192.168.16.0/20");
  });

  await t.step("global IPv4 splits 10.0.0.0/8 into /24s", async () => {
    const ipam = createDefaultIpam();
    assert.equal((await ipam.requestPool(req(G))).poolId, "GlobalDefault/10.0.0.0/24");
    assert.equal((await ipam.requestPool(req(G))).pool, "10.0.1.0/24");
  });

  await t.step("address spaces are independent", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(G, { pool: "172.17.0.0/16" }));
    assert.equal((await ipam.requestPool(req(L))).pool, "172.17.0.0/16");
  });

  await t.step("a released pool is reused", async () => {
    const ipam = createDefaultIpam();
    const a = await ipam.requestPool(req(L));
    await ipam.requestPool(req(L));
    await ipam.releasePool(a.poolId);
    assert.equal((await ipam.requestPool(req(L))).pool, "172.17.0.0/16");
  });
});

Deno.test("requestPool() skips predefined pools overlapping user subnets", async (t) => {
  await t.step("a /24 inside the first pool skips it", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(L, { pool: "172.17.5.0/24" }));
    assert.equal((await ipam.requestPool(req(L))).pool, "172.18.0.0/16");
  });

  await t.step("a /15 covering two splits skips both", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(L, { pool: "172.20.0.0/15" }));
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await ipam.requestPool(req(L))).pool);
    assert.deepEqual(got, ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16", "172.22.0.0/16"]);
  });

  await t.step("a supernet of several pools skips them all", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(L, { pool: "172.16.0.0/12" }));
    assert.equal((await ipam.requestPool(req(L))).pool, "192.168.0.0/20");
  });

  await t.step("holes between user subnets are found", async () => {
    const ipam = createDefaultIpam({ globalPools: [{ base: "10.0.0.0/8", size: 24 }] });
    await ipam.requestPool(req(G, { pool: "10.0.0.0/23" }));
    await ipam.requestPool(req(G, { pool: "10.0.3.0/24" }));
    assert.equal((await ipam.requestPool(req(G))).pool, "10.0.2.0/24");
    assert.equal((await ipam.requestPool(req(G))).pool, "10.0.4.0/24");
  });
});

Deno.test("requestPool() reports exhausted predefined pools", async () => {
  const ipam = createDefaultIpam({
    localPools: [{ base: "10.99.0.0/23", size: 24 }, { base: "10.98.0.0/24", size: 24 }],
  });
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await ipam.requestPool(req(L))).pool);
  assert.deepEqual(got, ["10.99.0.0/24", "10.99.1.0/24", "10.98.0.0/24"]);
  await rejectsWith(
    ipam.requestPool(req(L)),
    ForbiddenError,
    "all predefined address pools have been fully subnetted",
  );
  // the global space is not affected
  assert.equal((await ipam.requestPool(req(G))).pool, "10.0.0.0/24");
});

Deno.test("requestPool() with v6 takes the IPv6 predefined pools", async (t) => {
  await t.step("the fixed ULA /48 is split into /64s", async () => {
    const ipam = createDefaultIpam();
    const a = await ipam.requestPool(req(L, { v6: true }));
    assert.equal(a.pool, "fd00:c0ff:ee00::/64");
    assert.equal(a.poolId, "LocalDefault/fd00:c0ff:ee00::/64");
    assert.equal((await ipam.requestPool(req(L, { v6: true }))).pool, "fd00:c0ff:ee00:1::/64");
    // IPv4 allocation is unaffected
    assert.equal((await ipam.requestPool(req(L))).pool, "172.17.0.0/16");
  });

  await t.step("custom v6 pools are used and exhausted", async () => {
    const ipam = createDefaultIpam({ v6Pools: [{ base: "fd12::/63", size: 64 }] });
    assert.equal((await ipam.requestPool(req(L, { v6: true }))).pool, "fd12::/64");
    assert.equal((await ipam.requestPool(req(L, { v6: true }))).pool, "fd12:0:0:1::/64");
    await rejectsWith(
      ipam.requestPool(req(L, { v6: true })),
      ForbiddenError,
      "all predefined address pools have been fully subnetted",
    );
  });

  await t.step("the global space has no IPv6 pools by default", async () => {
    const ipam = createDefaultIpam();
    await rejectsWith(
      ipam.requestPool(req(G, { v6: true })),
      ForbiddenError,
      "No free IPv6 pool in address space GlobalDefault",
    );
  });
});

Deno.test("requestPool() with an explicit subnet", async (t) => {
  await t.step("returns the subnet and its pool id", async () => {
    const ipam = createDefaultIpam();
    const r = await ipam.requestPool(req(L, { pool: "10.1.0.0/16" }));
    assert.deepEqual(r, { poolId: "LocalDefault/10.1.0.0/16", pool: "10.1.0.0/16", meta: {} });
    const s = await ipam.requestPool(req(L, { pool: "10.2.0.0/16", subPool: "10.2.1.0/24" }));
    assert.equal(s.poolId, "LocalDefault/10.2.0.0/16/10.2.1.0/24");
    assert.equal(s.pool, "10.2.0.0/16");
    const v6 = await ipam.requestPool(req(G, { pool: "2001:db8::/64", v6: true }));
    assert.equal(v6.poolId, "GlobalDefault/2001:db8::/64");
  });

  await t.step("an overlapping subnet is rejected naming both", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(L, { pool: "10.1.2.0/24" }));
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16" })),
      ForbiddenError,
      "Pool 10.1.0.0/16 overlaps with pool 10.1.2.0/24 on this address space",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.2.0/24" })),
      ForbiddenError,
      "Pool 10.1.2.0/24 overlaps with pool 10.1.2.0/24 on this address space",
    );
    // an ip-range request whose (different) parent overlaps is rejected too
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", subPool: "10.1.9.0/24" })),
      ForbiddenError,
      "Pool 10.1.0.0/16 overlaps with pool 10.1.2.0/24",
    );
    // a predefined pool blocks a user subnet as well
    const p = await ipam.requestPool(req(L));
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "172.17.1.0/24" })),
      ForbiddenError,
      "overlaps with pool 172.17.0.0/16",
    );
    await ipam.releasePool(p.poolId);
    await ipam.requestPool(req(L, { pool: "172.17.1.0/24" }));
  });

  await t.step("the same subnet in another address space is fine", async () => {
    const ipam = createDefaultIpam();
    await ipam.requestPool(req(L, { pool: "10.1.0.0/16" }));
    await ipam.requestPool(req(G, { pool: "10.1.0.0/16" }));
  });

  await t.step("a released subnet can be requested again", async () => {
    const ipam = createDefaultIpam();
    const r = await ipam.requestPool(req(L, { pool: "10.1.0.0/16" }));
    await ipam.releasePool(r.poolId);
    await ipam.requestPool(req(L, { pool: "10.1.0.0/16" }));
  });
});

Deno.test("requestPool() rejects bad arguments", async (t) => {
  const ipam = createDefaultIpam();
  await t.step("bad CIDRs", async () => {
    for (const pool of ["10.1.0.0", "10.1.0.1/16", "10.1.0.0/33", "bogus/8", "", " 10.1.0.0/16"]) {
      if (pool === "") continue; // empty means "any predefined pool"
      await rejectsWith(ipam.requestPool(req(L, { pool })), InvalidArgumentError, "Invalid subnet");
    }
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", subPool: "10.1.0.1/24" })),
      InvalidArgumentError,
      "Invalid ip-range",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "fd00::1/64", v6: true })),
      InvalidArgumentError,
      "host bits are set",
    );
  });

  await t.step("family mismatch", async () => {
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", v6: true })),
      InvalidArgumentError,
      "Invalid subnet 10.1.0.0/16: it is IPv4 but an IPv6 pool was requested",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "fd00::/64" })),
      InvalidArgumentError,
      "it is IPv6 but an IPv4 pool was requested",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", subPool: "fd00::/64" })),
      InvalidArgumentError,
      "Invalid ip-range fd00::/64",
    );
  });

  await t.step("ip-range outside the subnet or without one", async () => {
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", subPool: "10.2.0.0/24" })),
      InvalidArgumentError,
      "Invalid ip-range 10.2.0.0/24: not inside pool 10.1.0.0/16",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16", subPool: "10.0.0.0/8" })),
      InvalidArgumentError,
      "not inside pool",
    );
    await rejectsWith(
      ipam.requestPool(req(L, { subPool: "10.1.0.0/24" })),
      InvalidArgumentError,
      "ip-range 10.1.0.0/24 given without a subnet",
    );
  });

  await t.step("unknown address space", async () => {
    await rejectsWith(
      ipam.requestPool(req("Nowhere")),
      InvalidArgumentError,
      'Unknown address space "Nowhere"',
    );
  });

  await t.step("nothing was allocated by the failures", async () => {
    assert.equal((await ipam.requestPool(req(L, { pool: "10.1.0.0/16" }))).pool, "10.1.0.0/16");
    assert.equal((await ipam.requestPool(req(L))).pool, "172.17.0.0/16");
  });
});

Deno.test("requestPool() shares a parent subnet between ip-range pools", async (t) => {
  await t.step("ip-ranges of an allocated subnet share its addresses", async () => {
    const ipam = createDefaultIpam();
    const whole = await poolOf(ipam, "10.1.0.0/24");
    const a = await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/30");
    const b = await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/29");
    assert.deepEqual(await take(ipam, whole, 2), ["10.1.0.1/24", "10.1.0.2/24"]);
    assert.deepEqual(await take(ipam, a, 1), ["10.1.0.3/24"]);
    await rejectsWith(ipam.requestAddress(a), ForbiddenError, "no available addresses");
    assert.deepEqual(await take(ipam, b, 4), [
      "10.1.0.4/24",
      "10.1.0.5/24",
      "10.1.0.6/24",
      "10.1.0.7/24",
    ]);
    assert.deepEqual(await take(ipam, whole, 1), ["10.1.0.8/24"]);
  });

  await t.step("two ip-range pools without a plain one share and auto-release", async () => {
    const ipam = createDefaultIpam();
    const a = await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/25");
    const b = await poolOf(ipam, "10.1.0.0/24", "10.1.0.128/25");
    assert.equal(await ipam.requestAddress(a), "10.1.0.1/24");
    assert.equal(await ipam.requestAddress(b), "10.1.0.128/24");
    // a preferred address is unique across sharers
    await rejectsWith(ipam.requestAddress(b, "10.1.0.1"), ForbiddenError, "already in use");
    await ipam.releasePool(a);
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/16" })),
      ForbiddenError,
      "overlaps with pool 10.1.0.0/24",
    );
    await ipam.releasePool(b);
    await poolOf(ipam, "10.1.0.0/16");
  });

  await t.step("the parent outlives its plain pool while ip-ranges remain", async () => {
    const ipam = createDefaultIpam();
    const whole = await poolOf(ipam, "10.1.0.0/24");
    const a = await poolOf(ipam, "10.1.0.0/24", "10.1.0.64/26");
    assert.equal(await ipam.requestAddress(a), "10.1.0.64/24");
    await ipam.releasePool(whole);
    await rejectsWith(ipam.requestAddress(whole), NotFoundError, "not found");
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/23" })),
      ForbiddenError,
      "overlaps",
    );
    // as in Docker, the plain pool cannot be requested again while the parent is shared
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/24" })),
      ForbiddenError,
      "Pool 10.1.0.0/24 overlaps with pool 10.1.0.0/24 on this address space",
    );
    await ipam.releasePool(a);
    await poolOf(ipam, "10.1.0.0/23");
  });

  await t.step("the same subnet and ip-range twice is an overlap", async () => {
    const ipam = createDefaultIpam();
    await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/25");
    await rejectsWith(
      ipam.requestPool(req(L, { pool: "10.1.0.0/24", subPool: "10.1.0.0/25" })),
      ForbiddenError,
      "Pool 10.1.0.0/24 overlaps with pool 10.1.0.0/24 on this address space: " +
        "ip-range 10.1.0.0/25 is already allocated",
    );
  });

  await t.step("releasing a sharer frees the addresses it allocated", async () => {
    const ipam = createDefaultIpam();
    const whole = await poolOf(ipam, "10.1.0.0/24");
    const a = await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/28");
    assert.deepEqual(await take(ipam, a, 2), ["10.1.0.1/24", "10.1.0.2/24"]);
    assert.equal(await ipam.requestAddress(whole), "10.1.0.3/24");
    await ipam.releasePool(a);
    assert.deepEqual(await take(ipam, whole, 3), ["10.1.0.1/24", "10.1.0.2/24", "10.1.0.4/24"]);
  });
});

Deno.test("requestAddress() hands out the lowest free address", async (t) => {
  await t.step("the gateway gets .1, then .2, .3", async () => {
    const ipam = createDefaultIpam();
    const { poolId } = await ipam.requestPool(req(L));
    assert.equal(await ipam.requestAddress(poolId, undefined, { gateway: true }), "172.17.0.1/16");
    assert.deepEqual(await take(ipam, poolId, 2), ["172.17.0.2/16", "172.17.0.3/16"]);
  });

  await t.step("a released address is reused first", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24");
    await take(ipam, id, 5);
    await ipam.releaseAddress(id, "10.1.0.3");
    await ipam.releaseAddress(id, "10.1.0.2");
    assert.deepEqual(await take(ipam, id, 3), ["10.1.0.2/24", "10.1.0.3/24", "10.1.0.6/24"]);
  });

  await t.step("an empty preferred address means none", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24");
    assert.equal(await ipam.requestAddress(id, ""), "10.1.0.1/24");
  });

  await t.step("the prefix length is the parent's, also with an ip-range", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/16", "10.1.7.0/24");
    assert.equal(await ipam.requestAddress(id), "10.1.7.0/16");
  });
});

Deno.test("requestAddress() in serial mode goes round robin", async (t) => {
  await t.step("next free after the last one, not the lowest free", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24", undefined, true);
    assert.deepEqual(await take(ipam, id, 3), ["10.1.0.1/24", "10.1.0.2/24", "10.1.0.3/24"]);
    await ipam.releaseAddress(id, "10.1.0.2");
    assert.equal(await ipam.requestAddress(id), "10.1.0.4/24");
  });

  await t.step("wraps around at the end of the pool", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/29", undefined, true);
    assert.deepEqual(await take(ipam, id, 6), [1, 2, 3, 4, 5, 6].map((i) => `10.1.0.${i}/29`));
    await rejectsWith(ipam.requestAddress(id), ForbiddenError, "no available addresses");
    await ipam.releaseAddress(id, "10.1.0.5");
    await ipam.releaseAddress(id, "10.1.0.2");
    assert.equal(await ipam.requestAddress(id), "10.1.0.2/29");
    assert.equal(await ipam.requestAddress(id), "10.1.0.5/29");
  });

  await t.step("works within an ip-range", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24", "10.1.0.16/30", true);
    assert.deepEqual(await take(ipam, id, 3), ["10.1.0.16/24", "10.1.0.17/24", "10.1.0.18/24"]);
    await ipam.releaseAddress(id, "10.1.0.16");
    assert.equal(await ipam.requestAddress(id), "10.1.0.19/24");
    assert.equal(await ipam.requestAddress(id), "10.1.0.16/24");
  });

  await t.step('only the value "true" turns it on', async () => {
    const ipam = createDefaultIpam();
    const { poolId } = await ipam.requestPool(
      req(L, { pool: "10.1.0.0/24", options: { "com.docker.network.ipam.serial": "false" } }),
    );
    await take(ipam, poolId, 3);
    await ipam.releaseAddress(poolId, "10.1.0.2");
    assert.equal(await ipam.requestAddress(poolId), "10.1.0.2/24");
  });
});

Deno.test("requestAddress() stays inside the ip-range", async (t) => {
  await t.step("addresses come from the range, then it is exhausted", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24", "10.1.0.8/30");
    assert.deepEqual(await take(ipam, id, 4), [8, 9, 10, 11].map((i) => `10.1.0.${i}/24`));
    await rejectsWith(
      ipam.requestAddress(id),
      ForbiddenError,
      "no available addresses on this pool 10.1.0.0/24 (ip-range 10.1.0.8/30)",
    );
  });

  await t.step("a preferred address may be outside the range but inside the subnet", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/24", "10.1.0.8/30");
    assert.equal(await ipam.requestAddress(id, "10.1.0.200"), "10.1.0.200/24");
    await rejectsWith(ipam.requestAddress(id, "10.1.1.1"), InvalidArgumentError, "outside pool");
  });

  await t.step("the parent's network and broadcast addresses stay reserved", async () => {
    const ipam = createDefaultIpam();
    const low = await poolOf(ipam, "10.1.0.0/24", "10.1.0.0/30");
    assert.deepEqual(await take(ipam, low, 3), ["10.1.0.1/24", "10.1.0.2/24", "10.1.0.3/24"]);
    await rejectsWith(ipam.requestAddress(low), ForbiddenError, "no available addresses");
    const high = await poolOf(ipam, "10.1.0.0/24", "10.1.0.252/30");
    assert.deepEqual(await take(ipam, high, 3), [252, 253, 254].map((i) => `10.1.0.${i}/24`));
    await rejectsWith(ipam.requestAddress(high), ForbiddenError, "no available addresses");
  });
});

Deno.test("requestAddress() on tiny IPv4 subnets", async (t) => {
  await t.step("a /30 has two addresses", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/30");
    assert.deepEqual(await take(ipam, id, 2), ["10.1.0.1/30", "10.1.0.2/30"]);
    await rejectsWith(
      ipam.requestAddress(id),
      ForbiddenError,
      "no available addresses on this pool 10.1.0.0/30",
    );
  });

  await t.step("a /31 hands out both addresses (RFC 3021)", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/31");
    assert.deepEqual(await take(ipam, id, 2), ["10.1.0.0/31", "10.1.0.1/31"]);
    await rejectsWith(ipam.requestAddress(id), ForbiddenError, "no available addresses");
    await ipam.releaseAddress(id, "10.1.0.1");
    assert.equal(await ipam.requestAddress(id, "10.1.0.1"), "10.1.0.1/31");
  });

  await t.step("a /32 hands out its single address", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.7/32");
    assert.equal(await ipam.requestAddress(id), "10.1.0.7/32");
    await rejectsWith(ipam.requestAddress(id), ForbiddenError, "no available addresses");
    await ipam.releaseAddress(id, "10.1.0.7");
    assert.equal(await ipam.requestAddress(id, "10.1.0.7"), "10.1.0.7/32");
  });
});

Deno.test("requestAddress() on IPv6 pools", async (t) => {
  await t.step("never hands out the subnet-router anycast ::0", async () => {
    const ipam = createDefaultIpam();
    const { poolId } = await ipam.requestPool(req(L, { v6: true }));
    assert.equal(await ipam.requestAddress(poolId), "fd00:c0ff:ee00::1/64");
    assert.equal(await ipam.requestAddress(poolId), "fd00:c0ff:ee00::2/64");
    await rejectsWith(
      ipam.requestAddress(poolId, "fd00:c0ff:ee00::"),
      InvalidArgumentError,
      "Address fd00:c0ff:ee00:: is the subnet-router anycast address of pool fd00:c0ff:ee00::/64",
    );
    // the last address is usable: IPv6 has no broadcast
    assert.equal(
      await ipam.requestAddress(poolId, "fd00:c0ff:ee00:0:ffff:ffff:ffff:ffff"),
      "fd00:c0ff:ee00:0:ffff:ffff:ffff:ffff/64",
    );
  });

  await t.step("preferred addresses are canonicalised and checked", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "2001:db8::/64");
    assert.equal(await ipam.requestAddress(id, "2001:DB8:0:0::0a"), "2001:db8::a/64");
    await rejectsWith(
      ipam.requestAddress(id, "2001:db8::a"),
      ForbiddenError,
      "Address 2001:db8::a already in use",
    );
    await rejectsWith(ipam.requestAddress(id, "2001:db9::1"), InvalidArgumentError, "outside");
    await rejectsWith(ipam.requestAddress(id, "10.0.0.1"), InvalidArgumentError, "outside");
  });

  await t.step("a /127 has one address and a /128 none", async () => {
    const ipam = createDefaultIpam();
    const a = await poolOf(ipam, "fd00::/127");
    assert.equal(await ipam.requestAddress(a), "fd00::1/127");
    await rejectsWith(ipam.requestAddress(a), ForbiddenError, "no available addresses");
    const b = await poolOf(ipam, "fd00::8/128");
    await rejectsWith(ipam.requestAddress(b), ForbiddenError, "no available addresses");
  });
});

Deno.test("requestAddress() rejects bad preferred addresses", async (t) => {
  const ipam = createDefaultIpam();
  const id = await poolOf(ipam, "10.1.0.0/24");
  await t.step("outside the pool", async () => {
    await rejectsWith(
      ipam.requestAddress(id, "10.9.9.9"),
      InvalidArgumentError,
      "Address 10.9.9.9 is outside pool 10.1.0.0/24",
    );
  });
  await t.step("the network address", async () => {
    await rejectsWith(
      ipam.requestAddress(id, "10.1.0.0"),
      InvalidArgumentError,
      "Address 10.1.0.0 is the network address of pool 10.1.0.0/24",
    );
  });
  await t.step("the broadcast address", async () => {
    await rejectsWith(
      ipam.requestAddress(id, "10.1.0.255"),
      InvalidArgumentError,
      "Address 10.1.0.255 is the broadcast address of pool 10.1.0.0/24",
    );
  });
  await t.step("an address in use", async () => {
    assert.equal(await ipam.requestAddress(id, "10.1.0.5"), "10.1.0.5/24");
    await rejectsWith(
      ipam.requestAddress(id, "10.1.0.5"),
      ForbiddenError,
      "Address 10.1.0.5 already in use",
    );
  });
  await t.step("not an address", async () => {
    await rejectsWith(ipam.requestAddress(id, "10.1.0.5/24"), InvalidArgumentError, "Invalid");
    await rejectsWith(ipam.requestAddress(id, "10.1.0.500"), InvalidArgumentError, "Invalid");
  });
  await t.step("a preferred address does not disturb lowest-free order", async () => {
    assert.deepEqual(await take(ipam, id, 5), [1, 2, 3, 4, 6].map((i) => `10.1.0.${i}/24`));
  });
});

Deno.test("releaseAddress() is idempotent and checks its arguments", async () => {
  const ipam = createDefaultIpam();
  const id = await poolOf(ipam, "10.1.0.0/24");
  assert.equal(await ipam.requestAddress(id), "10.1.0.1/24");
  await ipam.releaseAddress(id, "10.1.0.1");
  await ipam.releaseAddress(id, "10.1.0.1");
  await ipam.releaseAddress(id, "10.1.0.77");
  await ipam.releaseAddress(id, "10.1.0.0");
  await ipam.releaseAddress(id, "10.1.0.255");
  assert.equal(await ipam.requestAddress(id), "10.1.0.1/24");
  await rejectsWith(
    ipam.releaseAddress(id, "10.2.0.1"),
    InvalidArgumentError,
    "Address 10.2.0.1 is outside pool 10.1.0.0/24",
  );
  await rejectsWith(ipam.releaseAddress(id, "nope"), InvalidArgumentError, "Invalid address");
});

Deno.test("unknown pool ids are not found", async () => {
  const ipam = createDefaultIpam();
  const id = "LocalDefault/10.1.0.0/24";
  await rejectsWith(ipam.releasePool(id), NotFoundError, `Address pool "${id}" not found`);
  await rejectsWith(ipam.requestAddress(id), NotFoundError, "not found");
  await rejectsWith(ipam.releaseAddress(id, "10.1.0.1"), NotFoundError, "not found");
  await rejectsWith(ipam.releasePool("garbage"), NotFoundError, "not found");
  const real = await poolOf(ipam, "10.1.0.0/24");
  await rejectsWith(ipam.requestAddress(`${real}/10.1.0.0/25`), NotFoundError, "not found");
  await ipam.releasePool(real);
  await rejectsWith(ipam.releasePool(real), NotFoundError, "not found");
  await rejectsWith(ipam.requestAddress(real), NotFoundError, "not found");
});

Deno.test("requestAddress() is safe under concurrency", async (t) => {
  await t.step("50 concurrent requests give 50 distinct addresses", async () => {
    const ipam = createDefaultIpam();
    const { poolId } = await ipam.requestPool(req(L));
    const got = await Promise.all(
      Array.from({ length: 50 }, () => ipam.requestAddress(poolId)),
    );
    assert.equal(new Set(got).size, 50);
    assert.deepEqual(
      [...got].sort(),
      Array.from({ length: 50 }, (_, i) => `172.17.0.${i + 1}/16`).sort(),
    );
  });

  await t.step("a pool of 4 addresses and 10 requests: 2 addresses, 8 clean errors", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.1.0.0/30");
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => ipam.requestAddress(id)),
    );
    const ok = results.filter((r) => r.status === "fulfilled").map((r) => r.value).sort();
    assert.deepEqual(ok, ["10.1.0.1/30", "10.1.0.2/30"]);
    const failed = results.filter((r) => r.status === "rejected");
    assert.equal(failed.length, 8);
    for (const f of failed) {
      assert.ok(f.reason instanceof ForbiddenError);
      assert.equal(
        f.reason.message,
        "Address pool exhausted: no available addresses on this pool 10.1.0.0/30",
      );
    }
  });

  await t.step("concurrent predefined pool requests get distinct pools", async () => {
    const ipam = createDefaultIpam();
    const got = await Promise.all(Array.from({ length: 20 }, () => ipam.requestPool(req(G))));
    assert.equal(new Set(got.map((r) => r.pool)).size, 20);
  });
});

Deno.test("requestAddress() scales to huge pools", async (t) => {
  await t.step("a /8 pool with thousands of addresses", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "10.0.0.0/8");
    const n = 5000;
    const got = await take(ipam, id, n);
    assert.equal(got[0], "10.0.0.1/8");
    assert.equal(got[n - 1], "10.0.19.136/8");
    // punch holes, they are refilled lowest first
    for (const a of ["10.0.3.7", "10.0.1.1", "10.0.15.200"]) await ipam.releaseAddress(id, a);
    assert.deepEqual(await take(ipam, id, 4), [
      "10.0.1.1/8",
      "10.0.3.7/8",
      "10.0.15.200/8",
      "10.0.19.137/8",
    ]);
  });

  await t.step("a /64 and an IPv6 /32 pool", async () => {
    const ipam = createDefaultIpam();
    const id = await poolOf(ipam, "2001:db8::/32");
    assert.equal(await ipam.requestAddress(id), "2001:db8::1/32");
    assert.equal(
      await ipam.requestAddress(id, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
      "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/32",
    );
    const { poolId } = await ipam.requestPool(req(L, { v6: true }));
    assert.equal((await take(ipam, poolId, 3000))[2999], "fd00:c0ff:ee00::bb8/64");
  });

  await t.step("predefined allocation over a /8 split into /24s stays fast", async () => {
    const ipam = createDefaultIpam();
    for (let i = 0; i < 300; i++) await ipam.requestPool(req(G));
    assert.equal((await ipam.requestPool(req(G))).pool, "10.1.44.0/24");
  });
});

Deno.test("parseDefaultPool() parses --default-pool values", async (t) => {
  await t.step("CIDR/SIZE, base=,size= and objects", () => {
    assert.deepEqual(parseDefaultPool("10.10.0.0/16/24"), { base: "10.10.0.0/16", size: 24 });
    assert.deepEqual(parseDefaultPool("base=10.10.0.0/16,size=24"), {
      base: "10.10.0.0/16",
      size: 24,
    });
    assert.deepEqual(parseDefaultPool("size=24,base=10.10.0.0/16"), {
      base: "10.10.0.0/16",
      size: 24,
    });
    assert.deepEqual(parseDefaultPool({ base: "fd00:0::/48", size: 64 }), {
      base: "fd00::/48",
      size: 64,
    });
    assert.deepEqual(parseDefaultPool("10.10.0.0/16/16"), { base: "10.10.0.0/16", size: 16 });
  });

  await t.step("bad values are rejected", () => {
    throwsWith(() => parseDefaultPool("10.10.0.0/16"), InvalidArgumentError, "expected CIDR/SIZE");
    throwsWith(() => parseDefaultPool("10.10.0.0/16/8"), InvalidArgumentError, "shorter");
    throwsWith(() => parseDefaultPool("10.10.0.0/16/33"), InvalidArgumentError, "too long");
    throwsWith(() => parseDefaultPool("10.10.0.1/16/24"), InvalidArgumentError, "host bits");
    throwsWith(() => parseDefaultPool("10.10.0.0/16/x"), InvalidArgumentError, "not a prefix");
    throwsWith(
      () => parseDefaultPool({ base: "10.0.0.0/8", size: 24.5 }),
      InvalidArgumentError,
      "not a prefix",
    );
  });

  await t.step("createDefaultIpam() validates its pools", () => {
    const bad: PredefinedPool[] = [{ base: "10.0.0.0/8", size: 4 }];
    throwsWith(() => createDefaultIpam({ localPools: bad }), InvalidArgumentError, "shorter");
  });

  await t.step("IPv6 entries in localPools serve v6 requests", async () => {
    const ipam = createDefaultIpam({
      localPools: [{ base: "10.5.0.0/16", size: 24 }, { base: "fd99::/48", size: 64 }],
      v6Pools: [],
    });
    assert.equal((await ipam.requestPool(req(L))).pool, "10.5.0.0/24");
    assert.equal((await ipam.requestPool(req(L, { v6: true }))).pool, "fd99::/64");
  });
});

Deno.test("snapshot() shows subnets, ranges and addresses", async () => {
  const ipam = createDefaultIpam();
  const id = await poolOf(ipam, "10.1.0.0/24", "10.1.0.8/29");
  await ipam.requestAddress(id);
  assert.deepEqual(ipam.snapshot(), {
    LocalDefault: [
      { subnet: "10.1.0.0/24", held: false, ipRanges: ["10.1.0.8/29"], allocated: ["10.1.0.8"] },
    ],
    GlobalDefault: [],
    pools: ["LocalDefault/10.1.0.0/24/10.1.0.8/29"],
  });
});
