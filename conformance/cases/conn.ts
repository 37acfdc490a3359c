/**
 * Connectivity and isolation cases.
 * @module
 */
import { OUTSIDE } from "../harness/hosts.ts";
import {
  addr,
  type CaseContext,
  convergedMatrix,
  defineCase,
  type Proto,
  type Sb,
} from "./framework.ts";

const PROTOS: Proto[] = ["icmp", "tcp", "udp"];
const TCP = 8080, UDP = 5353;

async function all(sbs: Sb[], ctx: CaseContext) {
  await Promise.all(sbs.map((s) => ctx.responders(s, { tcp: [TCP], udp: [UDP] })));
}

function target(sb: Sb, net: string) {
  return { ip: addr(sb.eps[net].ipv4), identity: sb.name, label: `${sb.name}@${net}` };
}

export const connSameNetwork = defineCase({
  id: "conn.same-network",
  area: "conn",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Every pair of sandboxes on one bridge network reaches the other by IP over ICMP, TCP and UDP, and the responder is the sandbox addressed",
  mirrors: "k8s intra-pod communication; libnetwork dnet test_single_network_connectivity",
  async run(ctx) {
    const net = await ctx.network("net", { driver: "bridge", subnet: ctx.subnet() });
    const sbs = await Promise.all(["a", "b", "c"].map((n) => ctx.sandbox(n)));
    for (const s of sbs) await ctx.connect(s, net.name);
    await all(sbs, ctx);
    const checks = [];
    for (const from of sbs) {
      for (const to of sbs) {
        if (from === to) continue;
        for (const p of PROTOS) {
          checks.push(
            ctx.expectReach(from, target(to, net.name), p, true, p === "tcp" ? TCP : UDP),
          );
        }
      }
    }
    await Promise.all(checks);
  },
});

export const isoInterNetwork = defineCase({
  id: "iso.inter-network",
  area: "iso",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Sandboxes on two different bridge networks cannot reach each other in either direction over ICMP, TCP or UDP, while each still reaches its own network's peer",
  mirrors: "moby TestBridgeINC; DOCKER-ISOLATION-STAGE-1/2 (research/libnetwork.md §3.1)",
  async run(ctx) {
    const a = await ctx.network("a", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("b", { driver: "bridge", subnet: ctx.subnet() });
    const [a1, a2, b1] = await Promise.all(["a1", "a2", "b1"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a1, a.name);
    await ctx.connect(a2, a.name);
    await ctx.connect(b1, b.name);
    await all([a1, a2, b1], ctx);
    // control: the network itself works, so "blocked" below is isolation, not breakage
    await ctx.expectReach(a1, target(a2, a.name), "tcp", true, TCP);
    const checks = [];
    for (const p of PROTOS) {
      const port = p === "tcp" ? TCP : UDP;
      checks.push(ctx.expectReach(a1, target(b1, b.name), p, false, port));
      checks.push(ctx.expectReach(b1, target(a1, a.name), p, false, port));
      checks.push(ctx.expectReach(b1, target(a2, a.name), p, false, port));
    }
    await Promise.all(checks);
  },
});

export const isoIccDisabled = defineCase({
  id: "iso.icc-disabled",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.icc"],
  asserts:
    "On a network with com.docker.network.bridge.enable_icc=false, sandboxes cannot reach each other (ICMP, TCP, UDP) but each reaches its gateway",
  mirrors: "moby TestBridgeICC (inverse); CNI bridge portIsolation",
  async run(ctx) {
    const net = await ctx.network("noicc", {
      driver: "bridge",
      subnet: ctx.subnet(),
      options: { "com.docker.network.bridge.enable_icc": "false" },
    });
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    const e1 = await ctx.connect(s1, net.name);
    const e2 = await ctx.connect(s2, net.name);
    await all([s1, s2], ctx);
    await ctx.expectReach(
      s1,
      { ip: addr(e1.gateway ?? net.gateway), label: "gateway" },
      "icmp",
      true,
    );
    await ctx.expectReach(
      s2,
      { ip: addr(e2.gateway ?? net.gateway), label: "gateway" },
      "icmp",
      true,
    );
    await Promise.all(PROTOS.flatMap((p) => [
      ctx.expectReach(s1, target(s2, net.name), p, false, p === "tcp" ? TCP : UDP),
      ctx.expectReach(s2, target(s1, net.name), p, false, p === "tcp" ? TCP : UDP),
    ]));
  },
});

export const isoInternal = defineCase({
  id: "iso.internal-network",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.internal"],
  asserts:
    "A sandbox on an --internal network cannot reach the external world through the host (ICMP, TCP), while traffic within the network flows",
  mirrors:
    "moby TestBridgeINC internal case, TestInternalNwConnectivity; DOCKER-ISOLATION internal rules",
  async run(ctx) {
    const net = await ctx.network("int", {
      driver: "bridge",
      subnet: ctx.subnet(),
      internal: true,
    });
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    await all([s1, s2], ctx);
    await ctx.expectReach(s1, target(s2, net.name), "tcp", true, TCP);
    await ctx.expectReach(s2, target(s1, net.name), "icmp", true);
    const world = OUTSIDE.world.split("/")[0];
    await Promise.all([
      ctx.expectReach(s1, { ip: world, label: "external world" }, "icmp", false),
      ctx.expectReach(s1, { ip: world, label: "external world" }, "tcp", false, 80),
    ]);
  },
});

export const isoInternalNoRoute = defineCase({
  id: "iso.internal-no-route",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.internal"],
  asserts:
    'A sandbox on an --internal network has no default route, so even the host\'s own outside address is unreachable ("Network is unreachable")',
  mirrors:
    "libnetwork bridge Join sets no gateway for internal networks (research/libnetwork.md §3.1, current)",
  async run(ctx) {
    const net = await ctx.network("int", {
      driver: "bridge",
      subnet: ctx.subnet(),
      internal: true,
    });
    const s1 = await ctx.sandbox("s1");
    await ctx.connect(s1, net.name);
    const { observeDefaultGateway } = await import("../harness/observe.ts");
    const gw = await observeDefaultGateway(s1.netnsPath);
    if (gw) {
      ctx.fail(`the sandbox has a default route via ${gw}`, {
        expected: "no default route",
        observed: `default via ${gw}`,
        reproduce: [`nsenter --net=${s1.netnsPath} ip route`],
      });
    }
    const hostOut = OUTSIDE.host.split("/")[0];
    await ctx.expectReach(s1, { ip: hostOut, label: "host outside address" }, "icmp", false);
  },
});

export const connEgress = defineCase({
  id: "conn.egress-masquerade",
  area: "conn",
  profile: "core",
  needs: ["bridge", "bridge.masquerade"],
  asserts:
    "A sandbox on a (non-internal) bridge network reaches the external world through the host, which has no route back to the sandbox's subnet: its traffic is masqueraded",
  mirrors: "Docker's POSTROUTING MASQUERADE for each bridge subnet (research/libnetwork.md §3.1)",
  async run(ctx) {
    const host = ctx.hosts[0];
    const net = await ctx.network("egress", { driver: "bridge", subnet: ctx.subnet() });
    const s1 = await ctx.sandbox("s1");
    await ctx.connect(s1, net.name);
    const world: Sb = { name: "world", netnsPath: host.outsideNetnsPath, eps: {} };
    const r = await ctx.responders(world, { tcp: [TCP] });
    void r;
    await ctx.expectReach(
      s1,
      { ip: OUTSIDE.world.split("/")[0], identity: "world", label: "external world" },
      "tcp",
      true,
      TCP,
    );
  },
});

export const matrixFull = defineCase({
  id: "matrix.full-reachability",
  area: "matrix",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Over 5 sandboxes on 3 networks (one sandbox on two), the observed ICMP reachability of every address equals the one implied by network membership",
  mirrors: "k8s network policy truth tables (truthtable.go); Cyclonus grids",
  async run(ctx) {
    const nets = await Promise.all(
      ["A", "B", "C"].map((n) => ctx.network(n, { driver: "bridge", subnet: ctx.subnet() })),
    );
    const [A, B, C] = nets.map((n) => n.name);
    const members: [string, string[]][] = [["a1", [A]], ["a2", [A]], ["b1", [B]], ["m1", [A, B]], [
      "c1",
      [C],
    ]];
    const sbs: Sb[] = [];
    for (const [n, on] of members) {
      const s = await ctx.sandbox(n);
      for (const net of on) await ctx.connect(s, net);
      sbs.push(s);
    }
    const endpoints = sbs.flatMap((s) => Object.keys(s.eps).map((net) => ({ sb: s, net })));
    const short = (net: string) => net.slice(net.lastIndexOf("-") + 1);
    const labels = endpoints.map((e) =>
      `${e.sb.name.slice(e.sb.name.lastIndexOf("-") + 1)}@${short(e.net)}`
    );
    const expected = endpoints.map((src) =>
      endpoints.map((dst) => src.sb === dst.sb || dst.net in src.sb.eps)
    );
    const observed = await convergedMatrix(
      endpoints.map((e, i) => ({ label: labels[i], ns: e.sb.netnsPath })),
      endpoints.map((e, i) => ({ label: labels[i], ip: addr(e.sb.eps[e.net].ipv4) })),
      expected,
    );
    ctx.showGrid({ labels, expected, observed });
    const diffs: string[] = [];
    expected.forEach((row, i) =>
      row.forEach((want, j) => {
        if (observed[i][j] !== want) {
          diffs.push(`${labels[i]} -> ${labels[j]}: expected ${want ? "reach" : "blocked"}`);
        }
      })
    );
    if (diffs.length) {
      const i = labels.indexOf(diffs[0].split(" ")[0]);
      const j = labels.indexOf(diffs[0].split(" ")[2].replace(":", ""));
      ctx.fail(
        `${diffs.length} of ${labels.length ** 2} pairs differ: ${diffs.slice(0, 3).join("; ")}`,
        {
          expected: "the matrix implied by membership",
          observed: "see grid",
          reproduce: [
            `nsenter --net=${endpoints[i].sb.netnsPath} ping -c1 -W1 ${
              addr(endpoints[j].sb.eps[endpoints[j].net].ipv4)
            }`,
          ],
        },
        { labels, expected, observed },
      );
    }
  },
});

export const multihomedNoTransit = defineCase({
  id: "multihomed.no-transit",
  area: "iso",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "A sandbox on networks A and B reaches both, but does not forward: a sandbox on A that routes B's subnet through it cannot reach a sandbox on B, nor the multihomed sandbox's B address",
  mirrors: "conformance-anchors §7 case 6 (no implicit forwarding between a container's networks)",
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [a1, m1, b1] = await Promise.all(["a1", "m1", "b1"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a1, a.name);
    await ctx.connect(m1, a.name);
    await ctx.connect(m1, b.name);
    await ctx.connect(b1, b.name);
    await all([a1, m1, b1], ctx);
    await ctx.expectReach(a1, target(m1, a.name), "tcp", true, TCP);
    await ctx.expectReach(b1, target(m1, b.name), "tcp", true, TCP);
    // a1 tries to use m1 as a router into B
    const { inNetns } = await import("../harness/observe.ts");
    const r = await inNetns(a1.netnsPath, [
      "ip",
      "route",
      "add",
      b.subnet,
      "via",
      addr(m1.eps[a.name].ipv4),
    ]);
    if (r.code !== 0) ctx.fail(`cannot add the test route in ${a1.name}: ${r.stderr.trim()}`);
    await Promise.all([
      ctx.expectReach(a1, target(b1, b.name), "icmp", false),
      ctx.expectReach(a1, target(b1, b.name), "tcp", false, TCP),
      ctx.expectReach(b1, target(a1, a.name), "icmp", false),
    ]);
  },
});

export const connCases = [
  connSameNetwork,
  isoInterNetwork,
  isoIccDisabled,
  isoInternal,
  isoInternalNoRoute,
  connEgress,
  matrixFull,
  multihomedNoTransit,
];
