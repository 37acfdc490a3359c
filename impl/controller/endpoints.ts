/**
 * Endpoints: connect (CreateEndpoint, Join, published ports, then what the sandbox owns and
 * the DNS names) and disconnect (Leave, Delete, addresses released), research/libnetwork.md
 * §1.2 steps 3-6. The controller runs these under its lock and undo stack.
 * @module
 */
import type { JoinRequest, NetworkDriver } from "../driver_api/mod.ts";
import { PORTMAP_OPTION } from "../driver_api/mod.ts";
import type { UndoStack } from "../kernel/undo.ts";
import { ConflictError, ForbiddenError, InvalidArgumentError } from "../model/errors.ts";
import { parseIp, Prefix } from "../model/ip.ts";
import { newId, validateName } from "../model/names.ts";
import type { EndpointRecord, IpamConfig, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import {
  type ControllerContext,
  driverOf,
  endpointsOf,
  findNetwork,
  findSandbox,
  networksById,
} from "./context.ts";
import { beginIntent, forgetIntent } from "./journal.ts";
import { normalizePublish, type PortRequest } from "./ports.ts";
import { publishEndpoint, shareNames, unshareNames } from "./resolver_sync.ts";
import { enableIpv6, interfaceLines, programSandbox } from "./sandbox_config.ts";

/** What `connect` takes (the flags of `cnm connect`). */
export interface ConnectOptions {
  /** Static IPv4 address (`--ip`), without prefix length. */
  ipv4?: string;
  /** Static IPv6 address (`--ip6`). */
  ipv6?: string;
  /** Network-scoped aliases (`--alias`). */
  aliases?: string[];
  /** Ports to publish (`--publish`); a host port 0 or absent = an ephemeral one. */
  publish?: PortRequest[];
}

const IFACE_PREFIX_OPTION = "com.docker.network.container_iface_prefix";

/**
 * Connects a sandbox to a network: CreateEndpoint then Join (§1.2 steps 3-4), then the
 * default route and hosts file. Returns the endpoint.
 */
export async function connect(
  ctx: ControllerContext,
  networkRef: string,
  sandboxRef: string,
  opts: ConnectOptions,
  undo: UndoStack,
): Promise<EndpointRecord> {
  const net = findNetwork(ctx, networkRef);
  const sb = findSandbox(ctx, sandboxRef);
  const driver = driverOf(ctx, net.driver);
  const current = endpointsOf(ctx, sb);
  if (current.some((e) => e.networkId === net.id)) {
    throw new ForbiddenError(
      `endpoint with name ${sb.name} already exists in network ${net.name}`,
    );
  }
  const nets = networksById(ctx);
  const exclusive = (n?: NetworkRecord) => !!n && !!ctx.drivers.get(n.driver)?.exclusive;
  if (
    current.length > 0 &&
    (driver.exclusive || current.some((e) => exclusive(nets.get(e.networkId))))
  ) {
    throw new ForbiddenError(
      `a sandbox cannot be connected to several networks when one of them is in private (none) mode`,
    );
  }
  const aliases = [...new Set(opts.aliases ?? [])];
  for (const a of aliases) validateName("alias", a);
  // the reverse of a service's own check: a service's name on this network is taken
  const taken = new Set(ctx.services.onNetwork(net.id).map((v) => v.name.toLowerCase()));
  for (const n of [sb.name, sb.hostname, ...aliases]) {
    if (taken.has(n.toLowerCase())) {
      throw new ConflictError(`name ${n} is already used on network ${net.name} by a service`);
    }
  }
  const publish = normalizePublish(opts.publish);
  let ipv4: string | undefined;
  let ipv6: string | undefined;
  if (!driver.skipIpam) {
    ipv4 = await allocateAddress(ctx, net.ipv4[0], opts.ipv4, net, "IPv4", undo);
    if (net.ipv6.length > 0) {
      ipv6 = await allocateAddress(ctx, net.ipv6[0], opts.ipv6, net, "IPv6", undo);
    } else if (opts.ipv6) {
      throw new InvalidArgumentError(`network ${net.name} has no IPv6 subnet`);
    }
  } else if (opts.ipv4 || opts.ipv6) {
    throw new InvalidArgumentError(`network ${net.name} has no IPAM: no address can be set`);
  }
  const id = newId();
  const created = await driver.createEndpoint(net.id, id, { address: ipv4, addressV6: ipv6 });
  const ifname = driver.skipIpam ? undefined : nextIfname(
    net.options[IFACE_PREFIX_OPTION] ?? "eth",
    current.map((e) => e.ifname),
  );
  const pending: EndpointRecord = {
    id,
    name: sb.name,
    networkId: net.id,
    sandboxId: sb.id,
    ipv4,
    ipv6,
    mac: created.mac,
    ifname,
    aliases,
    driverData: created.driverData,
    created: new Date().toISOString(),
  };
  // journaled before Join, the first kernel call (CreateEndpoint only names things): a
  // crash from here on is taken back on restart (./journal.ts)
  const intentId = `connect:${id}`;
  beginIntent(ctx, { id: intentId, op: "connect", endpoint: pending }, undo);
  undo.push(`delete endpoint ${id}`, () => driver.deleteEndpoint(net.id, id, created.driverData));
  const joinReq: JoinRequest = {
    networkId: net.id,
    endpointId: id,
    sandbox: sb,
    ifname: ifname ?? "",
    iface: { address: ipv4, addressV6: ipv6, mac: created.mac },
    driverData: created.driverData,
  };
  const joined = await driver.join(joinReq);
  undo.push(`leave ${id}`, () => driver.leave(joinReq));
  let published: EndpointRecord["published"];
  if (publish.length > 0) {
    // Port publishing (§3.1, ProgramExternalConnectivity): the driver binds the ports
    // and gives them back resolved (host address, ephemeral host ports).
    const extReq = { ...joinReq, options: { [PORTMAP_OPTION]: publish } };
    const ext = await driver.programExternalConnectivity(extReq);
    undo.push(`revoke ports of ${id}`, () => driver.revokeExternalConnectivity(extReq));
    published = ext?.published;
    if (!published?.length) {
      throw new InvalidArgumentError(`driver ${driver.type} does not publish ports`);
    }
  }
  const ep: EndpointRecord = {
    ...pending,
    gateway: joined.gateway,
    gatewayV6: joined.gatewayV6,
    staticIpv4: !!opts.ipv4,
    ...(published ? { published } : {}),
    driverData: { ...created.driverData, ...(joined.driverData ?? {}) },
    created: pending.created,
  };
  const updated: SandboxRecord = { ...sb, endpoints: [...sb.endpoints, id] };
  await shareNames(ctx, ep, updated, net);
  undo.push(`unshare names of ${id}`, () => unshareNames(ctx, ep, net));
  await enableIpv6(ctx, updated, ep);
  await programSandbox(ctx, current, [...current, ep], updated, nets, interfaceLines(ep));
  ctx.store.transaction((tx) => {
    tx.put("endpoint", ep);
    tx.put("sandbox", updated);
    tx.delete("intent", intentId);
  });
  publishEndpoint(ctx, ep, updated, net);
  ctx.log(`connect ${sb.name} -> ${net.name} ${ifname ?? "-"} ${ipv4 ?? ""}`);
  return ep;
}

async function allocateAddress(
  ctx: ControllerContext,
  cfg: IpamConfig,
  preferred: string | undefined,
  net: NetworkRecord,
  label: string,
  undo: UndoStack,
): Promise<string> {
  if (preferred) {
    const ip = parseIp(preferred, `${label} address`);
    if (!cfg.userSubnet && label === "IPv4") {
      // Docker 20.10: runconfig.ErrUnsupportedNetworkNoSubnetAndIP
      throw new InvalidArgumentError(
        `user specified IP address is supported only when connecting to networks with user configured subnets`,
      );
    }
    const subnet = Prefix.parse(cfg.subnet);
    if (!subnet.contains(ip)) {
      throw new InvalidArgumentError(
        `${label} address ${preferred} is outside subnet ${cfg.subnet} of network ${net.name}`,
      );
    }
  }
  const addr = await ctx.ipam.requestAddress(cfg.poolId, preferred);
  undo.push(`release ${addr}`, () => ctx.ipam.releaseAddress(cfg.poolId, addr.split("/")[0]));
  return addr;
}

/** Disconnects a sandbox from a network: Leave then Delete (§1.2 steps 5-6). */
export async function disconnect(
  ctx: ControllerContext,
  networkRef: string,
  sandboxRef: string,
): Promise<void> {
  const net = findNetwork(ctx, networkRef);
  const sb = findSandbox(ctx, sandboxRef);
  const ep = endpointsOf(ctx, sb).find((e) => e.networkId === net.id);
  if (!ep) {
    throw new ForbiddenError(`sandbox ${sb.name} is not connected to network ${net.name}`);
  }
  await disconnectEndpoint(ctx, sb, ep, true);
}

/**
 * Takes one endpoint out of its sandbox: ports revoked, Leave, Delete, addresses released,
 * its services and DNS names dropped; with `reprogram`, the sandbox's routes and hosts file
 * follow; with `namespaceGoing` (the sandbox's removal, its interfaces down already), the
 * drivers may leave its links to the namespace's deletion. Returns the sandbox without the
 * endpoint.
 */
export async function disconnectEndpoint(
  ctx: ControllerContext,
  sb: SandboxRecord,
  ep: EndpointRecord,
  reprogram: boolean,
  namespaceGoing = false,
): Promise<SandboxRecord> {
  const nets = networksById(ctx);
  const net = nets.get(ep.networkId);
  const driver = net ? ctx.drivers.get(net.driver) : undefined;
  const before = endpointsOf(ctx, sb);
  const after = before.filter((e) => e.id !== ep.id);
  const updated: SandboxRecord = { ...sb, endpoints: sb.endpoints.filter((i) => i !== ep.id) };
  // journaled before the first kernel call: a crash from here on is finished on restart
  const intentId = `disconnect:${ep.id}`;
  beginIntent(ctx, { id: intentId, op: "disconnect", endpointId: ep.id });
  try {
    await takeOut(ctx, sb, ep, net, driver, namespaceGoing);
    if (reprogram) await programSandbox(ctx, before, after, updated, nets);
  } catch (err) {
    forgetIntent(ctx, intentId);
    throw err;
  }
  ctx.store.transaction((tx) => {
    tx.delete("endpoint", ep.id);
    tx.put("sandbox", updated);
    tx.delete("intent", intentId);
  });
  ctx.log(`disconnect ${sb.name} -x ${net?.name ?? ep.networkId}`);
  return updated;
}

/** Ports revoked, Leave, Delete, addresses released, services and DNS names dropped. */
async function takeOut(
  ctx: ControllerContext,
  sb: SandboxRecord,
  ep: EndpointRecord,
  net: NetworkRecord | undefined,
  driver: NetworkDriver | undefined,
  namespaceGoing: boolean,
): Promise<void> {
  if (driver && net) {
    // the other hosts stop answering its names first (a store that is away fails it here)
    await unshareNames(ctx, ep, net);
    const req = { ...joinRequest(sb, ep, net), namespaceGoing: namespaceGoing || undefined };
    await driver.revokeExternalConnectivity({
      ...req,
      options: ep.published?.length ? { [PORTMAP_OPTION]: ep.published } : {},
    });
    await driver.leave(req);
    await driver.deleteEndpoint(net.id, ep.id, ep.driverData);
    if (ep.ipv4) await ctx.ipam.releaseAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]);
    if (ep.ipv6) await ctx.ipam.releaseAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]);
  }
  // a backend that goes leaves its services at once (issue 8)
  await ctx.services.dropEndpoint(ep.id);
  // no stale answer: the name goes before the interface does (§4.2)
  ctx.resolver?.removeEndpoint(sb.id, ep.networkId);
}

/** The Join (and Leave) request of a stored endpoint. */
export function joinRequest(
  sb: SandboxRecord,
  ep: EndpointRecord,
  net: NetworkRecord,
): JoinRequest {
  return {
    networkId: net.id,
    endpointId: ep.id,
    sandbox: sb,
    ifname: ep.ifname ?? "",
    iface: { address: ep.ipv4, addressV6: ep.ipv6, mac: ep.mac },
    driverData: ep.driverData,
  };
}

/** The lowest free `<prefix>N` among a sandbox's interface names. */
export function nextIfname(prefix: string, used: (string | undefined)[]): string {
  const taken = new Set(used);
  for (let i = 0;; i++) if (!taken.has(`${prefix}${i}`)) return `${prefix}${i}`;
}
