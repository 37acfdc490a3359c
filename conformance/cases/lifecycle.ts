/**
 * Lifecycle cases: removal, refusals, restarts.
 * @module
 */
import { exec } from "../harness/exec.ts";
import { observeAddrs, observeLinks } from "../harness/observe.ts";
import { pollUntil } from "../probes/mod.ts";
import { addr, defineCase, type Sb } from "./framework.ts";

/** Links, addresses, routes and nft tables of a host namespace, as comparable lines. */
async function hostState(netnsPath: string): Promise<string[]> {
  const out: string[] = [];
  const links = await exec(["nsenter", `--net=${netnsPath}`, "ip", "-o", "link", "show"]);
  for (const l of links.stdout.split("\n").filter(Boolean)) {
    out.push(`link ${l.split(":")[1].trim().split("@")[0]}`);
  }
  const addrs = await exec(["nsenter", `--net=${netnsPath}`, "ip", "-o", "addr", "show"]);
  for (const l of addrs.stdout.split("\n").filter(Boolean)) {
    out.push(`addr ${l.split(/\s+/).slice(1, 4).join(" ")}`);
  }
  const tables = await exec(["nsenter", `--net=${netnsPath}`, "nft", "list", "tables"]);
  for (const l of tables.stdout.split("\n").filter(Boolean)) out.push(`nft ${l.trim()}`);
  return out.sort();
}

export const idempotentTeardown = defineCase({
  id: "lifecycle.idempotent-teardown",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge"],
  exclusive: true,
  asserts:
    "Removing sandboxes and networks returns the host namespace to its exact prior state (links, addresses, nft tables); repeating a removal or disconnect is refused cleanly or is a no-op",
  mirrors: 'CNI "MUST accept multiple DEL"; conformance-anchors §7 case 24',
  async run(ctx) {
    const host = ctx.hosts[0];
    const before = await hostState(host.netnsPath);
    const name = ctx.name("td");
    await ctx.impl.createNetwork({ name, driver: "bridge", subnet: ctx.subnet() });
    const sbs = [ctx.name("t1"), ctx.name("t2")];
    const infos = [];
    for (const s of sbs) {
      infos.push(await ctx.impl.createSandbox({ name: s }));
      await ctx.impl.connect(s, name);
    }
    await ctx.impl.disconnect(sbs[0], name);
    // a second disconnect: refused (Docker 20.10 answers 500 "is not connected") or a no-op;
    // what matters is the state the teardown leaves, checked below
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
      () => hostState(host.netnsPath),
      (s) => s.join() === before.join(),
      { deadlineMs: 3000 },
    );
    if (!poll.ok) {
      const added = poll.value.filter((x) => !before.includes(x));
      const gone = before.filter((x) => !poll.value.includes(x));
      ctx.fail(`host namespace differs after teardown`, {
        expected: "the state before the case",
        observed: [...added.map((a) => `+ ${a}`), ...gone.map((g) => `- ${g}`)].join("; "),
        reproduce: [`nsenter --net=${host.netnsPath} ip -br link`],
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
    const e2 = await ctx.connect(s2, net.name);
    await ctx.expectRefused(
      ctx.impl.removeNetwork(net.name),
      `remove ${net.name} with endpoints`,
      "forbidden",
    );
    await ctx.responders(s2, { tcp: [8080] });
    await ctx.expectReach(
      s1,
      { ip: addr(e2.ipv4), identity: s2.name, label: s2.name },
      "tcp",
      true,
      8080,
    );
  },
});

export const disconnectRemoves = defineCase({
  id: "lifecycle.disconnect-removes-interface",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Disconnecting a sandbox from one of its two networks removes that interface and address from inside it, leaves the other working, and makes the old address unreachable",
  mirrors: "libnetwork Endpoint.Leave + Delete (research §1.2 steps 5-6)",
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [m, pa, pb] = await Promise.all(["m", "pa", "pb"].map((n) => ctx.sandbox(n)));
    await ctx.connect(m, a.name);
    const eb = await ctx.connect(m, b.name);
    await ctx.connect(pa, a.name);
    await ctx.connect(pb, b.name);
    const linksBefore = await observeLinks(m.netnsPath);
    await ctx.impl.disconnect(m.name, b.name);
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
    const mSb: Sb = m;
    await ctx.responders(mSb, { tcp: [8080] });
    await ctx.expectReach(
      pa,
      { ip: addr(m.eps[a.name].ipv4), identity: m.name, label: `${m.name}@A` },
      "tcp",
      true,
      8080,
    );
    await ctx.expectReach(pb, { ip: addr(eb.ipv4), label: `old ${m.name}@B` }, "icmp", false);
  },
});

export const restartKeeps = defineCase({
  id: "lifecycle.restart-keeps-connectivity",
  area: "lifecycle",
  profile: "core",
  needs: ["bridge", "restart"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9 of the implementation, existing sandboxes keep their addresses and connectivity, isolation still holds, and a new connect gets a fresh address",
  mirrors:
    'Docker --live-restore; libnetwork dnet "ungraceful restart" (conformance-anchors §7 case 25)',
  async run(ctx) {
    if (!ctx.impl.restart) ctx.fail("declares restart but has no restart()");
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [s1, s2, s3, s4] = await Promise.all(["s1", "s2", "s3", "s4"].map((n) => ctx.sandbox(n)));
    const e1 = await ctx.connect(s1, a.name);
    const e2 = await ctx.connect(s2, a.name);
    const e3 = await ctx.connect(s3, b.name);
    await ctx.responders(s2, { tcp: [8080] });
    await ctx.responders(s3, { tcp: [8080] });
    for (const how of ["graceful", "kill"] as const) {
      await ctx.impl.restart!(ctx.hosts[0].name, how);
      const seen = (await observeAddrs(s1.netnsPath)).map((x) => `${x.address}/${x.prefixlen}`);
      if (!seen.includes(e1.ipv4!)) {
        ctx.fail(`after a ${how} restart ${s1.name} has ${seen.join(", ")}`, { expected: e1.ipv4 });
      }
      await ctx.expectReach(
        s1,
        { ip: addr(e2.ipv4), identity: s2.name, label: `${s2.name} after ${how} restart` },
        "tcp",
        true,
        8080,
      );
      await ctx.expectReach(
        s1,
        { ip: addr(e3.ipv4), label: `${s3.name} (other network) after ${how} restart` },
        "tcp",
        false,
        8080,
      );
    }
    const e4 = await ctx.connect(s4, a.name);
    if ([e1.ipv4, e2.ipv4].includes(e4.ipv4)) {
      ctx.fail(`a connect after restart got ${e4.ipv4}, already in use`, {
        expected: "a free address",
      });
    }
  },
});

export const lifecycleCases = [
  idempotentTeardown,
  rmWithEndpoints,
  disconnectRemoves,
  restartKeeps,
];
