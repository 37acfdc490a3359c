/**
 * Macvlan cases (profile `macvlan`): sandboxes on a parent interface's layer-2 segment
 * (research/libnetwork.md §3.3). Each harness host has `lan0`, a veth end without address
 * whose peer sits in a "LAN" namespace holding another machine (192.0.2.254/24); the cases
 * put their networks on 192.0.2.0/24 with the sandboxes in 192.0.2.64/26.
 *
 * The cases run one at a time (`exclusive`): they share the one LAN, and Docker 20.10 allows
 * one macvlan network per parent ("network dm-… is already using parent interface lan0"),
 * and one pool per subnet.
 * @module
 */
import { type HarnessHost, LAN } from "../harness/hosts.ts";
import { inNetns, observeDefaultGateway, observeLinks } from "../harness/observe.ts";
import { pollUntil, probeDns } from "../probes/mod.ts";
import type { NetworkSpec } from "../impl.ts";
import {
  addr,
  type CaseContext,
  defineCase,
  hostNs,
  lanHostNs,
  type Proto,
  PROTOS,
  type Sandbox,
  type Target,
  target,
} from "./framework.ts";

/** Where the cases' sandboxes get their addresses: clear of the gateway and the LAN host. */
const RANGE = "192.0.2.64/26";
/** An address the host-unreachable case gives the host on its parent (outside RANGE). */
const HOST_ON_LAN = "192.0.2.253/24";
const LAN_HOST = LAN.peer.split("/")[0];

/** A macvlan network on the LAN (on `lan0` unless `parent` is null: no parent at all). */
function lanNetwork(
  opts: { mode?: string; parent?: string | null } = {},
): Omit<NetworkSpec, "name"> {
  const options: Record<string, string> = {};
  if (opts.parent !== null) options.parent = opts.parent ?? LAN.parent;
  if (opts.mode) options.macvlan_mode = opts.mode;
  return { driver: "macvlan", subnet: LAN.subnet, gateway: LAN.gateway, ipRange: RANGE, options };
}

/** The other machine on the LAN as a target (the harness's responders answer as "lan-host"). */
function lanHost(host: HarnessHost): Target {
  return { ip: LAN_HOST, identity: "lan-host", label: "LAN host", at: lanHostNs(host) };
}

/**
 * Pairs `a` ↔ `b` over `protos`: both ways reachable (`want`), or both ways blocked with
 * the LAN host as each side's control.
 */
async function pairReach(
  ctx: CaseContext,
  a: Sandbox,
  b: Sandbox,
  net: string,
  want: boolean,
  protos: readonly Proto[] = PROTOS,
) {
  const control = lanHost(ctx.hosts[0]);
  const checks: Promise<unknown>[] = [];
  for (const p of protos) {
    for (const [x, y] of [[a, b], [b, a]]) {
      checks.push(
        want
          ? ctx.expectReach(x, target(y, net), p)
          : ctx.expectBlocked(x, target(y, net), p, { control }),
      );
    }
  }
  await Promise.all(checks);
}

/**
 * Connects a sandbox and registers its disconnection, so that cleanup (last in, first out)
 * disconnects it before it removes a network created before the sandbox (an implementation
 * refuses to remove a network with endpoints).
 */
async function connectUndone(ctx: CaseContext, sb: Sandbox, net: string) {
  await ctx.connect(sb, net);
  ctx.defer(async () => {
    if (net in sb.endpoints) await ctx.impl.disconnect(sb.name, net);
  });
}

/** Disconnects sandboxes and removes a network before the case goes on with another. */
async function tearDown(ctx: CaseContext, net: string, sbs: Sandbox[]) {
  for (const s of sbs) {
    await ctx.impl.disconnect(s.name, net);
    delete s.endpoints[net];
  }
  await ctx.impl.removeNetwork(net);
}

/** Fails unless the host namespace's links are `before` again. */
async function expectLinks(ctx: CaseContext, host: HarnessHost, before: string[], when: string) {
  const after = await observeLinks(host.netnsPath);
  const norm = (xs: string[]) => [...xs].sort().join(" ");
  if (norm(after) !== norm(before)) {
    const added = after.filter((l) => !before.includes(l));
    const gone = before.filter((l) => !after.includes(l));
    ctx.fail(`${when}, the host's links changed`, {
      expected: norm(before),
      observed: `${norm(after)} (added: ${added.join(" ") || "-"}; gone: ${gone.join(" ") || "-"})`,
      reproduce: [`nsenter --net=${host.netnsPath} ip -d link`],
    });
  }
}

export const macvlanSameNetwork = defineCase({
  id: "macvlan.same-network",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range"],
  exclusive: true,
  asserts:
    "Every pair of sandboxes on one macvlan network (bridge mode, parent lan0) reaches the other by IP over ICMP, TCP and UDP, and the responder is the sandbox addressed",
  mirrors:
    "moby integration/network/macvlan (containers on one network ping each other, e.g. testMacvlanMultiSubnet); libnetwork docs/macvlan.md bridge mode",
  async run(ctx) {
    const net = await ctx.network("mv", lanNetwork());
    const sbs = await Promise.all(["a", "b", "c"].map((n) => ctx.sandbox(n)));
    for (const s of sbs) await ctx.connect(s, net.name);
    await Promise.all(sbs.map((s) => ctx.responders(s)));
    const [a, b, c] = sbs;
    await Promise.all([
      pairReach(ctx, a, b, net.name, true),
      pairReach(ctx, a, c, net.name, true),
      pairReach(ctx, b, c, net.name, true),
    ]);
  },
});

export const macvlanReachesLanHost = defineCase({
  id: "macvlan.reaches-lan-host",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range"],
  exclusive: true,
  asserts:
    "A sandbox on a macvlan network reaches another machine on the parent's segment (ICMP, TCP) and that machine reaches it; the machine's neighbour table maps the sandbox's own address to the sandbox's own MAC (no NAT, no proxy ARP)",
  mirrors:
    "libnetwork docs/macvlan.md: containers appear on the parent's network with their own MAC and address",
  async run(ctx) {
    const host = ctx.hosts[0];
    const net = await ctx.network("mv", lanNetwork());
    const s1 = await ctx.sandbox("s1");
    const ep = await ctx.connect(s1, net.name);
    await ctx.responders(s1);
    const lan = lanHost(host);
    await ctx.expectReach(s1, lan, "icmp");
    await ctx.expectReach(s1, lan, "tcp");
    await ctx.expectReach(lan.at, target(s1, net.name), "tcp");
    const ip = addr(ep.ipv4);
    const argv = ["ip", "-j", "neigh", "show", "to", ip];
    const seen = await pollUntil(
      async () => {
        const r = await inNetns(host.lanNetnsPath, argv);
        const entries = JSON.parse(r.stdout || "[]") as { dst: string; lladdr?: string }[];
        return entries.find((e) => e.dst === ip)?.lladdr?.toLowerCase();
      },
      (mac) => mac === ep.mac.toLowerCase(),
      { deadlineMs: 2000, intervalMs: 100 },
    );
    if (!seen.ok) {
      ctx.fail(`the LAN host's neighbour entry for ${ip} is not the sandbox's MAC`, {
        expected: `${ip} lladdr ${ep.mac.toLowerCase()}`,
        observed: seen.value ? `${ip} lladdr ${seen.value}` : `no entry for ${ip}`,
        reproduce: [`nsenter --net=${host.lanNetnsPath} ${argv.join(" ")}`],
      });
    }
  },
});

export const macvlanHostUnreachable = defineCase({
  id: "macvlan.host-unreachable",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range"],
  exclusive: true,
  asserts:
    "With an address on the parent (192.0.2.253/24 on lan0, so it reaches the LAN host), the host namespace still cannot reach its own macvlan sandbox (ICMP, TCP), which the LAN host reaches",
  mirrors:
    "libnetwork docs/macvlan.md: the host cannot talk to its own macvlan containers through the parent (kernel filtering)",
  async run(ctx) {
    const host = ctx.hosts[0];
    const net = await ctx.network("mv", lanNetwork());
    const s1 = await ctx.sandbox("s1");
    await ctx.connect(s1, net.name);
    await ctx.responders(s1);
    const add = await inNetns(host.netnsPath, [
      "ip",
      "addr",
      "add",
      HOST_ON_LAN,
      "dev",
      LAN.parent,
    ]);
    if (add.code !== 0) {
      ctx.fail(`cannot put ${HOST_ON_LAN} on ${LAN.parent}: ${add.stderr.trim()}`);
    }
    ctx.defer(async () => {
      await inNetns(host.netnsPath, ["ip", "addr", "del", HOST_ON_LAN, "dev", LAN.parent]);
    });
    const self = hostNs(host);
    // the sandbox is up on the segment; the host's control is the LAN host
    await ctx.expectReach(lanHost(host).at, target(s1, net.name), "icmp");
    await Promise.all(
      (["icmp", "tcp"] as const).map((p) =>
        ctx.expectBlocked(self, target(s1, net.name), p, { control: lanHost(host) })
      ),
    );
  },
});

export const macvlanInternalNoParent = defineCase({
  id: "macvlan.internal-no-parent",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "macvlan.no-parent", "ip-range"],
  exclusive: true,
  asserts:
    "A macvlan network without a parent is internal: its sandboxes reach each other (ICMP, TCP) but have no default route and do not reach the LAN host, though on its subnet; removing the network leaves the host's links as they were",
  mirrors:
    "moby integration/network/macvlan testMacvlanNilParent, testMacvlanInternalMode; libnetwork macvlan: no parent = a link of its own (dm-<id>), forced internal (research/libnetwork.md §3.3)",
  async run(ctx) {
    const host = ctx.hosts[0];
    const before = await observeLinks(host.netnsPath);
    const net = await ctx.network("solo", lanNetwork({ parent: null }));
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    await Promise.all([s1, s2].map((s) => ctx.responders(s)));
    await pairReach(ctx, s1, s2, net.name, true, ["icmp", "tcp"]);
    for (const s of [s1, s2]) {
      const gw = await observeDefaultGateway(s.netnsPath);
      if (gw) {
        ctx.fail(`${s.name} has a default route via ${gw}`, {
          expected: "no default route",
          observed: `default via ${gw}`,
          reproduce: [`nsenter --net=${s.netnsPath} ip route`],
        });
      }
    }
    await Promise.all([
      ctx.expectBlocked(s1, lanHost(host), "icmp", { control: target(s2, net.name) }),
      ctx.expectBlocked(s2, lanHost(host), "icmp", { control: target(s1, net.name) }),
    ]);
    await tearDown(ctx, net.name, [s1, s2]);
    await expectLinks(ctx, host, before, "after the network was removed");
  },
});

export const macvlanMissingParent = defineCase({
  id: "macvlan.missing-parent-rejected",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range"],
  exclusive: true,
  asserts:
    "Creating a macvlan network on a parent that does not exist (nosuchif0) is refused and leaves nothing: the host's links are unchanged and the same name then creates a working network on lan0",
  mirrors:
    "libnetwork macvlan createNetwork: a missing parent that is not a VLAN sub-interface is an error",
  async run(ctx) {
    const host = ctx.hosts[0];
    const before = await observeLinks(host.netnsPath);
    await ctx.expectRefused(
      ctx.network("mv", lanNetwork({ parent: "nosuchif0" })),
      "a macvlan network on parent nosuchif0",
      ["not-found", "invalid"],
    );
    await expectLinks(ctx, host, before, "after the refused create");
    const net = await ctx.network("mv", lanNetwork());
    const s1 = await ctx.sandbox("s1");
    await ctx.connect(s1, net.name);
    await ctx.expectReach(s1, lanHost(host), "icmp");
  },
});

export const macvlanModes = defineCase({
  id: "macvlan.modes",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range"],
  exclusive: true,
  asserts:
    "On a macvlan network in private mode two sandboxes cannot reach each other (ICMP, TCP) though each reaches the LAN host; the same two on a bridge-mode network on the same parent can",
  mirrors: "libnetwork macvlan_mode option (research/libnetwork.md §3.3); kernel macvlan modes",
  async run(ctx) {
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    const priv = await ctx.network("private", lanNetwork({ mode: "private" }));
    await connectUndone(ctx, s1, priv.name);
    await connectUndone(ctx, s2, priv.name);
    await Promise.all([s1, s2].map((s) => ctx.responders(s)));
    await Promise.all([s1, s2].map((s) => ctx.expectReach(s, lanHost(ctx.hosts[0]), "icmp")));
    await pairReach(ctx, s1, s2, priv.name, false, ["icmp", "tcp"]);
    // one network per parent at a time (Docker 20.10's rule)
    await tearDown(ctx, priv.name, [s1, s2]);
    const bridge = await ctx.network("bridge", lanNetwork({ mode: "bridge" }));
    await connectUndone(ctx, s1, bridge.name);
    await connectUndone(ctx, s2, bridge.name);
    await pairReach(ctx, s1, s2, bridge.name, true, ["icmp", "tcp"]);
  },
});

export const macvlanDns = defineCase({
  id: "macvlan.dns",
  area: "macvlan",
  profile: "macvlan",
  needs: ["macvlan", "ip-range", "dns"],
  exclusive: true,
  asserts:
    "On a macvlan network a sandbox resolves a peer's name, through its embedded resolver, to the peer's address",
  mirrors:
    "moby integration/network/macvlan testMacvlanNilParent (ping by container name); the embedded DNS serves every user-defined network",
  async run(ctx) {
    const net = await ctx.network("mv", lanNetwork());
    const [a, b] = await Promise.all(["a", "b"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a, net.name);
    await ctx.connect(b, net.name);
    const want = addr(b.endpoints[net.name].ipv4);
    const resolver = a.resolver ?? "127.0.0.11";
    const poll = await pollUntil(
      () => probeDns(a.netnsPath, resolver, b.name, { timeoutMs: 2000 }),
      (r) => r.rcode === "NOERROR" && r.answers.join() === want,
      { deadlineMs: 2000, intervalMs: 100 },
    );
    if (!poll.ok) {
      const r = poll.value;
      ctx.fail(`${a.name}: A ${b.name}: got ${r.rcode} ${r.answers.join(", ")}`, {
        expected: `NOERROR ${want}`,
        observed: `${r.rcode} ${r.answers.join(", ") || "(no answers)"}`,
        reproduce: [r.command],
      });
    }
  },
});

/** Every macvlan case. */
export const macvlanCases = [
  macvlanSameNetwork,
  macvlanReachesLanHost,
  macvlanHostUnreachable,
  macvlanInternalNoParent,
  macvlanMissingParent,
  macvlanModes,
  macvlanDns,
];
