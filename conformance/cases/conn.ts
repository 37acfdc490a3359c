/**
 * Connectivity and isolation cases.
 * @module
 */
import { HARNESS_PORTS, OUTSIDE } from "../harness/hosts.ts";
import { observeAddrs, observeDefaultGateway } from "../harness/observe.ts";
import { newToken, probeIcmp } from "../probes/mod.ts";
import {
  addr,
  type CaseContext,
  defineCase,
  gridDiffs,
  hostNs,
  type MatrixCell,
  PROTOS,
  type Sandbox,
  type Target,
  target,
  worldTarget,
} from "./framework.ts";

const HOST_IP = addr(OUTSIDE.host);

async function serveAll(sbs: Sandbox[], ctx: CaseContext) {
  await Promise.all(sbs.map((s) => ctx.responders(s)));
}

function world(ctx: CaseContext): Target {
  return worldTarget(ctx.hosts[0]);
}

export const connSameNetwork = defineCase({
  id: "conn.same-network",
  area: "conn",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Every pair of sandboxes on one bridge network reaches the other by IP over ICMP, TCP and UDP: the addressed sandbox's responder answers and its witness saw the probe",
  mirrors: "k8s intra-pod communication; libnetwork dnet test_single_network_connectivity",
  async run(ctx) {
    const net = await ctx.network("net", { driver: "bridge", subnet: ctx.subnet() });
    const sbs = await Promise.all(["a", "b", "c"].map((n) => ctx.sandbox(n)));
    for (const s of sbs) await ctx.connect(s, net.name);
    await serveAll(sbs, ctx);
    const checks = [];
    for (const from of sbs) {
      for (const to of sbs) {
        if (from === to) continue;
        for (const p of PROTOS) checks.push(ctx.expectReach(from, target(to, net.name), p));
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
    "No packet from a sandbox on one bridge network arrives at a sandbox on another, in either direction, over ICMP, TCP or UDP (10 packets each), while each source reaches its own network's peer at the same moment",
  mirrors: "moby TestBridgeINC; DOCKER-ISOLATION-STAGE-1/2 (research/libnetwork.md §3.1)",
  async run(ctx) {
    const a = await ctx.network("a", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("b", { driver: "bridge", subnet: ctx.subnet() });
    const [a1, a2, b1, b2] = await Promise.all(["a1", "a2", "b1", "b2"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a1, a.name);
    await ctx.connect(a2, a.name);
    await ctx.connect(b1, b.name);
    await ctx.connect(b2, b.name);
    await serveAll([a1, a2, b1, b2], ctx);
    await Promise.all(PROTOS.flatMap((p) => [
      ctx.expectBlocked(a1, target(b1, b.name), p, { control: target(a2, a.name) }),
      ctx.expectBlocked(b1, target(a1, a.name), p, { control: target(b2, b.name) }),
      ctx.expectBlocked(b2, target(a2, a.name), p, { control: target(b1, b.name) }),
    ]));
  },
});

export const isoStableDuringChanges = defineCase({
  id: "iso.stable-during-changes",
  area: "iso",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "While other networks are created and removed (10 times), none of 1000 pings (2 ms apart) from a sandbox on one network arrives at a sandbox on another: isolation has no gap while the rules change",
  mirrors:
    "nft transactions are atomic; Docker 20.10 deletes and re-inserts its FORWARD jumps per network (iptables -D/-I), measured here to let ~1% of packets cross meanwhile",
  async run(ctx) {
    const a = await ctx.network("a", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("b", { driver: "bridge", subnet: ctx.subnet() });
    const [a1, a2, b1] = await Promise.all(["a1", "a2", "b1"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a1, a.name);
    await ctx.connect(a2, a.name);
    await ctx.connect(b1, b.name);
    // the path works and isolation holds before the changes
    await ctx.expectBlocked(a1, target(b1, b.name), "icmp", { control: target(a2, a.name) });
    const w = await ctx.witness(b1);
    const { pattern } = newToken("icmp");
    const count = 1000;
    const flood = probeIcmp(a1.netnsPath, target(b1, b.name).ip, {
      pattern,
      count,
      intervalMs: 2,
      timeoutMs: 1000,
    });
    const churn = ctx.subnet();
    for (let i = 0; i < 10; i++) {
      const name = ctx.name(`churn${i}`);
      await ctx.impl.createNetwork({ name, driver: "bridge", subnet: churn });
      await ctx.impl.removeNetwork(name);
    }
    const sent = await flood;
    await w.sync();
    const arrived = w.saw({ proto: "icmp", pattern });
    if (arrived.length) {
      ctx.fail(
        `${a1.name} -> ${b1.name}@${b.name} while other networks were created and removed: expected blocked, ${arrived.length} of ${count} packets arrived at ${b1.name}`,
        {
          expected: `none of ${count} packets arrives`,
          observed: `${arrived.length} of ${count} arrived`,
          reproduce: [sent.command, w.command],
        },
      );
    }
  },
});

export const isoIccDisabled = defineCase({
  id: "iso.icc-disabled",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.icc"],
  asserts:
    "On a network with com.docker.network.bridge.enable_icc=false, no packet from one sandbox arrives at another in either direction (ICMP, TCP, UDP), while each reaches its gateway at the same moment",
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
    await serveAll([s1, s2], ctx);
    const host = hostNs(ctx.hosts[0]);
    const gw = (gateway?: string): Target => ({
      ip: addr(gateway ?? net.gateway),
      identity: "host",
      label: "gateway",
      at: host,
    });
    await Promise.all(PROTOS.flatMap((p) => [
      ctx.expectBlocked(s1, target(s2, net.name), p, {
        control: gw(e1.gateway),
        controlPort: p === "tcp" ? HARNESS_PORTS.tcp : HARNESS_PORTS.udp,
      }),
      ctx.expectBlocked(s2, target(s1, net.name), p, {
        control: gw(e2.gateway),
        controlPort: p === "tcp" ? HARNESS_PORTS.tcp : HARNESS_PORTS.udp,
      }),
    ]));
  },
});

export const isoInternal = defineCase({
  id: "iso.internal-network",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.internal"],
  asserts:
    "No packet from a sandbox on an --internal network arrives in the external world (ICMP, TCP, UDP; the world has a route back, so un-NATed egress would be seen), while the sandbox reaches its network peer at the same moment",
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
    await serveAll([s1, s2], ctx);
    await Promise.all(
      PROTOS.map((p) =>
        ctx.expectBlocked(s1, world(ctx), p, {
          control: target(s2, net.name),
          port: p === "tcp" ? HARNESS_PORTS.tcp : HARNESS_PORTS.udp,
        })
      ),
    );
  },
});

export const isoInternalNoRoute = defineCase({
  id: "iso.internal-no-route",
  area: "iso",
  profile: "core",
  needs: ["bridge", "bridge.internal"],
  asserts:
    "A sandbox on an --internal network has no default route, and no packet from it arrives at the host's own outside address, while it reaches its network peer",
  mirrors:
    "libnetwork bridge Join sets no gateway for internal networks (research/libnetwork.md §3.1, current)",
  async run(ctx) {
    const net = await ctx.network("int", {
      driver: "bridge",
      subnet: ctx.subnet(),
      internal: true,
    });
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    await serveAll([s2], ctx);
    const gw = await observeDefaultGateway(s1.netnsPath);
    if (gw) {
      ctx.fail(`the sandbox has a default route via ${gw}`, {
        expected: "no default route",
        observed: `default via ${gw}`,
        reproduce: [`nsenter --net=${s1.netnsPath} ip route`],
      });
    }
    const hostOut: Target = {
      ip: HOST_IP,
      label: "host outside address",
      at: hostNs(ctx.hosts[0]),
    };
    await ctx.expectBlocked(s1, hostOut, "icmp", { control: target(s2, net.name) });
  },
});

export const connEgress = defineCase({
  id: "conn.egress-masquerade",
  area: "conn",
  profile: "core",
  needs: ["bridge", "bridge.masquerade"],
  asserts:
    "A sandbox on a (non-internal) bridge network reaches the external world through the host (TCP, UDP, ICMP), and the world sees the host's outside address as the source: its traffic is masqueraded",
  mirrors: "Docker's POSTROUTING MASQUERADE for each bridge subnet (research/libnetwork.md §3.1)",
  async run(ctx) {
    const net = await ctx.network("egress", { driver: "bridge", subnet: ctx.subnet() });
    const s1 = await ctx.sandbox("s1");
    const ep = await ctx.connect(s1, net.name);
    const results = await Promise.all(PROTOS.map(async (p) => ({
      p,
      o: await ctx.expectReach(s1, world(ctx), p, {
        port: p === "tcp" ? HARNESS_PORTS.tcp : HARNESS_PORTS.udp,
      }),
    })));
    for (const { p, o } of results) {
      const sources = [...new Set(o.arrivals.map((a) => a.src))];
      if (sources.length !== 1 || sources[0] !== HOST_IP) {
        ctx.fail(
          `${s1.name} -> external world over ${p}: the world saw source ${
            sources.join(", ")
          }, not the host's address ${HOST_IP} (not masqueraded)`,
          {
            expected: `source ${HOST_IP} (masquerade)`,
            observed: `source ${sources.join(", ")} (the sandbox is ${ep.ipv4})`,
            reproduce: [o.command],
          },
        );
      }
    }
  },
});

export const connMtu = defineCase({
  id: "conn.mtu",
  area: "conn",
  profile: "core",
  needs: ["bridge", "bridge.mtu"],
  asserts:
    "With com.docker.network.driver.mtu=1400 the sandbox's interface has MTU 1400; a don't-fragment ping of exactly 1400 bytes reaches the peer, one of 1401 bytes never arrives",
  mirrors: "docker network create -o com.docker.network.driver.mtu (research/libnetwork.md §3.1)",
  async run(ctx) {
    const mtu = 1400;
    const net = await ctx.network("mtu", {
      driver: "bridge",
      subnet: ctx.subnet(),
      options: { "com.docker.network.driver.mtu": String(mtu) },
    });
    const [s1, s2] = await Promise.all(["s1", "s2"].map((n) => ctx.sandbox(n)));
    const e1 = await ctx.connect(s1, net.name);
    await ctx.connect(s2, net.name);
    const inside = (await observeAddrs(s1.netnsPath)).find((a) => a.address === addr(e1.ipv4));
    if (!inside || inside.mtu !== mtu) {
      ctx.fail(`${s1.name}'s interface has MTU ${inside?.mtu ?? "?"}`, {
        expected: `MTU ${mtu}`,
        observed: `MTU ${inside?.mtu ?? "unknown"} on ${inside?.ifname ?? "?"}`,
        reproduce: [`nsenter --net=${s1.netnsPath} ip link`],
      });
    }
    const peer = target(s2, net.name);
    // ICMP payload = MTU - 20 (IPv4 header) - 8 (ICMP header)
    const at = { size: mtu - 28, dontFragment: true };
    await ctx.expectReach(s1, peer, "icmp", at);
    await ctx.expectBlocked(s1, peer, "icmp", {
      size: mtu - 27,
      dontFragment: true,
      control: peer,
      controlSize: mtu - 28,
    });
  },
});

export const matrixFull = defineCase({
  id: "matrix.full-reachability",
  area: "matrix",
  profile: "core",
  needs: ["bridge"],
  asserts:
    "Over 6 sandboxes on 3 networks (one sandbox on two), the observed ICMP reachability of every address (witnessed at the target; negatives as 10-packet bursts after a control) equals the one implied by network membership",
  mirrors: "k8s network policy truth tables (truthtable.go); Cyclonus grids",
  async run(ctx) {
    const nets = await Promise.all(
      ["A", "B", "C"].map((n) => ctx.network(n, { driver: "bridge", subnet: ctx.subnet() })),
    );
    const [A, B, C] = nets.map((n) => n.name);
    const members: [string, string[]][] = [
      ["a1", [A]],
      ["a2", [A]],
      ["b1", [B]],
      ["m1", [A, B]],
      ["c1", [C]],
      ["c2", [C]],
    ];
    const sbs: Sandbox[] = [];
    for (const [n, on] of members) {
      const s = await ctx.sandbox(n);
      for (const net of on) await ctx.connect(s, net);
      sbs.push(s);
    }
    const endpoints = sbs.flatMap((s) => Object.keys(s.endpoints).map((net) => ({ sb: s, net })));
    const short = (x: string) => x.slice(x.lastIndexOf("-") + 1);
    const labels = endpoints.map((e) => `${short(e.sb.name)}@${short(e.net)}`);
    const expected = endpoints.map((src) =>
      endpoints.map((dst) => src.sb === dst.sb || dst.net in src.sb.endpoints)
    );
    const cells: MatrixCell[][] = endpoints.map((src, i) =>
      endpoints.map((dst, j) => ({
        from: src.sb,
        to: { ...target(dst.sb, dst.net), label: labels[j] },
        want: expected[i][j],
      }))
    );
    const controls = endpoints.map((src) => {
      const peer = endpoints.find((d) => d.sb !== src.sb && d.net === src.net);
      return peer ? target(peer.sb, peer.net) : undefined;
    });
    const observed = await ctx.matrix(cells, controls);
    ctx.showGrid({ labels, expected, observed });
    const diffs = gridDiffs(labels, expected, observed);
    if (diffs.length) {
      const { i, j } = diffs[0];
      ctx.fail(
        `${diffs.length} of ${labels.length ** 2} pairs differ: ${
          diffs.slice(0, 3).map((d) => d.text).join("; ")
        }`,
        {
          expected: "the matrix implied by membership",
          observed: "see grid",
          reproduce: [
            `nsenter --net=${endpoints[i].sb.netnsPath} ping -c1 -W1 ${cells[i][j].to.ip}`,
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
    "A sandbox on networks A and B does not forward: a sandbox on A that routes B's subnet through it gets no packet through to a sandbox on B (ICMP, TCP), while it reaches the multihomed sandbox",
  mirrors: "conformance-anchors §7 case 6 (no implicit forwarding between a container's networks)",
  async run(ctx) {
    const a = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const b = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [a1, m1, b1] = await Promise.all(["a1", "m1", "b1"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a1, a.name);
    await ctx.connect(m1, a.name);
    await ctx.connect(m1, b.name);
    await ctx.connect(b1, b.name);
    await serveAll([m1, b1], ctx);
    // a1 tries to use m1 as a router into B
    const { inNetns } = await import("../harness/observe.ts");
    const r = await inNetns(a1.netnsPath, [
      "ip",
      "route",
      "add",
      b.subnet,
      "via",
      addr(m1.endpoints[a.name].ipv4),
    ]);
    if (r.code !== 0) ctx.fail(`cannot add the test route in ${a1.name}: ${r.stderr.trim()}`);
    await Promise.all(
      (["icmp", "tcp"] as const).map((p) =>
        ctx.expectBlocked(a1, target(b1, b.name), p, { control: target(m1, a.name) })
      ),
    );
  },
});

export const connCases = [
  connSameNetwork,
  isoInterNetwork,
  isoStableDuringChanges,
  isoIccDisabled,
  isoInternal,
  isoInternalNoRoute,
  connEgress,
  connMtu,
  matrixFull,
  multihomedNoTransit,
];
