/**
 * Networks: create (IPAM pools and gateways, then the driver), remove, list and inspect
 * (libnetwork `NewNetwork` and `Network.Delete`, research/libnetwork.md §1.2). The
 * controller runs these under its lock and undo stack.
 * @module
 */
import type { CreateNetworkRequest, IpamData, NetworkDriver } from "../driver_api/mod.ts";
import type { UndoStack } from "../kernel/undo.ts";
import { ConflictError, ForbiddenError, InvalidArgumentError } from "../model/errors.ts";
import { parseIp, Prefix } from "../model/ip.ts";
import { validateStringMap } from "../model/limits.ts";
import { newId, validateName } from "../model/names.ts";
import type { EndpointRecord, IpamConfig, NetworkRecord } from "../model/objects.ts";
import { type ControllerContext, driverOf, findNetwork } from "./context.ts";
import { beginIntent } from "./journal.ts";

/** What `createNetwork` takes (the flags of `cnm network create`). */
export interface NetworkCreateOptions {
  name: string;
  /** Driver name; default "bridge". */
  driver?: string;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  /** Enable IPv6 (`--ipv6`). */
  ipv6?: boolean;
  ipv6Subnet?: string;
  ipv6Gateway?: string;
  internal?: boolean;
  /** Driver options, Docker's keys (`-o k=v`). */
  options?: Record<string, string>;
  labels?: Record<string, string>;
}

/** A network with its endpoints, as `network inspect` shows it. */
export interface NetworkView extends NetworkRecord {
  endpoints: (EndpointRecord & { sandboxName?: string })[];
}

/** A network and its endpoints. */
export function inspectNetwork(ctx: ControllerContext, ref: string): NetworkView {
  const net = findNetwork(ctx, ref);
  const sandboxes = new Map(ctx.store.list("sandbox").map((s) => [s.id, s.name]));
  const endpoints = ctx.store.list("endpoint").filter((e) => e.networkId === net.id)
    .map((e) => ({ ...e, sandboxName: e.sandboxId ? sandboxes.get(e.sandboxId) : undefined }));
  return { ...net, endpoints };
}

/** Creates a network (libnetwork `NewNetwork`, §1.2). */
export async function createNetwork(
  ctx: ControllerContext,
  opts: NetworkCreateOptions,
  undo: UndoStack,
): Promise<NetworkRecord> {
  validateName("network", opts.name);
  validateStringMap("label", opts.labels ?? {});
  validateStringMap("option", opts.options ?? {});
  const all = ctx.store.list("network");
  if (all.some((n) => n.name === opts.name)) {
    throw new ConflictError(`network with name ${opts.name} already exists`);
  }
  const driver = driverOf(ctx, opts.driver ?? "bridge");
  if (driver.singleInstance && all.some((n) => n.driver === driver.type)) {
    throw new ForbiddenError(`only one instance of "${driver.type}" network is allowed`);
  }
  const options = { ...(opts.options ?? {}) };
  if (driver.capabilities().dataScope === "global") {
    return await createGlobalNetwork(ctx, opts, driver, options, undo);
  }
  const id = newId();
  let ipv4: IpamConfig[] = [];
  let ipv6: IpamConfig[] = [];
  if (driver.skipIpam) {
    if (opts.subnet || opts.gateway || opts.ipRange || opts.ipv6Subnet) {
      throw new InvalidArgumentError(`driver "${driver.type}" takes no IPAM configuration`);
    }
  } else {
    checkIpamInput(opts, all, driver);
    ipv4 = [await allocatePool(ctx, 4, opts.subnet, opts.ipRange, opts.gateway, undo)];
    if (opts.ipv6) {
      if (opts.ipv6Subnet) checkSubnet(6, opts.ipv6Subnet, opts.ipv6Gateway);
      ipv6 = [await allocatePool(ctx, 6, opts.ipv6Subnet, undefined, opts.ipv6Gateway, undo)];
    }
  }
  if (!opts.ipv6 && (opts.ipv6Subnet || opts.ipv6Gateway)) {
    throw new InvalidArgumentError(`an IPv6 subnet or gateway needs --ipv6`);
  }
  const req: CreateNetworkRequest = {
    networkId: id,
    name: opts.name,
    options,
    internal: !!opts.internal,
    enableIpv6: !!opts.ipv6,
    ipv4: ipv4.map(toIpamData),
    ipv6: ipv6.map(toIpamData),
  };
  driver.validateNetwork?.(req);
  const record: NetworkRecord = {
    id,
    name: opts.name,
    driver: driver.type,
    scope: driver.capabilities().dataScope,
    internal: !!opts.internal,
    enableIpv6: !!opts.ipv6,
    options,
    labels: { ...(opts.labels ?? {}) },
    ipv4,
    ipv6,
    created: new Date().toISOString(),
  };
  // journaled before the driver's first kernel call: a crash takes it back (./journal.ts)
  const intentId = `network-create:${id}`;
  beginIntent(ctx, { id: intentId, op: "network-create", network: record }, undo);
  await driver.createNetwork(req);
  undo.push(`delete network ${id}`, () => driver.deleteNetwork(id));
  ctx.store.transaction((tx) => {
    tx.put("network", record);
    tx.delete("intent", intentId);
  });
  ctx.log(
    `network create ${record.name} id=${id.slice(0, 12)} driver=${driver.type} ${
      ipv4.map((c) => c.subnet).join(",")
    }`,
  );
  return record;
}

/**
 * Creates a network of a global-scope driver (overlay): name, pool, gateway and VNI are
 * claimed in the global store in one transaction (impl/store/global.ts), so every host sees
 * it and no two hosts can make the same one; the driver only learns it. Nothing local is
 * journaled: a crash after the store's commit leaves a network every host knows, which this
 * host finds again as the others do (./global_sync.ts).
 */
async function createGlobalNetwork(
  ctx: ControllerContext,
  opts: NetworkCreateOptions,
  driver: NetworkDriver,
  options: Record<string, string>,
  undo: UndoStack,
): Promise<NetworkRecord> {
  if (!ctx.global) {
    throw new ForbiddenError(
      `driver "${driver.type}" makes multi-host networks and needs a global store: start the daemon with --store etcd://HOST:PORT --advertise-address IP`,
    );
  }
  if (opts.ipv6 || opts.ipv6Subnet || opts.ipv6Gateway) {
    throw new InvalidArgumentError(`IPv6 on a ${driver.type} network is not supported`);
  }
  // overlaps with other global networks are the store's to refuse, in its transaction
  checkIpamFlags(opts);
  const base = {
    id: newId(),
    name: opts.name,
    driver: driver.type,
    scope: "global" as const,
    internal: !!opts.internal,
    enableIpv6: false,
    options,
    labels: { ...(opts.labels ?? {}) },
    created: new Date().toISOString(),
  };
  // checked before the store is written, with the IPAM left empty
  driver.validateNetwork?.({ ...networkRequest({ ...base, ipv4: [], ipv6: [] }) });
  const record = await ctx.global.createNetwork({
    network: base,
    subnet: opts.subnet,
    gateway: opts.gateway,
    ipRange: opts.ipRange,
    vni: driver.type === "overlay",
  });
  undo.push(`remove global network ${record.id}`, () => ctx.global!.removeNetwork(record));
  await learnGlobalNetwork(ctx, driver, record);
  ctx.log(
    `network create ${record.name} id=${
      record.id.slice(0, 12)
    } driver=${driver.type} scope=global ${record.ipv4.map((c) => c.subnet).join(",")}`,
  );
  return record;
}

/**
 * Makes a global network known on this host: its pool named to the IPAM (the addresses
 * stay in the global store), the driver told, the record kept in the local store as a
 * mirror.
 */
export async function learnGlobalNetwork(
  ctx: ControllerContext,
  driver: NetworkDriver,
  record: NetworkRecord,
): Promise<void> {
  for (const c of record.ipv4) {
    await ctx.ipam.requestPool({
      addressSpace: c.poolId.split("/")[0],
      pool: c.subnet,
      subPool: c.ipRange,
      v6: false,
    });
  }
  await driver.createNetwork(networkRequest(record));
  ctx.store.transaction((tx) => tx.put("network", record));
}

/**
 * Checks a subnet the user gave for a family, and its gateway: the one place the
 * gateway-in-subnet rule is written.
 */
function checkSubnet(family: 4 | 6, subnet: string, gateway: string | undefined): Prefix {
  const p = Prefix.parse(subnet, family === 6 ? "IPv6 subnet" : "subnet");
  if (p.family !== family) {
    throw new InvalidArgumentError(
      family === 4
        ? `subnet ${subnet} is not IPv4 (use --ipv6-subnet)`
        : `subnet ${subnet} is not IPv6`,
    );
  }
  if (gateway && !p.contains(parseIp(gateway, "gateway"))) {
    throw new InvalidArgumentError(`gateway ${gateway} is outside subnet ${p}`);
  }
  return p;
}

/**
 * Checks the IPv4 IPAM flags on their own: a gateway or range needs a subnet, the gateway
 * and the range lie inside it. Returns the subnet, if one was given.
 */
function checkIpamFlags(opts: NetworkCreateOptions): Prefix | undefined {
  if (!opts.subnet && (opts.gateway || opts.ipRange)) {
    throw new InvalidArgumentError(`a gateway or ip-range needs a subnet`);
  }
  if (!opts.subnet) return undefined;
  const subnet = checkSubnet(4, opts.subnet, opts.gateway);
  if (opts.ipRange) {
    const range = Prefix.parse(opts.ipRange, "ip-range");
    if (!range.within(subnet)) {
      throw new InvalidArgumentError(`ip-range ${opts.ipRange} is outside subnet ${subnet}`);
    }
  }
  return subnet;
}

/** Checks the IPv4 IPAM flags before anything is allocated, and overlaps with local networks. */
function checkIpamInput(
  opts: NetworkCreateOptions,
  all: NetworkRecord[],
  driver: NetworkDriver,
): void {
  const subnet = checkIpamFlags(opts);
  if (!subnet) return;
  // Nicer message than the IPAM's, naming the network (the IPAM check stays the backstop).
  for (const other of all) {
    for (const c of other.ipv4) {
      const shared = opts.ipRange && other.driver !== "bridge" && driver.type !== "bridge" &&
        c.subnet === subnet.toString();
      if (!shared && Prefix.parse(c.subnet).overlaps(subnet)) {
        throw new ForbiddenError(
          `subnet ${subnet} overlaps network "${other.name}" (${c.subnet})`,
        );
      }
    }
  }
}

/** Requests a pool and its gateway from the IPAM (subnet and gateway checked already). */
async function allocatePool(
  ctx: ControllerContext,
  family: 4 | 6,
  subnet: string | undefined,
  ipRange: string | undefined,
  gateway: string | undefined,
  undo: UndoStack,
): Promise<IpamConfig> {
  const space = ctx.ipam.defaultAddressSpaces().local;
  const pool = await ctx.ipam.requestPool({
    addressSpace: space,
    pool: subnet,
    subPool: ipRange,
    v6: family === 6,
  });
  undo.push(`release pool ${pool.poolId}`, () => ctx.ipam.releasePool(pool.poolId));
  const gw = await ctx.ipam.requestAddress(pool.poolId, gateway, { gateway: true });
  undo.push(
    `release gateway ${gw}`,
    () => ctx.ipam.releaseAddress(pool.poolId, gw.split("/")[0]),
  );
  return {
    subnet: pool.pool,
    ipRange,
    gateway: gw.split("/")[0],
    poolId: pool.poolId,
    userSubnet: !!subnet,
  };
}

/** Removes a network (libnetwork `Network.Delete`, §1.2). */
export async function removeNetwork(ctx: ControllerContext, ref: string): Promise<void> {
  const net = findNetwork(ctx, ref);
  const driver = driverOf(ctx, net.driver);
  if (driver.undeletable) {
    throw new ForbiddenError(`${net.name} is a pre-defined network and cannot be removed`);
  }
  const endpoints = ctx.store.list("endpoint").filter((e) => e.networkId === net.id);
  const services = ctx.services.onNetwork(net.id);
  if (services.length > 0) {
    throw new ForbiddenError(
      `network ${net.name} has services (${services.map((s) => s.name).join(", ")})`,
    );
  }
  if (endpoints.length > 0) {
    throw new ForbiddenError(
      `network ${net.name} id ${net.id} has active endpoints (${
        endpoints.map((e) => e.name).join(", ")
      })`,
    );
  }
  if (net.scope === "global") {
    if (!ctx.global) {
      throw new ForbiddenError(`network ${net.name} is global and this daemon has no --store`);
    }
    // refused there while any host still has an endpoint on it
    await ctx.global.removeNetwork(net);
  }
  // Marked first, so a crash mid-delete is finished on restart (§1.5).
  ctx.store.transaction((tx) => tx.put("network", { ...net, inDelete: true }));
  await driver.deleteNetwork(net.id);
  await releaseNetworkIpam(ctx, net);
  ctx.store.transaction((tx) => tx.delete("network", net.id));
  ctx.log(`network rm ${net.name} id=${net.id.slice(0, 12)}`);
}

/** Gives a network's gateways and pools back to the IPAM (errors ignored: best effort). */
export async function releaseNetworkIpam(
  ctx: ControllerContext,
  net: NetworkRecord,
): Promise<void> {
  for (const c of [...net.ipv4, ...net.ipv6]) {
    if (c.gateway) await ctx.ipam.releaseAddress(c.poolId, c.gateway).catch(() => {});
    await ctx.ipam.releasePool(c.poolId).catch(() => {});
  }
}

/** The driver's request for a stored (or would-be) network. */
export function networkRequest(net: NetworkRecord): CreateNetworkRequest {
  return {
    networkId: net.id,
    name: net.name,
    options: net.options,
    internal: net.internal,
    enableIpv6: net.enableIpv6,
    ipv4: net.ipv4.map(toIpamData),
    ipv6: net.ipv6.map(toIpamData),
  };
}

/** A network's IPAM configuration as drivers get it (gateway with the prefix length). */
export function toIpamData(c: IpamConfig): IpamData {
  const bits = c.subnet.split("/")[1];
  return { pool: c.subnet, gateway: c.gateway ? `${c.gateway}/${bits}` : undefined };
}
