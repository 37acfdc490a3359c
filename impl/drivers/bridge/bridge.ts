/**
 * The bridge driver (research/libnetwork.md §3.1): one Linux bridge per network in the host
 * namespace, a veth pair per endpoint, the gateway address on the bridge, and nftables rules
 * (isolation between networks, internal networks, masquerade) in a table the driver owns.
 * @module
 */
import type {
  CreateNetworkRequest,
  JoinRequest,
  JoinResult,
  NetworkDriver,
} from "../../driver_api/mod.ts";
import type { Kernel } from "../../kernel/kernel.ts";
import { ForbiddenError, NotFoundError } from "../../model/errors.ts";
import { Prefix } from "../../model/ip.ts";
import { randomHex } from "../../model/names.ts";
import { parseBridgeOptions } from "./options.ts";
import {
  type BridgeNetwork,
  createEndpointPlan,
  createNetworkPlan,
  deleteNetworkLines,
  joinPlan,
  macFor,
  nftScript,
  type VethNames,
} from "./plan.ts";

/** Options of {@linkcode createBridgeDriver}. */
export interface BridgeDriverOptions {
  kernel: Kernel;
  /** The host namespace (name under /run/netns); absent = the root namespace. */
  hostNetns?: string;
  /** Name of the nftables table (family inet) the driver owns in the host namespace. */
  table: string;
}

/** Creates the bridge driver for one host. */
export function createBridgeDriver(options: BridgeDriverOptions): NetworkDriver {
  const { kernel, hostNetns, table } = options;
  const networks = new Map<string, BridgeNetwork>();

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

  async function syncFirewall(): Promise<void> {
    await kernel.nft(hostNetns, nftScript(table, [...networks.values()]));
  }

  async function bridgeExists(name: string): Promise<boolean> {
    const r = await kernel.runner.run({
      argv: kernel.ipArgv(hostNetns, "link", "show", "dev", name),
      allowFail: true,
    });
    return r.code === 0;
  }

  async function create(req: CreateNetworkRequest, restoring: boolean): Promise<void> {
    const probe = describe(req, false);
    const exists = await bridgeExists(probe.config.bridgeName);
    if (exists && !probe.config.userBridgeName && !restoring) {
      throw new ForbiddenError(`bridge ${probe.config.bridgeName} already exists`);
    }
    // A restored network keeps its bridge; a user-named bridge that existed stays theirs.
    const net = describe(req, probe.config.userBridgeName && exists && !restoring);
    if (restoring && exists) {
      networks.set(net.id, net);
      await syncFirewall();
      return;
    }
    await kernel.apply(createNetworkPlan(net, hostNetns));
    networks.set(net.id, net);
    try {
      await syncFirewall();
    } catch (err) {
      networks.delete(net.id);
      await kernel.ipForce(hostNetns, deleteNetworkLines(net));
      throw err;
    }
  }

  return {
    type: "bridge",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),

    validateNetwork(req) {
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

    createNetwork: (req) => create(req, false),
    restoreNetwork: (req) => create(req, true),

    async deleteNetwork(networkId) {
      const net = networks.get(networkId);
      if (!net) return;
      networks.delete(networkId);
      await syncFirewall();
      await kernel.ipForce(hostNetns, deleteNetworkLines(net));
    },

    async createEndpoint(networkId, _endpointId, iface) {
      const net = get(networkId);
      const veth: VethNames = { hostIf: `veth${randomHex(7)}`, peerIf: `veth${randomHex(7)}` };
      const mac = iface.mac ?? macFor(iface.address);
      await kernel.apply(createEndpointPlan(net, veth, mac, hostNetns));
      return { mac, driverData: { ...veth } };
    },

    async deleteEndpoint(_networkId, _endpointId, driverData) {
      if (driverData.hostIf) await kernel.ipForce(hostNetns, [`link del dev ${driverData.hostIf}`]);
    },

    async join(req: JoinRequest): Promise<JoinResult> {
      const net = get(req.networkId);
      const veth = { hostIf: req.driverData.hostIf, peerIf: req.driverData.peerIf };
      const addresses = [req.iface.address, req.iface.addressV6].filter((a): a is string => !!a);
      await kernel.apply(joinPlan(veth, req.sandbox.netnsName, req.ifname, addresses, hostNetns));
      // Internal networks offer no gateway: no default route (§3.1, "Network is unreachable").
      if (net.internal) return {};
      return {
        gateway: net.ipv4[0]?.gateway?.split("/")[0],
        gatewayV6: req.iface.addressV6 ? net.ipv6[0]?.gateway?.split("/")[0] : undefined,
      };
    },

    async leave(req: JoinRequest) {
      // Deleting the sandbox end destroys the pair; deleteEndpoint then finds nothing to do.
      await kernel.ipForce(req.sandbox.netnsName, [`link del dev ${req.ifname}`]);
    },

    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };
}
