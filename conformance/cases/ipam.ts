/**
 * IPAM cases: what addresses the implementation hands out, observed inside the sandboxes.
 * @module
 */
import { observeAddrs, observeDefaultGateway } from "../harness/observe.ts";
import { addr, defineCase, type Sandbox, target } from "./framework.ts";

/** Network address + n, as text (IPv4 /24s only, which is what cases use). */
function nth(subnet: string, n: number): string {
  const [base] = subnet.split("/");
  const parts = base.split(".").map(Number);
  parts[3] += n;
  return parts.join(".");
}

async function observedV4(sb: Sandbox): Promise<string[]> {
  return (await observeAddrs(sb.netnsPath)).filter((a) => a.family === "inet").map((a) =>
    `${a.address}/${a.prefixlen}`
  );
}

export const gatewayFirst = defineCase({
  id: "ipam.gateway-first-address",
  area: "ipam",
  profile: "core",
  needs: ["bridge", "ipam.docker-policy"],
  asserts:
    "Without --gateway, the gateway is the subnet's first usable address, it is the sandbox's default route, and the first sandbox gets the next address",
  mirrors: "libnetwork default IPAM: gateway requested right after RequestPool (research §2.5)",
  async run(ctx) {
    const subnet = ctx.subnet();
    const net = await ctx.network("gw", { driver: "bridge", subnet });
    const want = nth(subnet, 1);
    if (net.gateway && addr(net.gateway) !== want) {
      ctx.fail(`network gateway is ${net.gateway}`, { expected: want, observed: net.gateway });
    }
    const s = await ctx.sandbox("s");
    const ep = await ctx.connect(s, net.name);
    const route = await observeDefaultGateway(s.netnsPath);
    if (route !== want) {
      ctx.fail(`default route inside the sandbox is via ${route ?? "nothing"}`, {
        expected: `default via ${want}`,
        observed: route ? `default via ${route}` : "no default route",
        reproduce: [`nsenter --net=${s.netnsPath} ip route`],
      });
    }
    const first = `${nth(subnet, 2)}/24`;
    const seen = await observedV4(s);
    if (!seen.includes(first) || ep.ipv4 !== first) {
      ctx.fail(`first sandbox has ${seen.join(", ") || "no address"} (reported ${ep.ipv4})`, {
        expected: first,
        observed: seen.join(", "),
        reproduce: [`nsenter --net=${s.netnsPath} ip -4 addr`],
      });
    }
  },
});

export const staticIp = defineCase({
  id: "ipam.static-ip",
  area: "ipam",
  profile: "core",
  needs: ["bridge", "static-ip"],
  asserts:
    "A sandbox connected with a static IPv4 address has exactly that address and is reached at it; the same address is then refused to another sandbox",
  mirrors: "docker network connect --ip; libnetwork ErrIPAlreadyAllocated (research §2.5)",
  async run(ctx) {
    const subnet = ctx.subnet();
    const net = await ctx.network("st", { driver: "bridge", subnet });
    const [s1, s2, s3] = await Promise.all(["s1", "s2", "s3"].map((n) => ctx.sandbox(n)));
    const ip = nth(subnet, 77);
    const ep = await ctx.connect(s1, net.name, { ipv4: ip });
    const seen = await observedV4(s1);
    if (addr(ep.ipv4) !== ip || !seen.includes(`${ip}/24`)) {
      ctx.fail(`static address not applied`, {
        expected: `${ip}/24`,
        observed: `reported ${ep.ipv4}, inside ${seen.join(", ")}`,
        reproduce: [`nsenter --net=${s1.netnsPath} ip -4 addr`],
      });
    }
    await ctx.connect(s2, net.name);
    await ctx.responders(s1);
    await ctx.expectReach(s2, target(s1, net.name), "tcp");
    await ctx.expectRefused(
      ctx.impl.connect(s3.name, net.name, { ipv4: ip }),
      `connect ${s3.name} with ${ip} in use`,
      ["forbidden", "conflict"],
    );
  },
});

export const noDuplicates = defineCase({
  id: "ipam.no-duplicates-under-concurrency",
  area: "ipam",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "50 concurrent connects to one network give 50 distinct addresses, as observed inside the sandboxes",
  mirrors: "libnetwork bitmap allocator under concurrent RequestAddress (research §2.5)",
  async run(ctx) {
    const net = await ctx.network("many", { driver: "bridge", subnet: ctx.subnet() });
    const sbs: Sandbox[] = [];
    for (let i = 0; i < 50; i += 10) {
      sbs.push(
        ...await Promise.all(Array.from({ length: 10 }, (_, j) => ctx.sandbox(`p${i + j}`))),
      );
    }
    const results = await Promise.allSettled(sbs.map((s) => ctx.connect(s, net.name)));
    const failed = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    if (failed.length) {
      ctx.fail(
        `${failed.length} of 50 concurrent connects failed: ${
          failed[0].reason?.message ?? failed[0].reason
        }`,
      );
    }
    const inside = await Promise.all(sbs.map((s) => observedV4(s)));
    const all = inside.flat();
    const dup = all.filter((a, i) => all.indexOf(a) !== i);
    if (all.length !== 50 || dup.length) {
      ctx.fail(
        `addresses inside the 50 sandboxes: ${all.length} found, duplicates: ${
          dup.join(", ") || "none"
        }`,
        {
          expected: "50 distinct addresses",
          observed: `${new Set(all).size} distinct of ${all.length}`,
        },
      );
    }
  },
});

export const releaseReuse = defineCase({
  id: "ipam.release-reuse",
  area: "ipam",
  profile: "core",
  needs: ["bridge", "ipam.docker-policy"],
  asserts: "An address released by a disconnect is the next one handed out (lowest free first)",
  mirrors: "libnetwork default IPAM, serial=false: lowest free address (research §2.5)",
  async run(ctx) {
    const subnet = ctx.subnet();
    const net = await ctx.network("reuse", { driver: "bridge", subnet });
    const [s1, s2, s3] = await Promise.all(["s1", "s2", "s3"].map((n) => ctx.sandbox(n)));
    const e1 = await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    await ctx.impl.disconnect(s1.name, net.name);
    const e3 = await ctx.connect(s3, net.name);
    const seen = await observedV4(s3);
    if (e3.ipv4 !== e1.ipv4 || !seen.includes(e1.ipv4!)) {
      ctx.fail(`after releasing ${e1.ipv4}, the next sandbox got ${e3.ipv4}`, {
        expected: e1.ipv4,
        observed: `reported ${e3.ipv4}, inside ${seen.join(", ")}`,
      });
    }
  },
});

export const overlapRejected = defineCase({
  id: "ipam.overlap-rejected",
  area: "ipam",
  profile: "core",
  needs: ["bridge", "ipam.docker-policy"],
  asserts:
    "Creating a network whose subnet overlaps an existing one is refused, and leaves nothing: the same name then works with a free subnet",
  mirrors:
    'libnetwork ErrPoolOverlap "Pool overlaps with other one on this address space" (research §2.5)',
  async run(ctx) {
    const subnet = ctx.subnet();
    await ctx.network("first", { driver: "bridge", subnet });
    const wide = subnet.replace(/\/24$/, "/23").replace(
      /\.(\d+)\.0\//,
      (_m, x) => `.${Number(x) & ~1}.0/`,
    );
    const name = ctx.name("second");
    await ctx.expectRefused(
      ctx.impl.createNetwork({ name, driver: "bridge", subnet: wide }),
      `create network with ${wide} over ${subnet}`,
      ["forbidden", "conflict"],
    );
    await ctx.network("second", { driver: "bridge", subnet: ctx.subnet() });
  },
});

export const ipamCases = [gatewayFirst, staticIp, noDuplicates, releaseReuse, overlapRejected];
