/**
 * What the embedded DNS is told (research/libnetwork.md §4.1-4.2): sandboxes as they come
 * and go, each endpoint's names on its network, everything again after a start (the
 * resolver keeps nothing); and the resolv.conf a sandbox gets, which depends on whether
 * there is an embedded resolver.
 * @module
 */
import type { DnsEndpoint } from "../dns/records.ts";
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import { GWBRIDGE } from "./names.ts";
import { type ControllerContext, endpointsOf, networksById } from "./context.ts";
import { resolvConf } from "./files.ts";

/** What the controller tells the embedded resolver (research/libnetwork.md §4.1-4.2). */
export interface SandboxResolver {
  addSandbox(sandboxId: string, netnsPath: string): Promise<void>;
  removeSandbox(sandboxId: string): Promise<void>;
  upsertEndpoint(ep: DnsEndpoint): void;
  removeEndpoint(sandboxId: string, networkId: string): void;
}

/** Docker's resolv.conf for sandboxes served by the embedded resolver. */
export const EMBEDDED_RESOLV_CONF = "nameserver 127.0.0.11\noptions ndots:0\n";

/** A sandbox's resolv.conf: the embedded resolver's, or else from `dns` or the host's. */
export function sandboxResolvConf(ctx: ControllerContext, hostResolv: string | undefined): string {
  return ctx.resolver ? EMBEDDED_RESOLV_CONF : resolvConf(ctx.dns, hostResolv);
}

/**
 * Whether an endpoint gives no external access, for the resolver's forwarding: no gateway is
 * no way out (internal, a macvlan network without a parent, an overlay without the gateway
 * bridge). Every host computes it the same way, so its tables agree.
 */
function noWayOut(net: NetworkRecord, ep: EndpointRecord): boolean {
  return net.internal || (!ep.gateway && !ep.gatewayV6);
}

/** Tells the resolver about an endpoint: its names on its network (§4.2). */
export function publishEndpoint(
  ctx: ControllerContext,
  ep: EndpointRecord,
  sb: SandboxRecord,
  net: NetworkRecord,
): void {
  if (!ctx.resolver || !ep.ifname) return;
  // the gateway endpoint is anonymous (libnetwork: CreateOptionAnonymous): it counts for
  // forwarding, but gives no names, so none leaks between overlays through it
  const anonymous = net.name === GWBRIDGE && net.driver === "bridge";
  try {
    ctx.resolver.upsertEndpoint({
      sandboxId: sb.id,
      sandboxName: anonymous ? "" : sb.name,
      hostname: anonymous ? "" : sb.hostname,
      networkId: net.id,
      networkName: net.name,
      internal: noWayOut(net, ep),
      aliases: anonymous ? [] : [...ep.aliases, ...ctx.services.aliasesOf(ep.id)],
      ipv4: ep.ipv4?.split("/")[0],
      ipv6: ep.ipv6?.split("/")[0],
    });
  } catch (err) {
    ctx.log(
      `dns: endpoint ${sb.name} on ${net.name}: ${err instanceof Error ? err.message : err}`,
    );
  }
}

/** Tells the resolver again about a stored endpoint (its service names changed). */
export function republishEndpoint(ctx: ControllerContext, ep: EndpointRecord): void {
  const sb = ep.sandboxId ? ctx.store.get("sandbox", ep.sandboxId) : undefined;
  const net = ctx.store.get("network", ep.networkId);
  if (sb && net) publishEndpoint(ctx, ep, sb, net);
}

/**
 * Puts every sandbox and endpoint in the store into the resolver (after a start: the
 * resolver keeps nothing), in join order, which decides which network answers first.
 */
export async function syncResolver(ctx: ControllerContext): Promise<void> {
  if (!ctx.resolver) return;
  const nets = networksById(ctx);
  for (const sb of ctx.store.list("sandbox")) {
    if (!(await ctx.kernel.netnsExists(sb.netnsName))) continue;
    try {
      await ctx.resolver.addSandbox(sb.id, sb.netnsPath);
    } catch (err) {
      ctx.log(`dns: sandbox ${sb.name}: ${err instanceof Error ? err.message : err}`);
      continue;
    }
    for (const ep of endpointsOf(ctx, sb)) {
      const net = nets.get(ep.networkId);
      if (net) publishEndpoint(ctx, ep, sb, net);
    }
  }
}

/**
 * Shares an endpoint's DNS names with the other hosts of a global network, under this
 * host's lease (libnetwork's service-discovery table, apart from the overlay's peers).
 */
export async function shareNames(
  ctx: ControllerContext,
  ep: EndpointRecord,
  sb: SandboxRecord,
  net: NetworkRecord,
): Promise<void> {
  if (!ctx.global || net.scope !== "global" || !ep.ipv4) return;
  await ctx.global.publish("dns", {
    networkId: net.id,
    endpointId: ep.id,
    host: ctx.global.host,
    networkName: net.name,
    internal: noWayOut(net, ep),
    sandboxName: sb.name,
    hostname: sb.hostname,
    aliases: [...ep.aliases],
    ipv4: ep.ipv4.split("/")[0],
  });
}

/** Withdraws what {@linkcode shareNames} shared. */
export async function unshareNames(
  ctx: ControllerContext,
  ep: EndpointRecord,
  net: NetworkRecord,
): Promise<void> {
  if (!ctx.global || net.scope !== "global") return;
  await ctx.global.withdraw("dns", net.id, ep.id);
}

/**
 * Follows the names other hosts share: each remote endpoint is an entry of the resolver's
 * network table (as a sandbox of its own, `remote:<endpoint id>`, with no listener), so
 * local sandboxes on the same global network resolve it; it goes when it is withdrawn or
 * its host's lease expires.
 */
export async function followGlobalNames(ctx: ControllerContext): Promise<void> {
  const global = ctx.global;
  const resolver = ctx.resolver;
  if (!global || !resolver) return;
  await global.follow("dns", (type, rec) => {
    if (rec.host === global.host) return;
    const sandboxId = `remote:${rec.endpointId}`;
    if (type === "delete") {
      resolver.removeEndpoint(sandboxId, rec.networkId);
      return;
    }
    resolver.upsertEndpoint({
      sandboxId,
      sandboxName: rec.sandboxName,
      hostname: rec.hostname,
      networkId: rec.networkId,
      networkName: rec.networkName,
      internal: rec.internal,
      aliases: rec.aliases,
      ipv4: rec.ipv4,
    });
  });
}
