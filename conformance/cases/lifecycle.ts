/**
 * Lifecycle cases: removal, refusals, restarts.
 * @module
 */
import { diffSnapshots, snapshotNetns } from "../harness/audit.ts";
import { OUTSIDE } from "../harness/hosts.ts";
import { observeAddrs, observeLinks } from "../harness/observe.ts";
import { pollUntil } from "../probes/mod.ts";
import { addr, type CaseContext, defineCase, type Target, target, worldNs } from "./framework.ts";

/** Restarts the implementation's first host gracefully, then with kill -9, checking after each. */
export async function afterEachRestart(
  ctx: CaseContext,
  check: (how: "graceful" | "kill") => Promise<void>,
): Promise<void> {
  if (!ctx.impl.restart) ctx.fail("declares restart but has no restart()");
  for (const how of ["graceful", "kill"] as const) {
    await ctx.impl.restart!(ctx.hosts[0].name, how);
    await check(how);
  }
}

export const idempotentTeardown = defineCase({
  id: "lifecycle.idempotent-teardown",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge"],
  exclusive: true,
  asserts:
    "Removing sandboxes and networks returns the host namespace to its exact prior state (links, addresses, routes, rules, the full nft ruleset, iptables, sysctls); repeating a removal is refused as not-found or is a no-op",
  mirrors: 'CNI "MUST accept multiple DEL"; conformance-anchors §7 case 24',
  async run(ctx) {
    const host = ctx.hosts[0];
    const before = await snapshotNetns(host.netnsPath);
    const name = ctx.name("td");
    await ctx.impl.createNetwork({ name, driver: "bridge", subnet: ctx.subnet() });
    const sbs = [ctx.name("t1"), ctx.name("t2")];
    const infos = [];
    for (const s of sbs) {
      infos.push(await ctx.impl.createSandbox({ name: s }));
      await ctx.impl.connect(s, name, {
        publish: [{ hostPort: 18090 + infos.length, containerPort: 80, protocol: "tcp" }],
      });
    }
    await ctx.impl.disconnect(sbs[0], name);
    // a second disconnect: refused or a no-op; what matters is the state the teardown leaves
    await ctx.impl.disconnect(sbs[0], name).catch(() => {});
    for (const s of sbs) await ctx.impl.removeSandbox(s);
    await ctx.impl.removeNetwork(name);
    await ctx.impl.removeNetwork(name).catch((e) => {
      if (e.kind !== "not-found") {
        ctx.fail(`removing ${name} twice: ${e.kind}: ${e.message}`, {
          expected: "not-found or success",
        });
      }
    });
    const poll = await pollUntil(
      async () => diffSnapshots(before, await snapshotNetns(host.netnsPath), "host"),
      (d) => d.length === 0,
      { deadlineMs: 3000, intervalMs: 200 },
    );
    if (!poll.ok) {
      ctx.fail(`host namespace differs after teardown: ${poll.value.slice(0, 3).join("; ")}`, {
        expected: "the state before the case",
        observed: poll.value.join("\n"),
        reproduce: [`nsenter --net=${host.netnsPath} nft list ruleset`],
      });
    }
    for (const sb of infos) {
      if (sb.netnsPath.startsWith("/run/netns/")) {
        const exists = await Deno.stat(sb.netnsPath).then(() => true, () => false);
        if (exists) ctx.fail(`sandbox namespace ${sb.netnsPath} still exists after removal`);
      }
    }
  },
});

export const rmWithEndpoints = defineCase({
  id: "lifecycle.rm-network-with-endpoints-refused",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Removing a network that still has a connected sandbox is refused (forbidden), and the network keeps working",
  mirrors: 'libnetwork ActiveEndpointsError "network X has active endpoints" (research §1.2)',
  async run(ctx) {
    const net = await ctx.network("busy", { driver: "bridge", subnet: ctx.subnet() });
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    await ctx.expectRefused(
      ctx.impl.removeNetwork(net.name),
      `remove ${net.name} with endpoints`,
      "forbidden",
    );
    await ctx.responders(s2);
    await ctx.expectReach(s1, target(s2, net.name), "tcp");
  },
});

export const disconnectRemoves = defineCase({
  id: "lifecycle.disconnect-removes-interface",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Disconnecting a sandbox from one of its two networks removes that interface and address from inside it, leaves the other working, and no packet to the old address arrives at it",
  mirrors: "libnetwork Endpoint.Leave + Delete (research §1.2 steps 5-6)",
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [m, pa, pb, pb2] = await Promise.all(
      ["m", "pa", "pb", "pb2"].map((n) => ctx.sandbox(n)),
    );
    await ctx.connect(m, a.name);
    const eb = await ctx.connect(m, b.name);
    await ctx.connect(pa, a.name);
    await ctx.connect(pb, b.name);
    await ctx.connect(pb2, b.name);
    await ctx.responders(m);
    await ctx.responders(pb2);
    const oldB: Target = { ...target(m, b.name), label: `old ${m.name}@B` };
    const linksBefore = await observeLinks(m.netnsPath);
    await ctx.disconnect(m, b.name);
    const addrs = (await observeAddrs(m.netnsPath)).map((x) => `${x.address}/${x.prefixlen}`);
    const links = await observeLinks(m.netnsPath);
    if (
      addrs.includes(eb.ipv4!) || links.includes(eb.ifname) ||
      links.length !== linksBefore.length - 1
    ) {
      ctx.fail(`after disconnect, ${eb.ifname} (${eb.ipv4}) is still in the sandbox`, {
        expected: `no ${eb.ifname}, no ${eb.ipv4}`,
        observed: `links ${links.join(", ")}; addresses ${addrs.join(", ")}`,
        reproduce: [`nsenter --net=${m.netnsPath} ip -br addr`],
      });
    }
    await ctx.expectReach(pa, target(m, a.name), "tcp");
    await ctx.expectBlocked(pb, oldB, "icmp", { control: target(pb2, b.name) });
  },
});

export const restartKeeps = defineCase({
  id: "lifecycle.restart-keeps-connectivity",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge", "restart"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9 of the implementation, existing sandboxes keep their addresses and reach each other, and a new connect gets a free address",
  mirrors:
    'Docker --live-restore; libnetwork dnet "ungraceful restart" (conformance-anchors §7 case 25)',
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const [s1, s2, s4] = await Promise.all(["s1", "s2", "s4"].map((n) => ctx.sandbox(n)));
    const e1 = await ctx.connect(s1, a.name);
    const e2 = await ctx.connect(s2, a.name);
    await ctx.responders(s2);
    await afterEachRestart(ctx, async (how) => {
      const seen = (await observeAddrs(s1.netnsPath)).map((x) => `${x.address}/${x.prefixlen}`);
      if (!seen.includes(e1.ipv4!)) {
        ctx.fail(`after a ${how} restart ${s1.name} has ${seen.join(", ")}`, { expected: e1.ipv4 });
      }
      await ctx.expectReach(
        s1,
        { ...target(s2, a.name), label: `${s2.name} after ${how} restart` },
        "tcp",
      );
    });
    const e4 = await ctx.connect(s4, a.name);
    if ([e1.ipv4, e2.ipv4].includes(e4.ipv4)) {
      ctx.fail(`a connect after restart got ${e4.ipv4}, already in use`, {
        expected: "a free address",
      });
    }
  },
});

export const restartKeepsIsolation = defineCase({
  id: "lifecycle.restart-keeps-isolation",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge", "restart"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9, no packet crosses between two bridge networks (TCP, ICMP), while the network peer answers",
  mirrors: "Docker --live-restore keeps the isolation rules (DOCKER-ISOLATION chains persist)",
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [s1, s2, s3] = await Promise.all(["s1", "s2", "s3"].map((n) => ctx.sandbox(n)));
    await ctx.connect(s1, a.name);
    await ctx.connect(s2, a.name);
    await ctx.connect(s3, b.name);
    await Promise.all([s2, s3].map((s) => ctx.responders(s)));
    await afterEachRestart(ctx, async () => {
      await Promise.all(
        (["icmp", "tcp"] as const).map((p) =>
          ctx.expectBlocked(s1, target(s3, b.name), p, { control: target(s2, a.name) })
        ),
      );
    });
  },
});

export const restartKeepsPorts = defineCase({
  id: "lifecycle.restart-keeps-ports",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge", "restart", "ports"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9, a published port still answers from outside, served by its sandbox",
  mirrors: "Docker --live-restore restores port mappings",
  async run(ctx) {
    const net = await ctx.network("pub", { driver: "bridge", subnet: ctx.subnet() });
    const s = await ctx.sandbox("web");
    await ctx.connect(s, net.name, {
      publish: [{ hostPort: 18087, containerPort: 80, protocol: "tcp" }],
    });
    await ctx.responders(s, { tcp: [80] });
    const outside = worldNs(ctx.hosts[0]);
    const ip = addr(OUTSIDE.host);
    const to: Target = { ip, identity: s.name, label: `${ip}:18087`, at: s };
    await ctx.expectReach(outside, to, "tcp", { port: 18087 });
    await afterEachRestart(ctx, async (how) => {
      await ctx.expectReach(outside, { ...to, label: `${ip}:18087 after ${how} restart` }, "tcp", {
        port: 18087,
      });
    });
  },
});

export const lifecycleCases = [
  idempotentTeardown,
  rmWithEndpoints,
  disconnectRemoves,
  restartKeeps,
  restartKeepsIsolation,
  restartKeepsPorts,
];
