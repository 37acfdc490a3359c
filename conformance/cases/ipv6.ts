/**
 * IPv6 on bridge networks (capability "ipv6"): dual-stack endpoints, IPv6 connectivity
 * within a network, and the same isolation between networks as for IPv4.
 * @module
 */
import { addr, defineCase, type Proto, type Sb } from "./framework.ts";

const PROTOS: Proto[] = ["icmp", "tcp", "udp"];
const TCP = 8080, UDP = 5353;

/** A ULA /64 derived from the case's unique IPv4 subnet (`10.210.5.0/24` → `fd00:cafe:210:5::/64`). */
function v6Of(v4: string): string {
  const [, b, c] = v4.split("/")[0].split(".");
  return `fd00:cafe:${b}:${c}::/64`;
}

function target6(sb: Sb, net: string) {
  return { ip: addr(sb.eps[net].ipv6), identity: sb.name, label: `${sb.name}@${net} (IPv6)` };
}

export const connIpv6 = defineCase({
  id: "conn.ipv6",
  area: "conn",
  profile: "core",
  needs: ["bridge", "ipv6"],
  asserts:
    "Endpoints of a bridge network with an IPv6 subnet get an IPv4 and an IPv6 address; sandboxes reach each other over IPv6 (ICMP, TCP, UDP), and not a sandbox of another network",
  mirrors: "docker network create --ipv6; moby TestBridgeINC for IPv6 (ip6tables isolation)",
  async run(ctx) {
    const s1 = ctx.subnet(), s2 = ctx.subnet();
    const net = await ctx.network("v6", { driver: "bridge", subnet: s1, ipv6Subnet: v6Of(s1) });
    const other = await ctx.network("v6b", {
      driver: "bridge",
      subnet: s2,
      ipv6Subnet: v6Of(s2),
    });
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a, net.name);
    await ctx.connect(b, net.name);
    await ctx.connect(c, other.name);
    for (const s of [a, b]) {
      const ep = s.eps[net.name];
      if (!ep.ipv4 || !ep.ipv6) {
        throw new Error(`${s.name} is not dual-stack: ipv4 ${ep.ipv4}, ipv6 ${ep.ipv6}`);
      }
    }
    await Promise.all([a, b, c].map((s) => ctx.responders(s, { tcp: [TCP], udp: [UDP] })));
    const checks = [];
    for (const p of PROTOS) {
      const port = p === "tcp" ? TCP : UDP;
      checks.push(ctx.expectReach(a, target6(b, net.name), p, true, port));
      checks.push(ctx.expectReach(b, target6(a, net.name), p, true, port));
      checks.push(ctx.expectReach(a, target6(c, other.name), p, false, port));
      checks.push(ctx.expectReach(c, target6(b, net.name), p, false, port));
    }
    await Promise.all(checks);
  },
});

export const ipv6Cases = [connIpv6];
