/**
 * Published ports (capability "ports"): reachable from outside, from the host, by hairpin;
 * gone after disconnect.
 * @module
 */
import { OUTSIDE } from "../harness/hosts.ts";
import { type CaseContext, defineCase, type Sb } from "./framework.ts";

const HOST_IP = OUTSIDE.host.split("/")[0];

async function published(ctx: CaseContext, hostPort: number) {
  const net = await ctx.network("pub", { driver: "bridge", subnet: ctx.subnet() });
  const s = await ctx.sandbox("web");
  await ctx.connect(s, net.name, { publish: [{ hostPort, containerPort: 80, protocol: "tcp" }] });
  await ctx.responders(s, { tcp: [80] });
  const host = ctx.hosts[0];
  const outside: Sb = { name: "outside", netnsPath: host.outsideNetnsPath, eps: {} };
  const hostSb: Sb = { name: "host", netnsPath: host.netnsPath, eps: {} };
  return { net, s, outside, hostSb };
}

export const portFromOutside = defineCase({
  id: "port.from-outside",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A published TCP port answers from another namespace through the host's address, served by the sandbox",
  mirrors: "Docker -p HOST:CTR (DNAT in the nat DOCKER chain); CNI portmap_integ_test",
  async run(ctx) {
    const { s, outside } = await published(ctx, 18080);
    await ctx.expectReach(
      outside,
      { ip: HOST_IP, identity: s.name, label: `host:18080` },
      "tcp",
      true,
      18080,
    );
  },
});

export const portFromHost = defineCase({
  id: "port.from-host",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "A published TCP port answers from the host namespace itself, on the host's address and on 127.0.0.1",
  mirrors: "Docker without userland proxy: OUTPUT DNAT and route_localnet",
  async run(ctx) {
    const { s, hostSb } = await published(ctx, 18081);
    await ctx.expectReach(
      hostSb,
      { ip: HOST_IP, identity: s.name, label: "host address:18081" },
      "tcp",
      true,
      18081,
    );
    await ctx.expectReach(
      hostSb,
      { ip: "127.0.0.1", identity: s.name, label: "127.0.0.1:18081" },
      "tcp",
      true,
      18081,
    );
  },
});

export const portHairpin = defineCase({
  id: "port.hairpin",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts:
    "The sandbox that owns a published port reaches itself through the host's address (hairpin NAT)",
  mirrors: "Docker hairpin mode with --userland-proxy=false",
  async run(ctx) {
    const { s } = await published(ctx, 18082);
    await ctx.expectReach(
      s,
      { ip: HOST_IP, identity: s.name, label: "host address:18082" },
      "tcp",
      true,
      18082,
    );
  },
});

export const portRemoved = defineCase({
  id: "port.removed-on-disconnect",
  area: "port",
  profile: "core",
  needs: ["bridge", "ports"],
  asserts: "After the sandbox disconnects, its published port no longer answers from outside",
  mirrors: "Docker removes the DNAT rule when the endpoint leaves (revokeExternalConnectivity)",
  async run(ctx) {
    const { s, net, outside } = await published(ctx, 18083);
    await ctx.expectReach(
      outside,
      { ip: HOST_IP, identity: s.name, label: "host:18083" },
      "tcp",
      true,
      18083,
    );
    await ctx.impl.disconnect(s.name, net.name);
    await ctx.expectReach(
      outside,
      { ip: HOST_IP, label: "host:18083 after disconnect" },
      "tcp",
      false,
      18083,
    );
  },
});

export const portCases = [portFromOutside, portFromHost, portHairpin, portRemoved];
