/**
 * The bridge driver (research/libnetwork.md §3.1): one Linux bridge per network in the host
 * namespace, a veth pair per endpoint, the gateway address on the bridge, and nftables rules
 * (isolation between networks, internal networks, masquerade) in a table the driver owns.
 *
 * Verbs and kernel work: `createEndpoint` only reserves the names (host-side veth) and the
 * MAC; `join` does the kernel work in the host namespace (the pair is created with its
 * sandbox end already in the sandbox under its name, see {@linkcode joinPlan}), and the
 * controller addresses, brings up and routes that interface, as libnetwork's sandbox does;
 * `leave` deletes the pair; `deleteEndpoint` removes whatever `leave` could not.
 * @module
 */
import {
  type CreateNetworkRequest,
  type ExternalConnectivityRequest,
  type JoinRequest,
  type JoinResult,
  type NetworkDriver,
  PORTMAP_OPTION,
} from "../../driver_api/mod.ts";
import type { Kernel, LinkInfo } from "../../kernel/kernel.ts";
import { plan } from "../../kernel/plan.ts";
import {
  ForbiddenError,
  InvalidArgumentError,
  KernelCommandError,
  NotFoundError,
} from "../../model/errors.ts";
import { Prefix } from "../../model/ip.ts";
import { randomHex } from "../../model/names.ts";
import type { PortBinding } from "../../model/objects.ts";
import { parseBridgeOptions } from "./options.ts";
import {
  type BridgeNetwork,
  canonical,
  createNetworkPlan,
  deleteNetworkLines,
  type ForwardingDone,
  forwardingOps,
  foundBridge,
  gatewayLine,
  isBridge,
  joinPlan,
  macFor,
  nftAddNetwork,
  nftAddPorts,
  nftRemoveNetwork,
  nftScript,
  notABridgeMessage,
  parseBridgeComment,
  portsComment,
  type PublishedEndpoint,
} from "./plan.ts";

/** Options of {@linkcode createBridgeDriver}. */
export interface BridgeDriverOptions {
  kernel: Kernel;
  /** The host namespace (name under /run/netns); absent = the root namespace. */
  hostNetns?: string;
  /** Name of the nftables table (family inet) the driver owns in the host namespace. */
  table: string;
}

/** A stored endpoint of one of the driver's networks, as reconcile gets it. */
export interface BridgeStoredEndpoint {
  networkId: string;
  endpointId: string;
  driverData: Record<string, string>;
  /** IPv4 address with prefix length. */
  ipv4?: string;
  /** Its published ports, as bound: reconcile installs them again. */
  published?: PortBinding[];
}

/** What {@linkcode BridgeDriver.reconcile} found and did. */
export interface BridgeReconcileResult {
  /** Kernel objects of networks (or of the driver: no `networkId`) it had to re-create. */
  repaired: { networkId?: string; what: string }[];
  /** Endpoints whose host side is missing or wrong: the controller re-creates them. */
  broken: { endpointId: string; reason: string }[];
  /** Kernel objects it removed because no stored object owns them. */
  removed: { kind: "link" | "driver"; name: string; reason: string }[];
}

/**
 * The bridge driver: the NetworkDriver verbs plus the reconcile hook the controller calls
 * after a restart (the controller's `DriverReconcileHook`).
 */
export interface BridgeDriver extends NetworkDriver {
  /**
   * Makes the kernel agree with the stored state after a restart: every network's bridge,
   * gateway addresses and the nft table exist (re-created when not); reports stored
   * endpoints whose host-side veth is missing or off its bridge; removes veths on our
   * bridges that no stored endpoint names.
   */
  reconcile(endpoints: BridgeStoredEndpoint[]): Promise<BridgeReconcileResult>;
}

/** Host-side veth names: `veth` and 7 hex digits (as Docker's). */
const VETH_RE = /^veth[0-9a-f]{7}$/;

/** Creates the bridge driver for one host. */
export function createBridgeDriver(options: BridgeDriverOptions): BridgeDriver {
  const { kernel, hostNetns, table } = options;
  const networks = new Map<string, BridgeNetwork>();
  /** Endpoints whose veth pair `leave` deleted: `deleteEndpoint` has nothing left to do. */
  const left = new Set<string>();
  /** Forwarding sysctls set in the host namespace by this driver (once per host). */
  const forwarding: ForwardingDone = {};
  /** Repairs made by `restoreNetwork`, reported (then forgotten) by `reconcile`. */
  let repairs: { networkId?: string; what: string }[] = [];
  let tableChecked = false;
  /** The nft table holds exactly `networks` (written whole by this driver since). */
  let tableInSync = false;
  /** Published ports by endpoint id. */
  const ports = new Map<string, PublishedEndpoint>();
  /** `route_localnet` set in the host namespace (for ports on 127.0.0.1). */
  let localnet = false;
  /**
   * The comments of the `bridges` set's elements by bridge name, as the table had them
   * when the first network was restored: what user-named bridges were like before.
   */
  let recorded: Map<string, string> | undefined;

  function describe(req: CreateNetworkRequest, preexisting: boolean): BridgeNetwork {
    return {
      id: req.networkId,
      name: req.name,
      config: parseBridgeOptions(req.networkId, req.options, req.enableIpv6),
      internal: req.internal,
      ipv4: req.ipv4.map((d) => ({ pool: d.pool, gateway: d.gateway })),
      ipv6: req.ipv6.map((d) => ({ pool: d.pool, gateway: d.gateway })),
      preexisting,
    };
  }

  function get(networkId: string): BridgeNetwork {
    const n = networks.get(networkId);
    if (!n) throw new NotFoundError(`bridge network ${networkId.slice(0, 12)} is not known`);
    return n;
  }

  function markForwarding(net: BridgeNetwork): void {
    forwarding.v4 = true;
    if (net.ipv6.length > 0) forwarding.v6 = true;
  }

  /** Rewrites the whole table from `networks` (or deletes it when there is none). */
  async function syncFirewall(): Promise<void> {
    tableInSync = false;
    const live = [...ports.values()].filter((p) => networks.has(p.networkId));
    await kernel.nft(hostNetns, nftScript(table, [...networks.values()], live));
    tableInSync = networks.size > 0;
  }

  /**
   * Applies one network's change as a small transaction when the table is known to be in
   * sync, else (or when that fails: the table was changed under us) rewrites it whole.
   */
  async function updateFirewall(script: string): Promise<void> {
    if (tableInSync && networks.size > 0) {
      try {
        await kernel.nft(hostNetns, script);
        return;
      } catch (err) {
        kernel.log(
          `bridge: incremental nft change failed, rewriting table inet ${table}: ${
            err instanceof Error ? err.message : err
          }`,
        );
      }
    }
    await syncFirewall();
  }

  async function tableExists(): Promise<boolean> {
    return (await kernel.nftTables(hostNetns)).includes(`inet ${table}`);
  }

  /** The host's link of that name, with its kind and addresses; undefined when none. */
  async function findLink(name: string): Promise<LinkInfo | undefined> {
    const r = await kernel.runner.run({
      argv: kernel.ipArgv(hostNetns, "-j", "-d", "addr", "show", "dev", name),
      allowFail: true,
    });
    if (r.code !== 0 || !r.stdout.trim()) return undefined;
    return (JSON.parse(r.stdout) as LinkInfo[]).find((l) => l.ifname === name);
  }

  /** The comments of the `bridges` set's elements by name ({@linkcode bridgeComment}). */
  async function readRecords(): Promise<Map<string, string>> {
    const r = await kernel.runner.run({
      argv: kernel.inNetns(hostNetns, ["nft", "-j", "list", "set", "inet", table, "bridges"]),
      allowFail: true,
    });
    const out = new Map<string, string>();
    if (r.code !== 0) return out;
    try {
      const parsed = JSON.parse(r.stdout || "{}") as {
        nftables?: {
          set?: { elem?: (string | { elem?: { val?: string; comment?: string } })[] };
        }[];
      };
      for (const e of parsed.nftables ?? []) {
        for (const x of e.set?.elem ?? []) {
          if (typeof x === "object" && x.elem?.val && x.elem.comment) {
            out.set(x.elem.val, x.elem.comment);
          }
        }
      }
    } catch (err) {
      kernel.log(`bridge: cannot read set bridges of inet ${table}: ${err}`);
    }
    return out;
  }

  async function create(req: CreateNetworkRequest): Promise<void> {
    const probe = describe(req, false);
    const br = probe.config.bridgeName;
    // A user-named bridge that exists is used as is (and left as found), an interface of
    // another kind is refused before anything is changed (Docker's newInterface). A
    // generated name (br-<id[:12]>) is not looked up first: `link add` refuses an existing
    // one, and a batch that failed on its first line is not undone, so nothing of anybody's
    // is touched.
    let net = probe;
    if (probe.config.userBridgeName) {
      const link = await findLink(br);
      if (link && !isBridge(link)) throw new ForbiddenError(notABridgeMessage(br));
      if (link) net = { ...probe, preexisting: true, found: foundBridge(probe, link) };
    }
    try {
      await kernel.apply(createNetworkPlan(net, hostNetns, forwarding));
    } catch (err) {
      if (
        !net.preexisting && err instanceof KernelCommandError &&
        /File exists/.test(err.stderr) && /^Command failed -:1$/m.test(err.stderr)
      ) {
        throw new ForbiddenError(`bridge ${br} already exists`);
      }
      throw err;
    }
    markForwarding(net);
    networks.set(net.id, net);
    try {
      await updateFirewall(nftAddNetwork(table, net));
    } catch (err) {
      networks.delete(net.id);
      await kernel.ipForce(hostNetns, deleteNetworkLines(net));
      throw err;
    }
  }

  /**
   * Makes sure a known network's kernel objects exist: the bridge (re-created with its
   * addresses when missing), its gateway addresses, up, and forwarding on. `links` is a
   * snapshot of the host's links. Returns what it had to do.
   */
  async function ensureNetwork(net: BridgeNetwork, links: LinkInfo[]): Promise<string[]> {
    const br = net.config.bridgeName;
    const link = links.find((l) => l.ifname === br);
    if (!link) {
      // Made again by us, so ours to delete with the network.
      net.preexisting = false;
      net.found = undefined;
      await kernel.apply(createNetworkPlan(net, hostNetns, forwarding));
      markForwarding(net);
      return [`bridge ${br} was missing: re-created`];
    }
    if (!isBridge(link)) {
      // Somebody's interface took the name: never configure it as ours.
      kernel.log(`bridge: network ${net.name}: ${notABridgeMessage(br)}; left alone`);
      return [];
    }
    const done: string[] = [];
    const lines: string[] = [];
    const have = new Set((link.addr_info ?? []).map((a) => canonical(`${a.local}/${a.prefixlen}`)));
    for (const a of [...net.ipv4, ...net.ipv6]) {
      if (!a.gateway || have.has(canonical(a.gateway))) continue;
      lines.push(gatewayLine(a.gateway, br));
      done.push(`gateway ${a.gateway} was missing on ${br}: re-added`);
      // Added by us now: removed with the network even if the bridge had it at first.
      if (net.found) {
        net.found.kept = net.found.kept.filter((g) => canonical(g) !== canonical(a.gateway!));
      }
    }
    if (!link.flags?.includes("UP")) {
      lines.push(`link set dev ${br} up`);
      done.push(`bridge ${br} was down: brought up`);
    }
    await kernel.ip(hostNetns, lines);
    const sysctls = forwardingOps(net, hostNetns, forwarding);
    if (sysctls.length > 0) {
      await kernel.apply(plan(...sysctls));
      markForwarding(net);
    }
    return done;
  }

  /** The ephemeral port range of the host namespace (Docker's portallocator). */
  async function portRange(): Promise<[number, number]> {
    const r = await kernel.runner.run({
      argv: kernel.inNetns(hostNetns, ["cat", "/proc/sys/net/ipv4/ip_local_port_range"]),
      allowFail: true,
    });
    const m = /^\s*(\d+)\s+(\d+)/.exec(r.code === 0 ? r.stdout : "");
    return m ? [Number(m[1]), Number(m[2])] : [49153, 65535];
  }

  /**
   * Resolves the requested ports: the host address (the network's host_binding_ipv4 when
   * none is given) and ephemeral host ports; refuses one already published on the host.
   */
  async function resolvePorts(net: BridgeNetwork, specs: PortBinding[]): Promise<PortBinding[]> {
    const bound: PortBinding[] = [...ports.values()].flatMap((p) => p.bindings);
    const overlaps = (a: PortBinding, b: PortBinding) =>
      a.protocol === b.protocol && a.hostPort === b.hostPort &&
      (a.hostIp === b.hostIp || a.hostIp === "0.0.0.0" || b.hostIp === "0.0.0.0");
    let range: [number, number] | undefined;
    const out: PortBinding[] = [];
    for (const spec of specs) {
      const b: PortBinding = {
        hostIp: spec.hostIp ?? net.config.hostBindingIpv4,
        hostPort: spec.hostPort,
        containerPort: spec.containerPort,
        protocol: spec.protocol,
      };
      if (b.hostIp?.includes(":")) {
        throw new InvalidArgumentError(`host address ${b.hostIp}: only IPv4 ports are published`);
      }
      if (b.hostPort === 0) {
        range ??= await portRange();
        for (let port = range[0]; port <= range[1]; port++) {
          if (!bound.some((x) => overlaps(x, { ...b, hostPort: port }))) {
            b.hostPort = port;
            break;
          }
        }
        if (b.hostPort === 0) {
          throw new ForbiddenError(`no free ${b.protocol} port left in ${range[0]}-${range[1]}`);
        }
      } else if (bound.some((x) => overlaps(x, b))) {
        throw new ForbiddenError(
          `Bind for ${b.hostIp}:${b.hostPort}/${b.protocol} failed: port is already allocated`,
        );
      }
      bound.push(b);
      out.push(b);
    }
    return out;
  }

  /** Deletes an endpoint's port rules (found by their owner comment) in one transaction. */
  async function removePortRules(p: { networkId: string; endpointId: string }): Promise<void> {
    if (tableInSync && networks.size > 0) {
      try {
        const r = await kernel.runner.run({
          argv: kernel.inNetns(hostNetns, [
            "nft",
            "-j",
            "-a",
            "list",
            "chain",
            "inet",
            table,
            "ports",
          ]),
        });
        const parsed = JSON.parse(r.stdout || "{}") as {
          nftables?: { rule?: { handle: number; comment?: string } }[];
        };
        const comment = portsComment(p);
        const lines = (parsed.nftables ?? []).flatMap((e) =>
          e.rule?.comment === comment
            ? [`delete rule inet ${table} ports handle ${e.rule.handle}`]
            : []
        );
        if (lines.length > 0) await kernel.nft(hostNetns, lines.join("\n") + "\n");
        return;
      } catch (err) {
        kernel.log(
          `bridge: removing port rules failed, rewriting table inet ${table}: ${
            err instanceof Error ? err.message : err
          }`,
        );
      }
    }
    await syncFirewall();
  }

  async function program(req: ExternalConnectivityRequest): Promise<{ published?: PortBinding[] }> {
    const specs = (req.options[PORTMAP_OPTION] ?? []) as PortBinding[];
    if (specs.length === 0) return {};
    const net = get(req.networkId);
    if (net.internal) {
      throw new ForbiddenError(`network ${net.name} is internal: ports cannot be published`);
    }
    const address = req.iface.address?.split("/")[0];
    if (!address) {
      throw new InvalidArgumentError(`the endpoint has no IPv4 address: ports cannot be published`);
    }
    if (ports.has(req.endpointId)) await revoke(req);
    const bindings = await resolvePorts(net, specs);
    if (!localnet) {
      await kernel.apply(plan({
        kind: "sysctl",
        netns: hostNetns,
        key: "net.ipv4.conf.all.route_localnet",
        value: "1",
      }));
      localnet = true;
    }
    const p: PublishedEndpoint = {
      networkId: req.networkId,
      endpointId: req.endpointId,
      address,
      bindings,
    };
    ports.set(req.endpointId, p);
    try {
      await updateFirewall(nftAddPorts(table, p));
      await hairpin(req.driverData.hostIf);
    } catch (err) {
      ports.delete(req.endpointId);
      await removePortRules(p).catch(() => {});
      throw err;
    }
    return { published: bindings };
  }

  /**
   * Hairpin mode on the bridge port of a sandbox with published ports: the kernel's
   * br_netfilter DNATs a sandbox's connection to its own published port while bridging, so
   * the frame goes back out the port it came in on (Docker sets it without the proxy).
   */
  async function hairpin(hostIf: string | undefined): Promise<void> {
    if (hostIf) await kernel.ip(hostNetns, [`link set dev ${hostIf} type bridge_slave hairpin on`]);
  }

  async function revoke(req: ExternalConnectivityRequest): Promise<void> {
    const known = ports.delete(req.endpointId);
    const stored = (req.options[PORTMAP_OPTION] ?? []) as PortBinding[];
    if (!known && stored.length === 0) return;
    if (!networks.has(req.networkId)) return;
    await removePortRules(req);
  }

  return {
    type: "bridge",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),

    validateNetwork(req) {
      // Synchronous, so the kernel is not asked here: a named interface that is not a
      // bridge is refused by createNetwork, before its first change.
      const net = describe(req, false);
      for (const other of networks.values()) {
        if (other.config.bridgeName === net.config.bridgeName) {
          throw new ForbiddenError(
            `bridge name ${net.config.bridgeName} conflicts with network "${other.name}"`,
          );
        }
        // Docker's bridge driver refuses overlapping subnets between bridge networks.
        for (const a of [...net.ipv4, ...net.ipv6]) {
          for (const b of [...other.ipv4, ...other.ipv6]) {
            if (Prefix.parse(a.pool).overlaps(Prefix.parse(b.pool))) {
              throw new ForbiddenError(
                `subnet ${a.pool} overlaps network "${other.name}" (${b.pool})`,
              );
            }
          }
        }
      }
    },

    createNetwork: (req) => create(req),

    async restoreNetwork(req) {
      // A restored network keeps its bridge; a missing one is re-created.
      const net = describe(req, false);
      const links = await kernel.addrs(hostNetns);
      const br = net.config.bridgeName;
      const link = links.find((l) => l.ifname === br);
      // Never configured as ours, and not known (so deleteNetwork leaves it alone either).
      if (link && !isBridge(link)) throw new ForbiddenError(notABridgeMessage(br));
      if (link && net.config.userBridgeName) {
        // Made by this network or found? The record is the element's comment in our table;
        // without one (a flushed table) the bridge is taken as found, with the gateways it
        // has now as its own: nothing of it is deleted (a bridge of ours may be left).
        recorded ??= await readRecords();
        const rec = parseBridgeComment(net.id, recorded.get(br) ?? "");
        if (rec !== "made") {
          net.preexisting = true;
          net.found = rec ?? { kept: foundBridge(net, link).kept };
          if (!rec) {
            kernel.log(`bridge: network ${net.name}: no record of bridge ${br}; taken as found`);
          }
        }
      }
      networks.set(net.id, net);
      tableInSync = false;
      const done = await ensureNetwork(net, links);
      repairs.push(...done.map((what) => ({ networkId: net.id, what })));
      // The table is rewritten whole by reconcile, once every network is known; a table
      // that is gone (a flushed ruleset) is put back at once, so isolation holds meanwhile.
      if (!tableChecked) {
        tableChecked = true;
        if (!(await tableExists())) {
          await syncFirewall();
          repairs.push({ what: `nft table inet ${table} was missing: re-created` });
        }
      }
    },

    async reconcile(endpoints) {
      const result: BridgeReconcileResult = { repaired: repairs, broken: [], removed: [] };
      repairs = [];
      const links = await kernel.addrs(hostNetns);
      for (const net of networks.values()) {
        for (const what of await ensureNetwork(net, links)) {
          result.repaired.push({ networkId: net.id, what });
        }
      }
      for (const ep of endpoints) {
        const address = ep.ipv4?.split("/")[0];
        if (!ep.published?.length || !address || !networks.has(ep.networkId)) continue;
        ports.set(ep.endpointId, {
          networkId: ep.networkId,
          endpointId: ep.endpointId,
          address,
          bindings: ep.published,
        });
        if (ep.driverData.hostIf) {
          await kernel.ipForce(hostNetns, [
            `link set dev ${ep.driverData.hostIf} type bridge_slave hairpin on`,
          ]);
        }
      }
      const hadTable = await tableExists();
      await syncFirewall();
      if (!hadTable && networks.size > 0) {
        result.repaired.push({ what: `nft table inet ${table} was missing: re-created` });
      }
      if (hadTable && networks.size === 0) {
        result.removed.push({
          kind: "driver",
          name: `nft table inet ${table}`,
          reason: "no bridge network is stored",
        });
      }
      const byName = new Map(links.map((l) => [l.ifname, l]));
      const named = new Set<string>();
      for (const ep of endpoints) {
        const net = networks.get(ep.networkId);
        if (!net) continue;
        const hostIf = ep.driverData.hostIf;
        const br = net.config.bridgeName;
        if (!hostIf) {
          result.broken.push({ endpointId: ep.endpointId, reason: "no host-side veth recorded" });
          continue;
        }
        named.add(hostIf);
        const link = byName.get(hostIf);
        const reason = !link
          ? `host-side veth ${hostIf} is missing`
          : link.master !== br
          ? `host-side veth ${hostIf} is not on bridge ${br}`
          : !link.flags?.includes("UP")
          ? `host-side veth ${hostIf} is down`
          : undefined;
        if (reason) result.broken.push({ endpointId: ep.endpointId, reason });
      }
      // Veths on the bridges this driver made for stored networks that no endpoint names
      // (a crash between the kernel work and the store's commit). Ports of a bridge the
      // user named are theirs to keep.
      const ours = new Set(
        [...networks.values()].filter((n) => !n.config.userBridgeName).map((n) =>
          n.config.bridgeName
        ),
      );
      const orphans = links.filter((l) =>
        l.master && ours.has(l.master) && l.linkinfo?.info_kind === "veth" &&
        VETH_RE.test(l.ifname) && !named.has(l.ifname)
      );
      for (const l of orphans) {
        await kernel.ipForce(hostNetns, [`link del dev ${l.ifname}`]);
        result.removed.push({
          kind: "link",
          name: l.ifname,
          reason: `veth on bridge ${l.master} that no endpoint names`,
        });
      }
      return result;
    },

    async deleteNetwork(networkId) {
      const net = networks.get(networkId);
      if (!net) return;
      networks.delete(networkId);
      for (const [id, p] of ports) if (p.networkId === networkId) ports.delete(id);
      await updateFirewall(nftRemoveNetwork(table, net));
      await kernel.ipForce(hostNetns, deleteNetworkLines(net));
    },

    createEndpoint(networkId, _endpointId, iface) {
      // Names and MAC only: the pair is made by join, straight into the sandbox.
      get(networkId);
      const mac = iface.mac ?? macFor(iface.address);
      return Promise.resolve({ mac, driverData: { hostIf: `veth${randomHex(7)}` } });
    },

    async deleteEndpoint(_networkId, endpointId, driverData) {
      if (left.delete(endpointId)) return;
      if (driverData.hostIf) await kernel.ipForce(hostNetns, [`link del dev ${driverData.hostIf}`]);
    },

    async join(req: JoinRequest): Promise<JoinResult> {
      const net = get(req.networkId);
      left.delete(req.endpointId);
      await kernel.apply(
        joinPlan(net, {
          hostIf: req.driverData.hostIf,
          sandboxNetns: req.sandbox.netnsName,
          ifname: req.ifname,
          mac: req.iface.mac,
        }, hostNetns),
      );
      if (ports.has(req.endpointId)) await hairpin(req.driverData.hostIf);
      // Internal networks offer no gateway: no default route (§3.1, "Network is unreachable").
      if (net.internal) return {};
      return {
        gateway: net.ipv4[0]?.gateway?.split("/")[0],
        gatewayV6: req.iface.addressV6 ? net.ipv6[0]?.gateway?.split("/")[0] : undefined,
      };
    },

    async leave(req: JoinRequest) {
      // Deleting the sandbox end destroys the pair; deleteEndpoint then has nothing to do.
      // A namespace about to be deleted takes the pair with it; the host end is deleted in
      // the background too, in case the namespace outlives its name.
      if (req.namespaceGoing && req.driverData.hostIf) {
        await kernel.deleteLinkLater(hostNetns, req.driverData.hostIf);
        left.add(req.endpointId);
        return;
      }
      if (await kernel.ipForce(req.sandbox.netnsName, [`link del dev ${req.ifname}`])) {
        left.add(req.endpointId);
      }
    },

    programExternalConnectivity: (req) => program(req),
    revokeExternalConnectivity: (req) => revoke(req),
  };
}
