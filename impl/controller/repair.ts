/**
 * The repairs reconcile (./reconcile.ts) makes: an endpoint record dropped with what is
 * left of it, a broken endpoint re-created as it was stored, a sandbox's missing or stale
 * files put back, and how an endpoint's interface is found wrong.
 * @module
 */
import type { JoinRequest, NetworkDriver } from "../driver_api/mod.ts";
import type { LinkInfo } from "../kernel/kernel.ts";
import { formatIp, tryParseIp } from "../model/ip.ts";
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import { type ControllerContext, endpointsOf } from "./context.ts";
import { joinRequest } from "./endpoints.ts";
import type { ReconcileItem, ReconcileReport } from "./reconcile.ts";
import { sandboxResolvConf } from "./resolver_sync.ts";
import { enableIpv6, hostsContent, interfaceLines } from "./sandbox_config.ts";

/** Adds an item to one list of the report (and logs it). */
export type Note = (list: keyof ReconcileReport, item: ReconcileItem) => void;

/**
 * Drops an endpoint record: the driver's objects (Leave, when the sandbox is still there,
 * then Delete), its addresses, the record and its place in the sandbox.
 */
export async function dropEndpoint(
  ctx: ControllerContext,
  ep: EndpointRecord,
  nets: Map<string, NetworkRecord>,
  sandboxAlive: boolean,
): Promise<void> {
  const net = nets.get(ep.networkId);
  const driver = net ? ctx.drivers.get(net.driver) : undefined;
  const sb = ep.sandboxId ? ctx.store.get("sandbox", ep.sandboxId) : undefined;
  if (net && driver) {
    if (sb && sandboxAlive) {
      await driver.leave(joinRequest(sb, ep, net)).catch(() => {});
    }
    await driver.deleteEndpoint(net.id, ep.id, ep.driverData).catch(() => {});
    if (ep.ipv4 && net.ipv4[0]) {
      await ctx.ipam.releaseAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]).catch(() => {});
    }
    if (ep.ipv6 && net.ipv6[0]) {
      await ctx.ipam.releaseAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]).catch(() => {});
    }
  }
  ctx.store.transaction((tx) => {
    tx.delete("endpoint", ep.id);
    if (sb) tx.put("sandbox", { ...sb, endpoints: sb.endpoints.filter((i) => i !== ep.id) });
  });
}

/**
 * Re-creates a broken endpoint with the same id, address, MAC and interface name: Leave and
 * Delete what is left of it, then CreateEndpoint and Join again.
 */
export async function recreateEndpoint(
  ctx: ControllerContext,
  sb: SandboxRecord,
  ep: EndpointRecord,
  net: NetworkRecord,
  driver: NetworkDriver,
): Promise<void> {
  await driver.leave(joinRequest(sb, ep, net));
  await driver.deleteEndpoint(net.id, ep.id, ep.driverData);
  const iface = { address: ep.ipv4, addressV6: ep.ipv6, mac: ep.mac };
  const created = await driver.createEndpoint(net.id, ep.id, iface);
  const req: JoinRequest = {
    ...joinRequest(sb, ep, net),
    iface: { ...iface, mac: created.mac ?? ep.mac },
    driverData: created.driverData,
  };
  let joined;
  try {
    joined = await driver.join(req);
  } catch (err) {
    await driver.deleteEndpoint(net.id, ep.id, created.driverData).catch(() => {});
    throw err;
  }
  const updated: EndpointRecord = {
    ...ep,
    mac: created.mac ?? ep.mac,
    gateway: joined.gateway,
    gatewayV6: joined.gatewayV6,
    driverData: { ...created.driverData, ...(joined.driverData ?? {}) },
  };
  try {
    await enableIpv6(ctx, sb, updated);
    await ctx.kernel.ip(sb.netnsName, interfaceLines(updated));
  } catch (err) {
    await driver.leave({ ...req, driverData: updated.driverData }).catch(() => {});
    await driver.deleteEndpoint(net.id, ep.id, updated.driverData).catch(() => {});
    throw err;
  }
  ctx.store.transaction((tx) => tx.put("endpoint", updated));
}

/** Puts back a sandbox's hosts, resolv.conf and hostname files when missing or stale. */
export async function reconcileFiles(
  ctx: ControllerContext,
  sb: SandboxRecord,
  note: Note,
): Promise<void> {
  const fs = ctx.kernel.fs;
  const hostsPath = ctx.kernel.etcNetnsPath(sb.netnsName, "hosts");
  const hosts = hostsContent(sb, endpointsOf(ctx, sb));
  const current = await fs.readTextFile(hostsPath);
  if (current !== hosts) {
    await fs.mkdir(ctx.kernel.etcNetnsPath(sb.netnsName));
    await fs.writeTextFile(hostsPath, hosts);
    note("recreated", {
      kind: "file",
      name: hostsPath,
      reason: current === undefined ? "it was missing" : "it did not list the sandbox's addresses",
    });
  }
  const resolvPath = ctx.kernel.etcNetnsPath(sb.netnsName, "resolv.conf");
  if ((await fs.readTextFile(resolvPath)) === undefined) {
    await fs.writeTextFile(
      resolvPath,
      sandboxResolvConf(ctx, await fs.readTextFile("/etc/resolv.conf")),
    );
    note("recreated", { kind: "file", name: resolvPath, reason: "it was missing" });
  }
  const hostnamePath = ctx.kernel.etcNetnsPath(sb.netnsName, "hostname");
  if ((await fs.readTextFile(hostnamePath)) === undefined) {
    await fs.writeTextFile(hostnamePath, sb.hostname + "\n");
    note("recreated", { kind: "file", name: hostnamePath, reason: "it was missing" });
  }
}

/**
 * What is wrong with an endpoint's interface in its sandbox (`links` from `ip -j addr`):
 * missing, down, another MAC, an address missing; undefined when it is as stored.
 */
export function interfaceProblem(ep: EndpointRecord, links: LinkInfo[]): string | undefined {
  const link = links.find((l) => l.ifname === ep.ifname);
  if (!link) return `interface ${ep.ifname} is missing in the sandbox`;
  if (!link.flags?.includes("UP")) return `interface ${ep.ifname} is down`;
  if (ep.mac && link.address !== ep.mac) {
    return `interface ${ep.ifname} has MAC ${link.address}, not ${ep.mac}`;
  }
  const have = new Set((link.addr_info ?? []).map((a) => canonical(`${a.local}/${a.prefixlen}`)));
  for (const a of [ep.ipv4, ep.ipv6]) {
    if (a && !have.has(canonical(a))) return `interface ${ep.ifname} lacks address ${a}`;
  }
  return undefined;
}

/** `ADDR/LEN` in canonical form (RFC 5952 for IPv6), so spellings compare equal. */
function canonical(cidr: string): string {
  const [addr, len] = cidr.split("/");
  const ip = tryParseIp(addr);
  return ip ? `${formatIp(ip.family, ip.value)}/${len}` : cidr;
}
