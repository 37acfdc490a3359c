/**
 * The macvlan driver (research/libnetwork.md §3.3): each endpoint is a macvlan link of a
 * parent interface in the host namespace, so sandboxes appear directly on the parent's
 * layer-2 segment with their own MAC and address (no bridge, no NAT, no firewall rules).
 *
 * - `parent` names an existing interface of the host namespace (checked before anything is
 *   made); `macvlan_mode` is bridge (default), private, vepa or passthru. A parent in
 *   passthru mode is exclusive: no second network may use it (Docker refuses it too), and
 *   it takes one endpoint (the kernel's rule).
 * - Without `parent` the network is internal (no default route, whatever the request says,
 *   as libnetwork forces it) on a private parent the driver makes and removes with the
 *   network: a veth pair `mv-<id[:12]>`/`mvp-<id[:11]>`, both ends up, no address (Docker
 *   uses a dummy link; this kernel has none).
 * - `createEndpoint` only chooses the MAC (Docker 20.10's `02:42:` + IPv4); `join` creates
 *   the macvlan link straight into the sandbox under its interface name (see
 *   {@linkcode joinPlan}), and the controller addresses, brings up and routes it; `leave`
 *   deletes it; `deleteEndpoint` has nothing left to do.
 * - The host cannot reach its own macvlan sandboxes through the parent: the kernel does not
 *   deliver a parent's outgoing frames to its macvlan links (Docker documents the same).
 * @module
 */
import type { CreateNetworkRequest, JoinRequest, NetworkDriver } from "../../driver_api/mod.ts";
import type { Kernel, LinkInfo } from "../../kernel/kernel.ts";
import { type Plan, plan } from "../../kernel/plan.ts";
import {
  ForbiddenError,
  InvalidArgumentError,
  KernelCommandError,
  NotFoundError,
  UnsupportedError,
} from "../../model/errors.ts";
import { parseMacvlanOptions } from "./options.ts";
import {
  createNetworkPlan,
  deleteNetworkLines,
  joinPlan,
  leaveLines,
  macFor,
  type MacvlanNetwork,
} from "./plan.ts";

/** Options of {@linkcode createMacvlanDriver}. */
export interface MacvlanDriverOptions {
  kernel: Kernel;
  /** The host namespace (name under /run/netns); absent = the root namespace. */
  hostNetns?: string;
}

/** Creates the macvlan driver for one host. */
export function createMacvlanDriver(options: MacvlanDriverOptions): NetworkDriver {
  const { kernel, hostNetns } = options;
  const networks = new Map<string, MacvlanNetwork>();
  /** Endpoints created in this process, per network (a passthru network takes one). */
  const endpoints = new Map<string, Set<string>>();

  function describe(req: CreateNetworkRequest): MacvlanNetwork {
    const config = parseMacvlanOptions(req.networkId, req.options);
    return {
      id: req.networkId,
      name: req.name,
      config,
      internal: req.internal || !config.userParent,
      ipv4: req.ipv4.map((d) => ({ pool: d.pool, gateway: d.gateway })),
      ipv6: req.ipv6.map((d) => ({ pool: d.pool, gateway: d.gateway })),
    };
  }

  function get(networkId: string): MacvlanNetwork {
    const n = networks.get(networkId);
    if (!n) throw new NotFoundError(`macvlan network ${networkId.slice(0, 12)} is not known`);
    return n;
  }

  /** Refuses a network that would share a parent with a passthru one (either way). */
  function checkPassthru(net: MacvlanNetwork): void {
    for (const other of networks.values()) {
      if (other.id === net.id || other.config.parent !== net.config.parent) continue;
      if (net.config.mode === "passthru") {
        throw new ForbiddenError(
          `cannot use mode passthru: parent interface ${net.config.parent} is used by network "${other.name}"`,
        );
      }
      if (other.config.mode === "passthru") {
        throw new ForbiddenError(
          `parent interface ${net.config.parent} is used by network "${other.name}" in mode passthru`,
        );
      }
    }
  }

  /** The host namespace's link of that name, or undefined. */
  async function link(name: string): Promise<LinkInfo | undefined> {
    const r = await kernel.runner.run({
      argv: kernel.ipArgv(hostNetns, "-j", "link", "show", "dev", name),
      allowFail: true,
    });
    if (r.code !== 0 || !r.stdout.trim()) return undefined;
    return (JSON.parse(r.stdout) as LinkInfo[])[0];
  }

  async function requireParent(net: MacvlanNetwork): Promise<void> {
    if (!net.config.userParent) return;
    if (!(await link(net.config.parent))) {
      throw new InvalidArgumentError(
        `parent interface ${net.config.parent} does not exist in the host namespace`,
      );
    }
  }

  /** Makes a network's private parent; "File exists" on the first line names the link. */
  async function makePrivateParent(net: MacvlanNetwork): Promise<void> {
    try {
      await kernel.apply(createNetworkPlan(net, hostNetns));
    } catch (err) {
      if (
        err instanceof KernelCommandError && /File exists/.test(err.stderr) &&
        /^Command failed -:1$/m.test(err.stderr)
      ) {
        throw new ForbiddenError(`link ${net.config.parent} already exists`);
      }
      throw err;
    }
  }

  /** A kernel refusal of a join, said in the driver's words when it is a known one. */
  function joinError(net: MacvlanNetwork, err: unknown): unknown {
    if (!(err instanceof KernelCommandError)) return err;
    const { parent, mode } = net.config;
    if (err.stderr.includes(`Cannot find device "${parent}"`)) {
      return new NotFoundError(
        `parent interface ${parent} of network "${net.name}" does not exist in the host namespace`,
        { cause: err },
      );
    }
    if (/Unknown device type/.test(err.stderr)) {
      return new UnsupportedError(`the kernel has no macvlan support`, { cause: err });
    }
    if (mode === "passthru" && /Invalid argument/.test(err.stderr)) {
      return new ForbiddenError(
        `network "${net.name}" is in mode passthru: parent interface ${parent} takes one endpoint and has one`,
        { cause: err },
      );
    }
    return err;
  }

  /**
   * Applies a join plan: the first op creates the link in the sandbox (all or nothing); if
   * a later op fails, the link is deleted there (see {@linkcode joinPlan}).
   */
  async function applyJoin(p: Plan, sandboxNetns: string, ifname: string): Promise<void> {
    const [create, ...rest] = p.ops;
    await kernel.apply(plan(create));
    if (rest.length === 0) return;
    try {
      await kernel.apply(plan(...rest));
    } catch (err) {
      await kernel.ipForce(sandboxNetns, leaveLines({ ifname }));
      throw err;
    }
  }

  return {
    type: "macvlan",
    capabilities: () => ({ dataScope: "local", connectivityScope: "global" }),

    validateNetwork(req) {
      checkPassthru(describe(req));
    },

    async createNetwork(req) {
      const net = describe(req);
      checkPassthru(net);
      await requireParent(net);
      if (!net.config.userParent) await makePrivateParent(net);
      networks.set(net.id, net);
      endpoints.set(net.id, new Set());
    },

    async restoreNetwork(req) {
      // The driver knows the network again; a private parent that is gone is made again
      // (its endpoints went with it: the controller's reconcile re-creates them), and one
      // that is down is brought up. A user's parent is theirs: a missing one is reported.
      const net = describe(req);
      networks.set(net.id, net);
      if (!endpoints.has(net.id)) endpoints.set(net.id, new Set());
      if (net.config.userParent) {
        await requireParent(net);
        return;
      }
      const [parent, peer] = [await link(net.config.parent), await link(net.config.peer!)];
      if (!parent || !peer) {
        if (parent || peer) {
          await kernel.ipForce(hostNetns, [`link del dev ${(parent ?? peer)!.ifname}`]);
        }
        await makePrivateParent(net);
        kernel.log(`macvlan: private parent ${net.config.parent} was missing: re-created`);
        return;
      }
      const down = [parent, peer].filter((l) => !l.flags?.includes("UP"));
      if (down.length > 0) {
        await kernel.ip(hostNetns, down.map((l) => `link set dev ${l.ifname} up`));
        kernel.log(`macvlan: private parent ${net.config.parent} was down: brought up`);
      }
    },

    async deleteNetwork(networkId) {
      const net = networks.get(networkId);
      if (!net) return;
      networks.delete(networkId);
      endpoints.delete(networkId);
      await kernel.ipForce(hostNetns, deleteNetworkLines(net));
    },

    // deno-lint-ignore require-await
    async createEndpoint(networkId, endpointId, iface) {
      // The MAC only: the link is made by join, straight into the sandbox.
      const net = get(networkId);
      const eps = endpoints.get(networkId) ?? new Set<string>();
      if (net.config.mode === "passthru" && [...eps].some((e) => e !== endpointId)) {
        throw new ForbiddenError(
          `network "${net.name}" is in mode passthru: parent interface ${net.config.parent} takes one endpoint and has one`,
        );
      }
      eps.add(endpointId);
      endpoints.set(networkId, eps);
      return { mac: iface.mac ?? macFor(iface.address), driverData: {} };
    },

    deleteEndpoint(networkId, endpointId) {
      // Nothing in the host namespace: the link lives in the sandbox (leave deletes it, and
      // it goes with the sandbox's namespace).
      endpoints.get(networkId)?.delete(endpointId);
      return Promise.resolve();
    },

    async join(req: JoinRequest) {
      const net = get(req.networkId);
      const p = joinPlan(net, {
        sandboxNetns: req.sandbox.netnsName,
        ifname: req.ifname,
        mac: req.iface.mac,
      }, hostNetns);
      try {
        await applyJoin(p, req.sandbox.netnsName, req.ifname);
      } catch (err) {
        throw joinError(net, err);
      }
      // Internal networks (and networks without a parent) offer no gateway: no default route.
      if (net.internal) return {};
      return {
        gateway: net.ipv4[0]?.gateway?.split("/")[0],
        gatewayV6: req.iface.addressV6 ? net.ipv6[0]?.gateway?.split("/")[0] : undefined,
      };
    },

    async leave(req: JoinRequest) {
      await kernel.ipForce(req.sandbox.netnsName, leaveLines(req));
    },

    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };
}
