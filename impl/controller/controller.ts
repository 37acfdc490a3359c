/**
 * The CNM controller: orchestrates the model, the injected drivers and IPAM, the store and
 * the kernel for one host (a network namespace). Every operation runs under a lock and
 * rolls back every step it did when a later one fails (libnetwork's deferred rollbacks,
 * research/libnetwork.md §1.2). It never imports a concrete driver.
 * @module
 */
import type {
  CreateNetworkRequest,
  IpamData,
  IpamDriver,
  JoinRequest,
  NetworkDriver,
} from "../driver_api/mod.ts";
import { PORTMAP_OPTION } from "../driver_api/mod.ts";
import type { Kernel, LinkInfo, RouteInfo } from "../kernel/kernel.ts";
import { plan } from "../kernel/plan.ts";
import { type Logger, quietLogger } from "../kernel/runner.ts";
import { UndoStack } from "../kernel/undo.ts";
import {
  CnmError,
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  withAction,
} from "../model/errors.ts";
import { formatIp, parseIp, Prefix, tryParseIp } from "../model/ip.ts";
import { newId, validateName } from "../model/names.ts";
import type { EndpointRecord, IpamConfig, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import type { DnsEndpoint } from "../dns/records.ts";
import { hostsFile, resolvConf } from "./files.ts";
import { type ServiceCreateOptions, Services, type ServiceView } from "./services.ts";
import type { ServiceRecord } from "../model/objects.ts";
import { Mutex } from "./lock.ts";
import { normalizePublish, type PortRequest } from "./ports.ts";
import {
  emptyReport,
  reconcileHookOf,
  type ReconcileItem,
  type ReconcileReport,
  sandboxNetnsPattern,
} from "./reconcile.ts";

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

/** What `createSandbox` takes. */
export interface SandboxCreateOptions {
  name: string;
  /** Host name inside the sandbox; default the first 12 hex digits of its id (Docker). */
  hostname?: string;
}

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

/** A network with its endpoints, as `network inspect` shows it. */
export interface NetworkView extends NetworkRecord {
  endpoints: (EndpointRecord & { sandboxName?: string })[];
}

/** A sandbox with its endpoints, as `sandbox inspect` shows it. */
export interface SandboxView extends SandboxRecord {
  endpointDetails: (EndpointRecord & { networkName: string })[];
}

/** Options of {@linkcode createController}. */
export interface ControllerOptions {
  kernel: Kernel;
  store: Store;
  ipam: IpamDriver;
  drivers: NetworkDriver[];
  /** The host namespace name; absent = the root namespace. */
  hostNetns?: string;
  /** Start of every name the controller creates in shared places (/run/netns, /etc/netns). */
  prefix: string;
  /** DNS servers written to sandboxes' resolv.conf; default: the host's, minus loopback. */
  dns?: string[];
  log?: Logger;
  /** Called once by `close()` (e.g. to close the store). */
  onClose?: () => void | Promise<void>;
  /**
   * The embedded resolver (impl/dns `DnsService`): when given, every sandbox's resolv.conf
   * points at 127.0.0.11 with `options ndots:0` (Docker's, for user-defined networks) and the
   * resolver follows sandboxes and endpoints.
   */
  resolver?: SandboxResolver;
}

/** What the controller tells the embedded resolver (research/libnetwork.md §4.1-4.2). */
export interface SandboxResolver {
  addSandbox(sandboxId: string, netnsPath: string): Promise<void>;
  removeSandbox(sandboxId: string): Promise<void>;
  upsertEndpoint(ep: DnsEndpoint): void;
  removeEndpoint(sandboxId: string, networkId: string): void;
}

/** Docker's resolv.conf for sandboxes served by the embedded resolver. */
export const EMBEDDED_RESOLV_CONF = "nameserver 127.0.0.11\noptions ndots:0\n";

const IFACE_PREFIX_OPTION = "com.docker.network.container_iface_prefix";
const HOSTNAME_RE =
  /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** The controller of one host. */
export class Controller {
  readonly #kernel: Kernel;
  readonly #store: Store;
  readonly #ipam: IpamDriver;
  readonly #drivers = new Map<string, NetworkDriver>();
  readonly #hostNetns?: string;
  readonly #prefix: string;
  readonly #dns: string[];
  readonly #log: Logger;
  readonly #lock = new Mutex();
  readonly #onClose?: () => void | Promise<void>;
  readonly #resolver?: SandboxResolver;
  /** Services and their load balancing (issue 8; ./services.ts). */
  readonly #services: Services;
  #closed = false;
  #lastReconcile?: ReconcileReport;
  /** What restore() could not do, reported by the next reconcile(). */
  #restoreFailures: ReconcileItem[] = [];

  constructor(options: ControllerOptions) {
    this.#kernel = options.kernel;
    this.#store = options.store;
    this.#ipam = options.ipam;
    for (const d of options.drivers) this.#drivers.set(d.type, d);
    this.#hostNetns = options.hostNetns;
    this.#prefix = options.prefix;
    this.#dns = options.dns ?? [];
    this.#log = options.log ?? quietLogger;
    this.#onClose = options.onClose;
    this.#resolver = options.resolver;
    this.#services = new Services({
      store: this.#store,
      ipam: this.#ipam,
      kernel: this.#kernel,
      hostNetns: this.#hostNetns,
      table: `${this.#prefix.replace(/[^a-zA-Z0-9_]/g, "_")}_lb`,
      findNetwork: (ref) => this.#findNetwork(ref),
      republish: (ep) => {
        const sb = ep.sandboxId ? this.#store.get("sandbox", ep.sandboxId) : undefined;
        const net = this.#store.get("network", ep.networkId);
        if (sb && net) this.#publish(ep, sb, net);
      },
      dnsUpsert: this.#resolver ? (ep) => this.#resolver!.upsertEndpoint(ep) : undefined,
      dnsRemove: this.#resolver ? (s, n) => this.#resolver!.removeEndpoint(s, n) : undefined,
    });
  }

  /** The host namespace this controller serves (undefined = root). */
  get hostNetns(): string | undefined {
    return this.#hostNetns;
  }

  /** What the last {@linkcode Controller.reconcile} did (undefined before the first). */
  get lastReconcile(): ReconcileReport | undefined {
    return this.#lastReconcile;
  }

  /** Names of the registered drivers. */
  get driverNames(): string[] {
    return [...this.#drivers.keys()].sort();
  }

  // ---------------------------------------------------------------- lookups

  /** Finds a network by name, full id or unique id prefix. */
  #findNetwork(ref: string): NetworkRecord {
    const all = this.#store.list("network");
    const hit = all.find((n) => n.name === ref) ?? all.find((n) => n.id === ref);
    if (hit) return hit;
    const byPrefix = /^[0-9a-f]{1,64}$/.test(ref) ? all.filter((n) => n.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0];
    if (byPrefix.length > 1) {
      throw new InvalidArgumentError(`network id prefix "${ref}" matches several networks`);
    }
    throw new NotFoundError(`network "${ref}" not found`);
  }

  #findSandbox(ref: string): SandboxRecord {
    const all = this.#store.list("sandbox");
    const hit = all.find((s) => s.name === ref) ?? all.find((s) => s.id === ref);
    if (hit) return hit;
    const byPrefix = /^[0-9a-f]{1,64}$/.test(ref) ? all.filter((s) => s.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0];
    throw new NotFoundError(`sandbox "${ref}" not found`);
  }

  #driver(name: string): NetworkDriver {
    const d = this.#drivers.get(name);
    if (!d) {
      throw new InvalidArgumentError(
        `unknown driver "${name}" (known: ${this.driverNames.join(", ")})`,
      );
    }
    return d;
  }

  #endpointsOf(sb: SandboxRecord): EndpointRecord[] {
    return sb.endpoints.map((id) => this.#store.get("endpoint", id)).filter((
      e,
    ): e is EndpointRecord => !!e);
  }

  // ---------------------------------------------------------------- reads

  /** Every network, oldest first. */
  listNetworks(): NetworkRecord[] {
    return this.#store.list("network");
  }

  /** A network and its endpoints. */
  inspectNetwork(ref: string): NetworkView {
    const net = this.#findNetwork(ref);
    const sandboxes = new Map(this.#store.list("sandbox").map((s) => [s.id, s.name]));
    const endpoints = this.#store.list("endpoint").filter((e) => e.networkId === net.id)
      .map((e) => ({ ...e, sandboxName: e.sandboxId ? sandboxes.get(e.sandboxId) : undefined }));
    return { ...net, endpoints };
  }

  /** Every sandbox, oldest first. */
  listSandboxes(): SandboxRecord[] {
    return this.#store.list("sandbox");
  }

  /** A sandbox and its endpoints, in join order. */
  inspectSandbox(ref: string): SandboxView {
    const sb = this.#findSandbox(ref);
    const nets = new Map(this.#store.list("network").map((n) => [n.id, n.name]));
    return {
      ...sb,
      endpointDetails: this.#endpointsOf(sb).map((e) => ({
        ...e,
        networkName: nets.get(e.networkId) ?? e.networkId,
      })),
    };
  }

  // ---------------------------------------------------------------- networks

  /** Creates a network (libnetwork `NewNetwork`, §1.2). */
  createNetwork(opts: NetworkCreateOptions): Promise<NetworkRecord> {
    return this.#locked(`Cannot create network "${opts.name}"`, async (undo) => {
      validateName("network", opts.name);
      const all = this.#store.list("network");
      if (all.some((n) => n.name === opts.name)) {
        throw new ConflictError(`network with name ${opts.name} already exists`);
      }
      const driver = this.#driver(opts.driver ?? "bridge");
      if (driver.singleInstance && all.some((n) => n.driver === driver.type)) {
        throw new ForbiddenError(`only one instance of "${driver.type}" network is allowed`);
      }
      const options = { ...(opts.options ?? {}) };
      const id = newId();
      let ipv4: IpamConfig[] = [];
      let ipv6: IpamConfig[] = [];
      if (driver.skipIpam) {
        if (opts.subnet || opts.gateway || opts.ipRange || opts.ipv6Subnet) {
          throw new InvalidArgumentError(`driver "${driver.type}" takes no IPAM configuration`);
        }
      } else {
        this.#checkIpamInput(opts, all, driver);
        ipv4 = [await this.#allocatePool(4, opts.subnet, opts.ipRange, opts.gateway, undo)];
        if (opts.ipv6) {
          ipv6 = [await this.#allocatePool(6, opts.ipv6Subnet, undefined, opts.ipv6Gateway, undo)];
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
      await driver.createNetwork(req);
      undo.push(`delete network ${id}`, () => driver.deleteNetwork(id));
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
      this.#store.transaction((tx) => tx.put("network", record));
      this.#log(
        `network create ${record.name} id=${id.slice(0, 12)} driver=${driver.type} ${
          ipv4.map((c) => c.subnet).join(",")
        }`,
      );
      return record;
    });
  }

  #checkIpamInput(opts: NetworkCreateOptions, all: NetworkRecord[], driver: NetworkDriver) {
    if (!opts.subnet && (opts.gateway || opts.ipRange)) {
      throw new InvalidArgumentError(`a gateway or ip-range needs a subnet`);
    }
    if (!opts.subnet) return;
    const subnet = Prefix.parse(opts.subnet, "subnet");
    if (subnet.family !== 4) {
      throw new InvalidArgumentError(`subnet ${opts.subnet} is not IPv4 (use --ipv6-subnet)`);
    }
    if (opts.gateway && !subnet.contains(parseIp(opts.gateway, "gateway"))) {
      throw new InvalidArgumentError(`gateway ${opts.gateway} is outside subnet ${subnet}`);
    }
    if (opts.ipRange) {
      const range = Prefix.parse(opts.ipRange, "ip-range");
      if (!range.within(subnet)) {
        throw new InvalidArgumentError(`ip-range ${opts.ipRange} is outside subnet ${subnet}`);
      }
    }
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

  async #allocatePool(
    family: 4 | 6,
    subnet: string | undefined,
    ipRange: string | undefined,
    gateway: string | undefined,
    undo: UndoStack,
  ): Promise<IpamConfig> {
    if (subnet) {
      const p = Prefix.parse(subnet, family === 6 ? "IPv6 subnet" : "subnet");
      if (p.family !== family) {
        throw new InvalidArgumentError(`subnet ${subnet} is not IPv${family}`);
      }
      if (gateway && !p.contains(parseIp(gateway, "gateway"))) {
        throw new InvalidArgumentError(`gateway ${gateway} is outside subnet ${p}`);
      }
    }
    const space = this.#ipam.defaultAddressSpaces().local;
    const pool = await this.#ipam.requestPool({
      addressSpace: space,
      pool: subnet,
      subPool: ipRange,
      v6: family === 6,
    });
    undo.push(`release pool ${pool.poolId}`, () => this.#ipam.releasePool(pool.poolId));
    const gw = await this.#ipam.requestAddress(pool.poolId, gateway, { gateway: true });
    undo.push(
      `release gateway ${gw}`,
      () => this.#ipam.releaseAddress(pool.poolId, gw.split("/")[0]),
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
  removeNetwork(ref: string): Promise<void> {
    return this.#locked(`Cannot remove network "${ref}"`, async () => {
      const net = this.#findNetwork(ref);
      const driver = this.#driver(net.driver);
      if (driver.undeletable) {
        throw new ForbiddenError(`${net.name} is a pre-defined network and cannot be removed`);
      }
      const eps = this.#store.list("endpoint").filter((e) => e.networkId === net.id);
      const svcs = this.#services.onNetwork(net.id);
      if (svcs.length > 0) {
        throw new ForbiddenError(
          `network ${net.name} has services (${svcs.map((s) => s.name).join(", ")})`,
        );
      }
      if (eps.length > 0) {
        throw new ForbiddenError(
          `network ${net.name} id ${net.id} has active endpoints (${
            eps.map((e) => e.name).join(", ")
          })`,
        );
      }
      // Marked first, so a crash mid-delete is finished on restart (§1.5).
      this.#store.transaction((tx) => tx.put("network", { ...net, inDelete: true }));
      await driver.deleteNetwork(net.id);
      await this.#releaseNetworkIpam(net);
      this.#store.transaction((tx) => tx.delete("network", net.id));
      this.#log(`network rm ${net.name} id=${net.id.slice(0, 12)}`);
    });
  }

  async #releaseNetworkIpam(net: NetworkRecord): Promise<void> {
    for (const c of [...net.ipv4, ...net.ipv6]) {
      if (c.gateway) await this.#ipam.releaseAddress(c.poolId, c.gateway).catch(() => {});
      await this.#ipam.releasePool(c.poolId).catch(() => {});
    }
  }

  // ---------------------------------------------------------------- sandboxes

  /** Creates a sandbox: a namespace with loopback up, its hosts and resolv.conf. */
  createSandbox(opts: SandboxCreateOptions): Promise<SandboxRecord> {
    return this.#locked(`Cannot create sandbox "${opts.name}"`, async (undo) => {
      validateName("sandbox", opts.name);
      if (this.#store.list("sandbox").some((s) => s.name === opts.name)) {
        throw new ConflictError(`sandbox with name ${opts.name} already exists`);
      }
      const id = newId();
      const hostname = opts.hostname ?? id.slice(0, 12);
      if (!HOSTNAME_RE.test(hostname) || hostname.length > 253) {
        throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(hostname)}`);
      }
      const netnsName = `${this.#prefix}-${id.slice(0, 12)}`;
      const record: SandboxRecord = {
        id,
        name: opts.name,
        hostname,
        netnsName,
        netnsPath: this.#kernel.netnsPath(netnsName),
        endpoints: [],
        created: new Date().toISOString(),
      };
      const etc = this.#kernel.etcNetnsPath(netnsName);
      const hostResolv = await this.#kernel.fs.readTextFile("/etc/resolv.conf");
      await this.#kernel.apply(
        plan(
          { kind: "netns-add", name: netnsName },
          { kind: "ip", netns: netnsName, lines: ["link set dev lo up"] },
          {
            kind: "write",
            path: `${etc}/hosts`,
            content: hostsFile(hostname, []),
            undoDir: etc,
          },
          {
            kind: "write",
            path: `${etc}/resolv.conf`,
            content: this.#resolvConf(hostResolv),
          },
          { kind: "write", path: `${etc}/hostname`, content: hostname + "\n" },
        ),
        undo,
      );
      if (this.#resolver) {
        await this.#resolver.addSandbox(id, record.netnsPath);
        undo.push(`resolver ${id}`, () => this.#resolver!.removeSandbox(id));
      }
      this.#store.transaction((tx) => tx.put("sandbox", record));
      this.#log(`sandbox create ${record.name} netns=${netnsName}`);
      return record;
    });
  }

  /** Removes a sandbox: leaves every network, deletes its namespace and files (§1.2 step 7). */
  removeSandbox(ref: string): Promise<void> {
    return this.#locked(`Cannot remove sandbox "${ref}"`, async () => {
      let sb = this.#findSandbox(ref);
      for (const ep of this.#endpointsOf(sb).reverse()) {
        sb = await this.#disconnect(sb, ep, false);
      }
      // its sockets would keep the namespace alive
      await this.#resolver?.removeSandbox(sb.id);
      await this.#kernel.deleteNetns(sb.netnsName);
      await this.#kernel.fs.remove(this.#kernel.etcNetnsPath(sb.netnsName));
      this.#store.transaction((tx) => tx.delete("sandbox", sb.id));
      this.#log(`sandbox rm ${sb.name}`);
    });
  }

  // ---------------------------------------------------------------- endpoints

  /**
   * Connects a sandbox to a network: CreateEndpoint then Join (§1.2 steps 3-4), then the
   * default route and hosts file. Returns the endpoint.
   */
  connect(
    networkRef: string,
    sandboxRef: string,
    opts: ConnectOptions = {},
  ): Promise<EndpointRecord> {
    return this.#locked(
      `Cannot connect sandbox "${sandboxRef}" to network "${networkRef}"`,
      async (undo): Promise<EndpointRecord> => {
        const net = this.#findNetwork(networkRef);
        const sb = this.#findSandbox(sandboxRef);
        const driver = this.#driver(net.driver);
        const current = this.#endpointsOf(sb);
        if (current.some((e) => e.networkId === net.id)) {
          throw new ForbiddenError(
            `endpoint with name ${sb.name} already exists in network ${net.name}`,
          );
        }
        const nets = new Map(this.#store.list("network").map((n) => [n.id, n]));
        const exclusive = (n?: NetworkRecord) => !!n && !!this.#drivers.get(n.driver)?.exclusive;
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
        const taken = new Set(this.#services.onNetwork(net.id).map((v) => v.name.toLowerCase()));
        for (const n of [sb.name, sb.hostname, ...aliases]) {
          if (taken.has(n.toLowerCase())) {
            throw new ConflictError(
              `name ${n} is already used on network ${net.name} by a service`,
            );
          }
        }
        const publish = normalizePublish(opts.publish);
        let ipv4: string | undefined;
        let ipv6: string | undefined;
        if (!driver.skipIpam) {
          ipv4 = await this.#allocateAddress(net.ipv4[0], opts.ipv4, net, "IPv4", undo);
          if (net.ipv6.length > 0) {
            ipv6 = await this.#allocateAddress(net.ipv6[0], opts.ipv6, net, "IPv6", undo);
          } else if (opts.ipv6) {
            throw new InvalidArgumentError(`network ${net.name} has no IPv6 subnet`);
          }
        } else if (opts.ipv4 || opts.ipv6) {
          throw new InvalidArgumentError(`network ${net.name} has no IPAM: no address can be set`);
        }
        const id = newId();
        const created = await driver.createEndpoint(net.id, id, { address: ipv4, addressV6: ipv6 });
        undo.push(
          `delete endpoint ${id}`,
          () => driver.deleteEndpoint(net.id, id, created.driverData),
        );
        const ifname = driver.skipIpam ? undefined : nextIfname(
          net.options[IFACE_PREFIX_OPTION] ?? "eth",
          current.map((e) => e.ifname),
        );
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
          id,
          name: sb.name,
          networkId: net.id,
          sandboxId: sb.id,
          ipv4,
          ipv6,
          mac: created.mac,
          ifname,
          gateway: joined.gateway,
          gatewayV6: joined.gatewayV6,
          staticIpv4: !!opts.ipv4,
          aliases,
          ...(published ? { published } : {}),
          driverData: { ...created.driverData, ...(joined.driverData ?? {}) },
          created: new Date().toISOString(),
        };
        const updated: SandboxRecord = { ...sb, endpoints: [...sb.endpoints, id] };
        await this.#programSandbox(current, [...current, ep], updated, nets, interfaceLines(ep));
        this.#store.transaction((tx) => {
          tx.put("endpoint", ep);
          tx.put("sandbox", updated);
        });
        this.#publish(ep, updated, net);
        this.#log(`connect ${sb.name} -> ${net.name} ${ifname ?? "-"} ${ipv4 ?? ""}`);
        return ep;
      },
    );
  }

  async #allocateAddress(
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
    const addr = await this.#ipam.requestAddress(cfg.poolId, preferred);
    undo.push(
      `release ${addr}`,
      () => this.#ipam.releaseAddress(cfg.poolId, addr.split("/")[0]),
    );
    return addr;
  }

  /**
   * The endpoint that carries a sandbox's default routes, chosen as libnetwork's
   * `Endpoint.Less` orders them (§1.1: non-internal first, then endpoints with a gateway,
   * then by network name).
   */
  #gatewayEndpoint(
    eps: EndpointRecord[],
    nets: Map<string, NetworkRecord>,
  ): EndpointRecord | undefined {
    return [...eps].filter((e) => e.ifname).sort((a, b) => {
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
   * Programs what the sandbox (not the driver) owns, as libnetwork's sandbox (osl) does: the
   * addresses and state of a joined interface (`lines`, {@linkcode interfaceLines}), the
   * default routes via the gateway endpoint ({@linkcode Controller.#gatewayEndpoint}), in
   * one `ip -batch` in the sandbox, and the hosts file. Routes are only touched when the
   * gateway endpoint changes; the routes of an interface that is gone went with it.
   */
  async #programSandbox(
    before: EndpointRecord[],
    after: EndpointRecord[],
    sb: SandboxRecord,
    nets: Map<string, NetworkRecord>,
    lines: string[] = [],
  ): Promise<void> {
    const old = this.#gatewayEndpoint(before, nets), now = this.#gatewayEndpoint(after, nets);
    const routeKey = (e?: EndpointRecord) =>
      e ? `${e.id}|${e.gateway ?? ""}|${e.gatewayV6 ?? ""}` : "";
    if (routeKey(old) !== routeKey(now)) {
      const oldAlive = !!old && after.some((e) => e.id === old.id);
      await this.#kernel.ipForce(sb.netnsName, [
        ...(oldAlive && old.gateway && !now?.gateway
          ? [`route del default via ${old.gateway}`]
          : []),
        ...(oldAlive && old.gatewayV6 && !now?.gatewayV6
          ? [`route del default via ${old.gatewayV6}`]
          : []),
      ]);
      lines = [...lines, ...routeLines(now)];
    }
    await this.#kernel.ip(sb.netnsName, lines);
    await this.#writeHosts(sb, after);
  }

  async #writeHosts(sb: SandboxRecord, eps: EndpointRecord[]): Promise<void> {
    await this.#kernel.fs.writeTextFile(
      this.#kernel.etcNetnsPath(sb.netnsName, "hosts"),
      hostsContent(sb, eps),
    );
  }

  /** Disconnects a sandbox from a network: Leave then Delete (§1.2 steps 5-6). */
  disconnect(networkRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot disconnect sandbox "${sandboxRef}" from network "${networkRef}"`,
      async () => {
        const net = this.#findNetwork(networkRef);
        const sb = this.#findSandbox(sandboxRef);
        const ep = this.#endpointsOf(sb).find((e) => e.networkId === net.id);
        if (!ep) {
          throw new ForbiddenError(`sandbox ${sb.name} is not connected to network ${net.name}`);
        }
        await this.#disconnect(sb, ep, true);
      },
    );
  }

  async #disconnect(
    sb: SandboxRecord,
    ep: EndpointRecord,
    reprogram: boolean,
  ): Promise<SandboxRecord> {
    const nets = new Map(this.#store.list("network").map((n) => [n.id, n]));
    const net = nets.get(ep.networkId);
    const driver = net ? this.#drivers.get(net.driver) : undefined;
    const before = this.#endpointsOf(sb);
    const after = before.filter((e) => e.id !== ep.id);
    const updated: SandboxRecord = { ...sb, endpoints: sb.endpoints.filter((i) => i !== ep.id) };
    if (driver && net) {
      const req: JoinRequest = {
        networkId: net.id,
        endpointId: ep.id,
        sandbox: sb,
        ifname: ep.ifname ?? "",
        iface: { address: ep.ipv4, addressV6: ep.ipv6, mac: ep.mac },
        driverData: ep.driverData,
      };
      await driver.revokeExternalConnectivity({
        ...req,
        options: ep.published?.length ? { [PORTMAP_OPTION]: ep.published } : {},
      });
      await driver.leave(req);
      await driver.deleteEndpoint(net.id, ep.id, ep.driverData);
      if (ep.ipv4) await this.#ipam.releaseAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]);
      if (ep.ipv6) await this.#ipam.releaseAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]);
    }
    // a backend that goes leaves its services at once (issue 8)
    await this.#services.dropEndpoint(ep.id);
    // no stale answer: the name goes before the interface does (§4.2)
    this.#resolver?.removeEndpoint(sb.id, ep.networkId);
    if (reprogram) await this.#programSandbox(before, after, updated, nets);
    this.#store.transaction((tx) => {
      tx.delete("endpoint", ep.id);
      tx.put("sandbox", updated);
    });
    this.#log(`disconnect ${sb.name} -x ${net?.name ?? ep.networkId}`);
    return updated;
  }

  // ---------------------------------------------------------------- restore

  /**
   * Rebuilds in-memory state from the store after a (re)start: replays IPAM allocations
   * (libnetwork `reservePools`, §1.5), lets drivers restore their networks (which re-creates
   * a missing bridge) and finishes deletes a crash interrupted. What it cannot do is logged
   * and reported by the next {@linkcode Controller.reconcile}, which does the rest (sandboxes,
   * endpoints, orphans).
   */
  restore(): Promise<void> {
    return this.#lock.run(async () => {
      const failed = (kind: ReconcileItem["kind"], name: string, what: string, err: unknown) => {
        const reason = `${what} failed: ${err instanceof Error ? err.message : String(err)}`;
        this.#restoreFailures.push({ kind, name, reason });
        this.#log(`restore: ${kind} ${name}: ${reason}`);
      };
      for (const net of this.#store.list("network")) {
        const driver = this.#drivers.get(net.driver);
        if (!driver) {
          this.#log(`restore: network ${net.name} uses unknown driver ${net.driver}; kept as is`);
          continue;
        }
        for (const [family, cfgs] of [[4, net.ipv4], [6, net.ipv6]] as const) {
          for (const c of cfgs) {
            try {
              await this.#ipam.requestPool({
                addressSpace: c.poolId.split("/")[0],
                pool: c.subnet,
                subPool: c.ipRange,
                v6: family === 6,
              });
              if (c.gateway) {
                await this.#ipam.requestAddress(c.poolId, c.gateway, { gateway: true });
              }
            } catch (err) {
              failed("network", net.name, `replaying pool ${c.subnet}`, err);
            }
          }
        }
        const req: CreateNetworkRequest = {
          networkId: net.id,
          name: net.name,
          options: net.options,
          internal: net.internal,
          enableIpv6: net.enableIpv6,
          ipv4: net.ipv4.map(toIpamData),
          ipv6: net.ipv6.map(toIpamData),
        };
        try {
          // The driver knows the network again (and re-creates its kernel objects if they
          // are missing); a delete a crash interrupted is then finished (§1.5).
          await driver.restoreNetwork?.(req);
          if (net.inDelete) {
            this.#log(`restore: finishing the removal of network ${net.name}`);
            await driver.deleteNetwork(net.id);
            await this.#releaseNetworkIpam(net);
            this.#store.transaction((tx) => tx.delete("network", net.id));
          }
        } catch (err) {
          failed("network", net.name, net.inDelete ? "finishing its removal" : "restoring it", err);
        }
      }
      const nets = new Map(this.#store.list("network").map((n) => [n.id, n]));
      for (const ep of this.#store.list("endpoint")) {
        const net = nets.get(ep.networkId);
        if (!net) continue;
        try {
          if (ep.ipv4) await this.#ipam.requestAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]);
          if (ep.ipv6) await this.#ipam.requestAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]);
        } catch (err) {
          failed("endpoint", `${ep.name}/${net.name}`, "replaying its address", err);
        }
      }
      await this.#services.restoreAddresses();
    });
  }

  /**
   * Makes the store and the kernel agree after a (re)start, for this controller's host and
   * prefix (issue 3, "Restart after a clean stop or a kill -9"):
   *
   * - a sandbox whose namespace is gone is dropped with its endpoints (driver objects
   *   removed, addresses released);
   * - a namespace named like ours (`<prefix>-<12 hex>`, nothing else) that no sandbox owns
   *   is removed, with its /etc/netns directory;
   * - drivers with a reconcile hook make their networks whole (a bridge, its addresses, the
   *   nft table) and remove their objects no endpoint names;
   * - an endpoint whose interface is missing or wrong in its sandbox, or whose driver side
   *   is broken, is re-created with the same id, address, MAC and interface name, and its
   *   sandbox's default routes and hosts file are programmed again;
   * - missing default routes and sandbox files are put back.
   *
   * Every item is logged on one line (`reconcile: ...`). Idempotent: a second call on a
   * consistent host reports nothing.
   */
  reconcile(): Promise<ReconcileReport> {
    return this.#lock.run(async () => {
      const report = emptyReport();
      const note = (list: keyof ReconcileReport, item: ReconcileItem) => {
        report[list].push(item);
        this.#log(`reconcile: ${list} ${item.kind} ${item.name}: ${item.reason}`);
      };
      /** Runs one step; a failure is reported, never thrown, so a start always completes. */
      const attempt = async (
        kind: ReconcileItem["kind"],
        name: string,
        fn: () => Promise<void>,
      ) => {
        try {
          await fn();
        } catch (err) {
          note("failed", { kind, name, reason: err instanceof Error ? err.message : String(err) });
        }
      };
      for (const item of this.#restoreFailures.splice(0)) note("failed", item);
      const kernel = this.#kernel;
      const nets = new Map(this.#store.list("network").map((n) => [n.id, n]));
      const netName = (id: string) => nets.get(id)?.name ?? id.slice(0, 12);

      // Records that point at records that are gone (a crash between two writes).
      const sandboxIds = new Set(this.#store.list("sandbox").map((s) => s.id));
      for (const ep of this.#store.list("endpoint")) {
        if (ep.sandboxId && sandboxIds.has(ep.sandboxId) && nets.has(ep.networkId)) continue;
        await this.#dropEndpoint(ep, nets, false);
        note("dropped", {
          kind: "endpoint",
          name: `${ep.name}/${netName(ep.networkId)}`,
          reason: nets.has(ep.networkId) ? "its sandbox record is gone" : "its network is gone",
        });
      }
      for (const sb of this.#store.list("sandbox")) {
        const live = sb.endpoints.filter((id) => this.#store.get("endpoint", id));
        if (live.length !== sb.endpoints.length) {
          this.#store.transaction((tx) => tx.put("sandbox", { ...sb, endpoints: live }));
        }
      }

      // Sandboxes whose namespace is gone: nothing to re-create them from (the processes
      // that lived in them are gone too), so the records go, as libnetwork's
      // sandboxCleanup drops sandboxes of containers that no longer exist.
      for (const sb of this.#store.list("sandbox")) {
        if (await kernel.netnsExists(sb.netnsName)) continue;
        await attempt("sandbox", sb.name, async () => {
          const reason = `namespace ${sb.netnsPath} is gone`;
          for (const ep of this.#endpointsOf(sb)) {
            await this.#dropEndpoint(ep, nets, false);
            note("dropped", {
              kind: "endpoint",
              name: `${sb.name}/${netName(ep.networkId)}`,
              reason,
            });
          }
          await kernel.fs.remove(kernel.etcNetnsPath(sb.netnsName));
          this.#store.transaction((tx) => tx.delete("sandbox", sb.id));
          note("dropped", { kind: "sandbox", name: sb.name, reason });
        });
      }

      // Namespaces and /etc/netns directories named like ours that no sandbox owns (a crash
      // between creating the namespace and storing the sandbox).
      const pattern = sandboxNetnsPattern(this.#prefix);
      const known = new Set(this.#store.list("sandbox").map((s) => s.netnsName));
      for (const name of await kernel.netnsList()) {
        if (!pattern.test(name) || known.has(name) || name === this.#hostNetns) continue;
        await attempt("netns", name, async () => {
          await kernel.deleteNetns(name);
          await kernel.fs.remove(kernel.etcNetnsPath(name));
          note("removed", { kind: "netns", name, reason: "no sandbox record names it" });
        });
      }
      for (const name of await kernel.etcNetnsList()) {
        if (!pattern.test(name) || known.has(name) || name === this.#hostNetns) continue;
        await attempt("file", kernel.etcNetnsPath(name), async () => {
          await kernel.fs.remove(kernel.etcNetnsPath(name));
          note("removed", {
            kind: "file",
            name: kernel.etcNetnsPath(name),
            reason: "no sandbox record names it",
          });
        });
      }

      // The drivers' side: networks whole, broken endpoints found, orphans removed.
      const broken = new Map<string, string>();
      const endpoints = this.#store.list("endpoint");
      for (const driver of this.#drivers.values()) {
        const hook = reconcileHookOf(driver);
        if (!hook) continue;
        const mine = endpoints.filter((e) => nets.get(e.networkId)?.driver === driver.type);
        await attempt("driver", driver.type, async () => {
          const r = await hook.reconcile(
            mine.map((e) => ({
              networkId: e.networkId,
              endpointId: e.id,
              driverData: e.driverData,
              ipv4: e.ipv4,
              published: e.published,
            })),
          );
          for (const { networkId, what } of r.repaired) {
            note(
              "recreated",
              networkId
                ? { kind: "network", name: netName(networkId), reason: what }
                : { kind: "driver", name: driver.type, reason: what },
            );
          }
          for (const b of r.broken) broken.set(b.endpointId, b.reason);
          for (const item of r.removed) note("removed", item);
        });
      }

      // The sandboxes' side: each endpoint's interface, addresses and MAC; default routes;
      // loopback; the files under /etc/netns.
      for (const sb of this.#store.list("sandbox")) {
        await attempt("sandbox", sb.name, async () => {
          const eps = this.#endpointsOf(sb);
          const [links, routes] = await kernel.ipJsonBatch(sb.netnsName, [
            "addr show",
            "route show default",
          ]) as [LinkInfo[], RouteInfo[]];
          const lines: string[] = [];
          const lo = links.find((l) => l.ifname === "lo");
          if (lo && !lo.flags?.includes("UP")) {
            lines.push("link set dev lo up");
            note("recreated", { kind: "sandbox", name: sb.name, reason: "loopback was down: up" });
          }
          let touched = false;
          const unrepaired = new Set<string>();
          for (const ep of eps) {
            if (!ep.ifname) continue;
            const net = nets.get(ep.networkId);
            const driver = net && this.#drivers.get(net.driver);
            if (!net || !driver) continue;
            const reason = interfaceProblem(ep, links) ?? broken.get(ep.id);
            if (!reason) continue;
            const name = `${sb.name}/${net.name}`;
            try {
              await this.#recreateEndpoint(sb, ep, net, driver);
              touched = true;
              note("recreated", {
                kind: "endpoint",
                name,
                reason: `${reason}: ${ep.ifname} re-created with ${
                  ep.ipv4 ?? ep.ipv6 ?? "no address"
                }`,
              });
            } catch (err) {
              unrepaired.add(ep.id);
              note("failed", {
                kind: "endpoint",
                name,
                reason: `${reason}; re-creating it failed: ${
                  err instanceof Error ? err.message : String(err)
                }`,
              });
            }
          }
          const now = this.#gatewayEndpoint(this.#endpointsOf(sb), nets);
          const route = routes.find((r) => r.dst === "default");
          const routeOk = !now?.gateway || unrepaired.has(now.id) ||
            (route?.gateway === now.gateway && route?.dev === now.ifname);
          if ((touched && !(now && unrepaired.has(now.id))) || !routeOk) {
            lines.push(...routeLines(now));
            if (!touched) {
              note("recreated", {
                kind: "sandbox",
                name: sb.name,
                reason:
                  `default route via ${now?.gateway} dev ${now?.ifname} was missing: re-added`,
              });
            }
          }
          if (lines.length > 0) await kernel.ip(sb.netnsName, lines);
          await this.#reconcileFiles(sb, note);
        });
      }
      await attempt("driver", "services", () => this.#services.reconcile());
      this.#lastReconcile = report;
      return report;
    });
  }

  /** Puts back a sandbox's hosts, resolv.conf and hostname files when missing or stale. */
  async #reconcileFiles(
    sb: SandboxRecord,
    note: (list: keyof ReconcileReport, item: ReconcileItem) => void,
  ): Promise<void> {
    const fs = this.#kernel.fs;
    const hostsPath = this.#kernel.etcNetnsPath(sb.netnsName, "hosts");
    const hosts = hostsContent(sb, this.#endpointsOf(sb));
    const current = await fs.readTextFile(hostsPath);
    if (current !== hosts) {
      await fs.mkdir(this.#kernel.etcNetnsPath(sb.netnsName));
      await fs.writeTextFile(hostsPath, hosts);
      note("recreated", {
        kind: "file",
        name: hostsPath,
        reason: current === undefined
          ? "it was missing"
          : "it did not list the sandbox's addresses",
      });
    }
    const resolvPath = this.#kernel.etcNetnsPath(sb.netnsName, "resolv.conf");
    if ((await fs.readTextFile(resolvPath)) === undefined) {
      await fs.writeTextFile(
        resolvPath,
        this.#resolvConf(await fs.readTextFile("/etc/resolv.conf")),
      );
      note("recreated", { kind: "file", name: resolvPath, reason: "it was missing" });
    }
    const hostnamePath = this.#kernel.etcNetnsPath(sb.netnsName, "hostname");
    if ((await fs.readTextFile(hostnamePath)) === undefined) {
      await fs.writeTextFile(hostnamePath, sb.hostname + "\n");
      note("recreated", { kind: "file", name: hostnamePath, reason: "it was missing" });
    }
  }

  /**
   * Drops an endpoint record: the driver's objects (Leave, when the sandbox is still there,
   * then Delete), its addresses, the record and its place in the sandbox.
   */
  async #dropEndpoint(
    ep: EndpointRecord,
    nets: Map<string, NetworkRecord>,
    sandboxAlive: boolean,
  ): Promise<void> {
    const net = nets.get(ep.networkId);
    const driver = net ? this.#drivers.get(net.driver) : undefined;
    const sb = ep.sandboxId ? this.#store.get("sandbox", ep.sandboxId) : undefined;
    if (net && driver) {
      if (sb && sandboxAlive) {
        await driver.leave(this.#joinRequest(sb, ep, net)).catch(() => {});
      }
      await driver.deleteEndpoint(net.id, ep.id, ep.driverData).catch(() => {});
      if (ep.ipv4 && net.ipv4[0]) {
        await this.#ipam.releaseAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]).catch(() => {});
      }
      if (ep.ipv6 && net.ipv6[0]) {
        await this.#ipam.releaseAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]).catch(() => {});
      }
    }
    this.#store.transaction((tx) => {
      tx.delete("endpoint", ep.id);
      if (sb) tx.put("sandbox", { ...sb, endpoints: sb.endpoints.filter((i) => i !== ep.id) });
    });
  }

  /**
   * Re-creates a broken endpoint with the same id, address, MAC and interface name: Leave and
   * Delete what is left of it, then CreateEndpoint and Join again.
   */
  async #recreateEndpoint(
    sb: SandboxRecord,
    ep: EndpointRecord,
    net: NetworkRecord,
    driver: NetworkDriver,
  ): Promise<void> {
    await driver.leave(this.#joinRequest(sb, ep, net));
    await driver.deleteEndpoint(net.id, ep.id, ep.driverData);
    const iface = { address: ep.ipv4, addressV6: ep.ipv6, mac: ep.mac };
    const created = await driver.createEndpoint(net.id, ep.id, iface);
    const req: JoinRequest = {
      ...this.#joinRequest(sb, ep, net),
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
      await this.#kernel.ip(sb.netnsName, interfaceLines(updated));
    } catch (err) {
      await driver.leave({ ...req, driverData: updated.driverData }).catch(() => {});
      await driver.deleteEndpoint(net.id, ep.id, updated.driverData).catch(() => {});
      throw err;
    }
    this.#store.transaction((tx) => tx.put("endpoint", updated));
  }

  #joinRequest(sb: SandboxRecord, ep: EndpointRecord, net: NetworkRecord): JoinRequest {
    return {
      networkId: net.id,
      endpointId: ep.id,
      sandbox: sb,
      ifname: ep.ifname ?? "",
      iface: { address: ep.ipv4, addressV6: ep.ipv6, mac: ep.mac },
      driverData: ep.driverData,
    };
  }

  /** Stops taking requests (kernel objects and records stay, as with Docker's live restore). */
  close(): Promise<void> {
    return this.#lock.run(async () => {
      if (!this.#closed) {
        this.#closed = true;
        await this.#onClose?.();
      }
    });
  }

  // ---------------------------------------------------------------- services (issue 8)

  /** Every service, oldest first. */
  listServices(): ServiceRecord[] {
    return this.#services.list();
  }

  /** A service with its backends' sandboxes and addresses. */
  inspectService(ref: string): ServiceView {
    return this.#services.view(ref);
  }

  /** Creates a service: a VIP from the network's IPAM (VIP mode), its nft rules, its name. */
  createService(opts: ServiceCreateOptions): Promise<ServiceRecord> {
    return this.#locked(
      `Cannot create service "${opts.name}"`,
      (undo) => this.#services.create(opts, undo),
    );
  }

  /** Removes a service: rules, name and VIP go. */
  removeService(ref: string): Promise<void> {
    return this.#locked(`Cannot remove service "${ref}"`, () => this.#services.remove(ref));
  }

  /** Adds a sandbox's endpoint on the service's network to its backends (at once). */
  addBackend(serviceRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot add sandbox "${sandboxRef}" to service "${serviceRef}"`,
      (undo) => this.#services.addBackend(serviceRef, sandboxRef, undo),
    );
  }

  /** Removes a sandbox from a service's backends: it gets no new connections. */
  removeBackend(serviceRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot remove sandbox "${sandboxRef}" from service "${serviceRef}"`,
      () => this.#services.removeBackend(serviceRef, sandboxRef),
    );
  }

  // ---------------------------------------------------------------- embedded DNS

  #resolvConf(hostResolv: string | undefined): string {
    return this.#resolver ? EMBEDDED_RESOLV_CONF : resolvConf(this.#dns, hostResolv);
  }

  /** Tells the resolver about an endpoint: its names on its network (§4.2). */
  #publish(ep: EndpointRecord, sb: SandboxRecord, net: NetworkRecord): void {
    if (!this.#resolver || !ep.ifname) return;
    try {
      this.#resolver.upsertEndpoint({
        sandboxId: sb.id,
        sandboxName: sb.name,
        hostname: sb.hostname,
        networkId: net.id,
        networkName: net.name,
        // no gateway: no way out (internal, or a macvlan network without a parent)
        internal: net.internal || (!ep.gateway && !ep.gatewayV6),
        aliases: [...ep.aliases, ...this.#services.aliasesOf(ep.id)],
        ipv4: ep.ipv4?.split("/")[0],
        ipv6: ep.ipv6?.split("/")[0],
      });
    } catch (err) {
      this.#log(
        `dns: endpoint ${sb.name} on ${net.name}: ${err instanceof Error ? err.message : err}`,
      );
    }
  }

  /**
   * Puts every sandbox and endpoint in the store into the resolver (after a start: the
   * resolver keeps nothing), in join order, which decides which network answers first.
   */
  syncResolver(): Promise<void> {
    return this.#lock.run(async () => {
      if (!this.#resolver) return;
      const nets = new Map(this.#store.list("network").map((n) => [n.id, n]));
      for (const sb of this.#store.list("sandbox")) {
        if (!(await this.#kernel.netnsExists(sb.netnsName))) continue;
        try {
          await this.#resolver.addSandbox(sb.id, sb.netnsPath);
        } catch (err) {
          this.#log(`dns: sandbox ${sb.name}: ${err instanceof Error ? err.message : err}`);
          continue;
        }
        for (const ep of this.#endpointsOf(sb)) {
          const net = nets.get(ep.networkId);
          if (net) this.#publish(ep, sb, net);
        }
      }
    });
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs an operation under the lock with an undo stack; a failure unwinds it. */
  #locked<T>(action: string, fn: (undo: UndoStack) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      if (this.#closed) throw new CnmError("internal", `${action}: the controller is closed`);
      const undo = new UndoStack(this.#log);
      try {
        const result = await fn(undo);
        undo.commit();
        return result;
      } catch (err) {
        await undo.unwind();
        const wrapped = withAction(action, err);
        this.#log(`${wrapped.message}`);
        throw wrapped;
      }
    });
  }
}

function toIpamData(c: IpamConfig): IpamData {
  const bits = c.subnet.split("/")[1];
  return { pool: c.subnet, gateway: c.gateway ? `${c.gateway}/${bits}` : undefined };
}

/**
 * Lines that configure a joined interface inside its sandbox: its addresses (`replace`, so
 * a driver that set them already is no error) and up.
 */
function interfaceLines(ep: EndpointRecord): string[] {
  if (!ep.ifname) return [];
  const lines = [ep.ipv4, ep.ipv6].filter((a): a is string => !!a).map((a) =>
    `addr replace ${a} dev ${ep.ifname}${a.includes(":") ? " nodad" : ""}`
  );
  lines.push(`link set dev ${ep.ifname} up`);
  return lines;
}

/** Lines that set a sandbox's default routes via an endpoint (the family follows the gateway). */
function routeLines(ep?: EndpointRecord): string[] {
  const lines: string[] = [];
  if (ep?.gateway) lines.push(`route replace default via ${ep.gateway} dev ${ep.ifname}`);
  if (ep?.gatewayV6) lines.push(`route replace default via ${ep.gatewayV6} dev ${ep.ifname}`);
  return lines;
}

/** The hosts file of a sandbox with these endpoints. */
function hostsContent(sb: SandboxRecord, eps: EndpointRecord[]): string {
  const addresses = eps.flatMap((e) => [e.ipv4, e.ipv6]).filter((a): a is string => !!a);
  return hostsFile(sb.hostname, addresses);
}

/**
 * What is wrong with an endpoint's interface in its sandbox (`links` from `ip -j addr`):
 * missing, down, another MAC, an address missing; undefined when it is as stored.
 */
function interfaceProblem(ep: EndpointRecord, links: LinkInfo[]): string | undefined {
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

/** The lowest free `<prefix>N` among a sandbox's interface names. */
export function nextIfname(prefix: string, used: (string | undefined)[]): string {
  const taken = new Set(used);
  for (let i = 0;; i++) if (!taken.has(`${prefix}${i}`)) return `${prefix}${i}`;
}

/**
 * Creates a controller, restores its state from the store and reconciles the kernel with it
 * ({@linkcode Controller.restore}, then {@linkcode Controller.reconcile}; the report is in
 * {@linkcode Controller.lastReconcile}).
 */
export async function createController(options: ControllerOptions): Promise<Controller> {
  const c = new Controller(options);
  await c.restore();
  await c.reconcile();
  await c.syncResolver();
  return c;
}
