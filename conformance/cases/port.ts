/**
 * Published ports (capability "ports"): reachable from outside, from the host, by hairpin,
 * over UDP; bound to one host address only when asked; no stale DNAT after a disconnect.
 * Every check is judged by the witness of the sandbox the packets must land in.
 * @module
 */
import { HARNESS_PORTS, OUTSIDE } from "../harness/hosts.ts";
import { inNetns } from "../harness/observe.ts";
import type { PortSpec } from "../impl.ts";
import {
  addr,
  type CaseContext,
  defineCase,
  hostNs,
  type Sandbox,
  type Target,
  worldNs,
} from "./framework.ts";

const HOST_IP = addr(OUTSIDE.host);
const HOST_ALT = addr(OUTSIDE.hostAlt);
const CONTAINER_PORT = 80;

/** A sandbox with `publish` on a fresh network, serving TCP and UDP on port 80. */
async function published(ctx: CaseContext, publish: PortSpec[], base = "web") {
  const net = await ctx.network(`${base}net`, { driver: "bridge", subnet: ctx.subnet() });
  const s = await ctx.sandbox(base);
  const ep = await ctx.connect(s, net.name, { publish });
  await ctx.responders(s, { tcp: [CONTAINER_PORT], udp: [CONTAINER_PORT] });
  const host = ctx.hosts[0];
  return { net, s, ep, outside: worldNs(host), hostSb: hostNs(host) };
}

function tcp(hostPort: number, hostIp?: string): PortSpec {
  return {
    hostPort,
    containerPort: CONTAINER_PORT,
    protocol: "tcp",
    ...(hostIp ? { hostIp } : {}),
  };
}

/** The published port at `ip`, landing in sandbox `s`. */
function at(s: Sandbox, ip: string, port: number, label?: string): Target {
  return { ip, identity: s.name, label: label ?? `${ip}:${port}`, at: s };
}

/** The host's own TCP responder, seen from outside (a control for checks from the world). */
function hostResponder(ctx: CaseContext, ip = HOST_IP): Target {
  return {
    ip,
    identity: "host",
    label: `host ${ip}:${HARNESS_PORTS.tcp}`,
    at: hostNs(ctx.hosts[0]),
  };
}

export const portFromOutside = defineCase({
  id: "port.from-outside",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A published TCP port answers from another namespace through the host's address, served by the sandbox (its witness saw the connection)",
  mirrors: "Docker -p HOST:CTR (DNAT in the nat DOCKER chain); CNI portmap_integ_test",
  async run(ctx) {
    const { s, outside } = await published(ctx, [tcp(18080)]);
    await ctx.expectReach(outside, at(s, HOST_IP, 18080), "tcp", { port: 18080 });
  },
});

export const portUdp = defineCase({
  id: "port.udp",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A published UDP port answers from another namespace through the host's address, served by the sandbox",
  mirrors: "Docker -p HOST:CTR/udp (DNAT for udp)",
  async run(ctx) {
    const { s, outside } = await published(ctx, [
      { hostPort: 18086, containerPort: CONTAINER_PORT, protocol: "udp" },
    ]);
    await ctx.expectReach(outside, at(s, HOST_IP, 18086), "udp", { port: 18086 });
  },
});

export const portFromHost = defineCase({
  id: "port.from-host",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A published TCP port answers from the host namespace itself, on the host's address and on 127.0.0.1",
  mirrors: "Docker: OUTPUT DNAT (and route_localnet without the userland proxy)",
  async run(ctx) {
    const { s, hostSb } = await published(ctx, [tcp(18081)]);
    await ctx.expectReach(hostSb, at(s, HOST_IP, 18081), "tcp", { port: 18081 });
    await ctx.expectReach(hostSb, at(s, "127.0.0.1", 18081), "tcp", { port: 18081 });
  },
});

export const portHairpin = defineCase({
  id: "port.hairpin",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "The sandbox that owns a published port reaches itself through the host's address (hairpin NAT)",
  mirrors: "Docker hairpin mode",
  async run(ctx) {
    const { s } = await published(ctx, [tcp(18082)]);
    await ctx.expectReach(s, at(s, HOST_IP, 18082), "tcp", { port: 18082 });
  },
});

export const portNoStaleDnat = defineCase({
  id: "port.no-stale-dnat",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports", "static-ip"],
  asserts:
    "After a sandbox with a published port disconnects, a new sandbox that takes its freed address gets none of the old port's traffic from outside, while another published port still answers",
  mirrors: "Docker removes the DNAT rule when the endpoint leaves (revokeExternalConnectivity)",
  async run(ctx) {
    const { s, net, ep, outside } = await published(ctx, [tcp(18083)]);
    const keep = await published(ctx, [tcp(18093)], "keep");
    const control = at(keep.s, HOST_IP, 18093);
    await ctx.expectReach(outside, at(s, HOST_IP, 18083), "tcp", { port: 18083 });
    await ctx.disconnect(s, net.name);
    const heir = await ctx.sandbox("heir");
    await ctx.connect(heir, net.name, { ipv4: addr(ep.ipv4) });
    await ctx.responders(heir, { tcp: [CONTAINER_PORT] });
    await ctx.expectBlocked(outside, at(heir, HOST_IP, 18083, `old ${HOST_IP}:18083`), "tcp", {
      port: 18083,
      control,
      controlPort: 18093,
    });
  },
});

/**
 * Makes the world send what it addresses to `HOST_IP:port` over TCP with destination
 * 127.0.0.1 instead (rewritten after routing, so it still goes to the host): a crafted
 * packet no ordinary route produces, as an attacker on the host's segment can send.
 */
async function craftLoopback(ctx: CaseContext, port: number) {
  const table = `cnmt_craft_${ctx.name("x").replace(/[^A-Za-z0-9_]/g, "_")}`;
  const world = ctx.hosts[0].outsideNetnsPath;
  const script = [
    `add table ip ${table}`,
    `add chain ip ${table} post { type filter hook postrouting priority 0; policy accept; }`,
    `add rule ip ${table} post ip daddr ${HOST_IP} tcp dport ${port} ip daddr set 127.0.0.1`,
  ].join("\n");
  const r = await inNetns(world, ["nft", "-f", "-"], script);
  if (r.code !== 0) ctx.fail(`cannot craft loopback packets in the world: ${r.stderr.trim()}`);
  ctx.defer(async () => {
    await inNetns(world, ["nft", "delete", "table", "ip", table]);
  });
}

export const portLoopbackOnly = defineCase({
  id: "port.loopback-only",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A port published on 127.0.0.1 answers from the host on 127.0.0.1, and no crafted packet from the neighbouring segment addressed to 127.0.0.1 arrives at the sandbox",
  mirrors:
    "Docker -p 127.0.0.1:H:C; libnetwork's raw PREROUTING drop of 127.0.0.0/8 not from lo (CVE-2020-8558 class)",
  async run(ctx) {
    const port = 18084;
    const { s, hostSb, outside } = await published(ctx, [tcp(port, "127.0.0.1")]);
    await ctx.expectReach(hostSb, at(s, "127.0.0.1", port), "tcp", { port });
    await craftLoopback(ctx, port);
    await ctx.expectBlocked(outside, at(s, HOST_IP, port, `127.0.0.1:${port} (crafted)`), "tcp", {
      port,
      control: hostResponder(ctx),
      controlPort: HARNESS_PORTS.tcp,
    });
  },
});

export const portHostIp = defineCase({
  id: "port.host-ip",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A port published on one host address answers from outside at that address only: no packet sent to the host's other address on that port arrives at the sandbox",
  mirrors: "Docker -p IP:H:C (DNAT with -d IP)",
  async run(ctx) {
    const port = 18085;
    const { s, outside } = await published(ctx, [tcp(port, HOST_ALT)]);
    const bound = at(s, HOST_ALT, port);
    await ctx.expectReach(outside, bound, "tcp", { port });
    await ctx.expectBlocked(outside, at(s, HOST_IP, port), "tcp", { port, control: bound });
  },
});

export const portCases = [
  portFromOutside,
  portUdp,
  portFromHost,
  portHairpin,
  portNoStaleDnat,
  portLoopbackOnly,
  portHostIp,
];
