/**
 * What the sandbox (not the driver) owns, as libnetwork's sandbox (osl) programs it: a
 * joined interface's addresses and state, the default routes via the gateway endpoint, and
 * the hosts file.
 * @module
 */
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import type { ControllerContext } from "./context.ts";
import { hostsFile } from "./files.ts";

/**
 * The endpoint that carries a sandbox's default routes, chosen as libnetwork's
 * `Endpoint.Less` orders them (§1.1: non-internal first, then endpoints with a gateway,
 * then by network name).
 */
export function gatewayEndpoint(
  endpoints: EndpointRecord[],
  nets: Map<string, NetworkRecord>,
): EndpointRecord | undefined {
  return [...endpoints].filter((e) => e.ifname).sort((a, b) => {
    const na = nets.get(a.networkId), nb = nets.get(b.networkId);
    const ia = na?.internal ? 1 : 0, ib = nb?.internal ? 1 : 0;
    if (ia !== ib) return ia - ib;
    const ga = (a.gateway ? 1 : 0) + (a.gatewayV6 ? 1 : 0);
    const gb = (b.gateway ? 1 : 0) + (b.gatewayV6 ? 1 : 0);
    if (ga !== gb) return gb - ga;
    return (na?.name ?? "").localeCompare(nb?.name ?? "");
  })[0];
}

/**
 * Programs what the sandbox owns: the addresses and state of a joined interface (`lines`,
 * {@linkcode interfaceLines}), the default routes via the gateway endpoint
 * ({@linkcode gatewayEndpoint}), in one `ip -batch` in the sandbox, and the hosts file.
 * Routes are only touched when the gateway endpoint changes; the routes of an interface
 * that is gone went with it.
 */
export async function programSandbox(
  ctx: ControllerContext,
  before: EndpointRecord[],
  after: EndpointRecord[],
  sb: SandboxRecord,
  nets: Map<string, NetworkRecord>,
  lines: string[] = [],
): Promise<void> {
  const old = gatewayEndpoint(before, nets), now = gatewayEndpoint(after, nets);
  const routeKey = (e?: EndpointRecord) =>
    e ? `${e.id}|${e.gateway ?? ""}|${e.gatewayV6 ?? ""}` : "";
  if (routeKey(old) !== routeKey(now)) {
    const oldAlive = !!old && after.some((e) => e.id === old.id);
    await ctx.kernel.ipForce(sb.netnsName, [
      ...(oldAlive && old.gateway && !now?.gateway ? [`route del default via ${old.gateway}`] : []),
      ...(oldAlive && old.gatewayV6 && !now?.gatewayV6
        ? [`route del default via ${old.gatewayV6}`]
        : []),
    ]);
    lines = [...lines, ...routeLines(now)];
  }
  await ctx.kernel.ip(sb.netnsName, lines);
  await ctx.kernel.fs.writeTextFile(
    ctx.kernel.etcNetnsPath(sb.netnsName, "hosts"),
    hostsContent(sb, after),
  );
}

/**
 * Gives a joined interface with an IPv6 address its IPv6 back: a sandbox is made with IPv6
 * off (as Docker 20.10's containers are on an IPv4 network), which would refuse the address.
 */
export async function enableIpv6(ctx: ControllerContext, sb: SandboxRecord, ep: EndpointRecord) {
  if (ep.ipv6 && ep.ifname) {
    await ctx.kernel.sysctl(sb.netnsName, `net.ipv6.conf.${ep.ifname}.disable_ipv6`, "0");
  }
}

/**
 * Lines that configure a joined interface inside its sandbox: its addresses (`replace`, so
 * a driver that set them already is no error) and up.
 */
export function interfaceLines(ep: EndpointRecord): string[] {
  if (!ep.ifname) return [];
  const lines = [ep.ipv4, ep.ipv6].filter((a): a is string => !!a).map((a) =>
    `addr replace ${a} dev ${ep.ifname}${a.includes(":") ? " nodad" : ""}`
  );
  lines.push(`link set dev ${ep.ifname} up`);
  return lines;
}

/** Lines that set a sandbox's default routes via an endpoint (the family follows the gateway). */
export function routeLines(ep?: EndpointRecord): string[] {
  const lines: string[] = [];
  if (ep?.gateway) lines.push(`route replace default via ${ep.gateway} dev ${ep.ifname}`);
  if (ep?.gatewayV6) lines.push(`route replace default via ${ep.gatewayV6} dev ${ep.ifname}`);
  return lines;
}

/** The hosts file of a sandbox with these endpoints. */
export function hostsContent(sb: SandboxRecord, endpoints: EndpointRecord[]): string {
  const addresses = endpoints.flatMap((e) => [e.ipv4, e.ipv6]).filter((a): a is string => !!a);
  return hostsFile(sb.hostname, addresses);
}
