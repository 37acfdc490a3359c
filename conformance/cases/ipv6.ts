/**
 * IPv6 on bridge networks (capability "ipv6"): dual-stack endpoints, IPv6 connectivity
 * within a network, and the same isolation between networks as for IPv4.
 * @module
 */
import { defineCase, PROTOS, target } from "./framework.ts";

/** A ULA /64 derived from the case's unique IPv4 subnet (`10.210.5.0/24` → `fd00:cafe:210:5::/64`). */
function v6Of(v4: string): string {
  const [, b, c] = v4.split("/")[0].split(".");
  return `fd00:cafe:${b}:${c}::/64`;
}

export const connIpv6 = defineCase({
  id: "conn.ipv6",
  area: "conn",
  profile: "core",
  needs: ["bridge", "ipv6"],
  asserts:
    "Endpoints of a bridge network with an IPv6 subnet get an IPv4 and an IPv6 address; sandboxes reach each other over IPv6 (ICMP, TCP, UDP), and no packet of theirs arrives at a sandbox of another network",
  mirrors: "docker network create --ipv6; moby TestBridgeINC for IPv6 (ip6tables isolation)",
  async run(ctx) {
    const s1 = ctx.subnet(), s2 = ctx.subnet();
    const net = await ctx.network("v6", { driver: "bridge", subnet: s1, ipv6Subnet: v6Of(s1) });
    const other = await ctx.network("v6b", {
      driver: "bridge",
      subnet: s2,
      ipv6Subnet: v6Of(s2),
    });
    const [a, b, c, d] = await Promise.all(["a", "b", "c", "d"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a, net.name);
    await ctx.connect(b, net.name);
    await ctx.connect(c, other.name);
    await ctx.connect(d, other.name);
    for (const s of [a, b]) {
      const ep = s.endpoints[net.name];
      if (!ep.ipv4 || !ep.ipv6) {
        ctx.fail(`${s.name} is not dual-stack: ipv4 ${ep.ipv4}, ipv6 ${ep.ipv6}`);
      }
    }
    await Promise.all([a, b, c, d].map((s) => ctx.responders(s)));
    // the positives converge the IPv6 paths (duplicate address detection takes ~2 s) before
    // any negative counts; the negatives' controls are IPv6 peers of their own network
    await Promise.all(PROTOS.flatMap((p) => [
      ctx.expectReach(a, target(b, net.name, 6), p),
      ctx.expectReach(b, target(a, net.name, 6), p),
    ]));
    await Promise.all(PROTOS.flatMap((p) => [
      ctx.expectBlocked(a, target(c, other.name, 6), p, { control: target(b, net.name, 6) }),
      ctx.expectBlocked(c, target(b, net.name, 6), p, { control: target(d, other.name, 6) }),
    ]));
  },
});

export const ipv6Cases = [connIpv6];
