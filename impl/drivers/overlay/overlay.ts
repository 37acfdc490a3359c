/**
 * The overlay driver (research/libnetwork.md §3.2): networks that span hosts over VXLAN,
 * with what the hosts must agree on in the global store (impl/store/global.ts).
 *
 * - Scope global: the controller creates the network in the global store (name, VNI, pool
 *   and gateway claimed in one transaction); every host learns it from there, and this
 *   driver only remembers it (`createNetwork` makes nothing in the kernel).
 * - The network's namespace (bridge + VXLAN device, ./plan.ts) is made when the first local
 *   endpoint joins and deleted when the last one leaves, as libnetwork does.
 * - Join publishes the endpoint as a peer under this host's lease; a watch of the store's
 *   peers programs every remote one (static neighbour and forwarding entry) into the
 *   network's namespace, and removes it when it is withdrawn or its host's lease expires.
 * - No default route on the overlay (libnetwork gives egress through docker_gwbridge, not
 *   built here yet): a sandbox on an overlay alone reaches its peers only.
 * @module
 */
import type { CreateNetworkRequest, JoinRequest, NetworkDriver } from "../../driver_api/mod.ts";
import type { Kernel } from "../../kernel/kernel.ts";
import type { Logger } from "../../kernel/runner.ts";
import { UndoStack } from "../../kernel/undo.ts";
import { ForbiddenError, InvalidArgumentError, NotFoundError } from "../../model/errors.ts";
import { macFor } from "../../model/names.ts";
import { type GlobalStore, type PeerRecord, VNI_OPTION } from "../../store/global.ts";
import {
  joinPlan,
  networkPlan,
  OVERLAY_MTU,
  type OverlayNetwork,
  type Peer,
  peersPlan,
  unprogramLines,
  vethName,
} from "./plan.ts";

const MTU_OPTION = "com.docker.network.driver.mtu";
/** Options the overlay driver takes (the VNI is set by the global store, or by the user). */
const KNOWN_OPTIONS = new Set([MTU_OPTION, VNI_OPTION]);

/** Options of {@linkcode createOverlayDriver}. */
export interface OverlayDriverOptions {
  kernel: Kernel;
  /** The host namespace (where the underlay is); absent = the root namespace. */
  hostNetns?: string;
  /** Start of the per-network namespaces' names: `<prefix>-<instance>-ov-<id12>`. */
  netnsPrefix: string;
  /** The global store; absent = overlay networks are refused. */
  global?: GlobalStore;
  log?: Logger;
}

interface NetState extends OverlayNetwork {
  name: string;
  /** Local endpoints joined (the namespace exists while there is one). */
  joined: Set<string>;
  /** Remote peers programmed into the namespace, by endpoint id. */
  programmed: Map<string, Peer>;
  /** A programming round is queued (events since then are in `remote` already). */
  scheduled?: boolean;
}

/** Parses the driver options of a network; throws InvalidArgumentError. */
export function parseOverlayOptions(
  req: Pick<CreateNetworkRequest, "name" | "options">,
): { mtu: number } {
  for (const k of Object.keys(req.options)) {
    if (!KNOWN_OPTIONS.has(k)) {
      throw new InvalidArgumentError(`network ${req.name}: unknown overlay option ${k}`);
    }
  }
  const raw = req.options[MTU_OPTION];
  if (raw === undefined) return { mtu: OVERLAY_MTU };
  const mtu = Number(raw);
  // Above 1450 full-size frames would not fit the underlay's 1500 and are dropped silently
  // at the bridge (measured here): refused rather than accepted as Docker does.
  if (!/^\d+$/.test(raw) || mtu < 68 || mtu > OVERLAY_MTU) {
    throw new InvalidArgumentError(
      `network ${req.name}: ${MTU_OPTION} ${raw} must be 68 to ${OVERLAY_MTU} (VXLAN takes 50 bytes of the underlay's 1500)`,
    );
  }
  return { mtu };
}

/** Creates the overlay driver for one host. */
export function createOverlayDriver(options: OverlayDriverOptions): NetworkDriver & {
  /** Starts following the store's peers (the daemon calls it once after restore). */
  start(): Promise<void>;
} {
  const { kernel, hostNetns, global } = options;
  const log = options.log ?? (() => {});
  const nets = new Map<string, NetState>();
  /** Every remote peer the store has, by network then endpoint (known before a join). */
  const remote = new Map<string, Map<string, PeerRecord>>();
  /** One change at a time per driver: joins, leaves and watch events all touch namespaces. */
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
  };

  const store = (): GlobalStore => {
    if (!global) {
      throw new ForbiddenError(
        `the overlay driver needs a global store: start the daemon with --store etcd://HOST:PORT --advertise-address IP`,
      );
    }
    return global;
  };
  const get = (id: string): NetState => {
    const n = nets.get(id);
    if (!n) throw new NotFoundError(`overlay network ${id.slice(0, 12)} not found`);
    return n;
  };
  const toPeer = (p: PeerRecord): Peer => ({ ip: p.ip.split("/")[0], mac: p.mac, vtep: p.vtep });

  function learn(req: CreateNetworkRequest): NetState {
    const { mtu } = parseOverlayOptions(req);
    const vni = Number(req.options[VNI_OPTION]);
    if (!Number.isInteger(vni) || vni < 1) {
      throw new InvalidArgumentError(`network ${req.name}: no VNI (${VNI_OPTION})`);
    }
    const known = nets.get(req.networkId);
    if (known) return known;
    const n: NetState = {
      id: req.networkId,
      name: req.name,
      vni,
      mtu,
      netns: `${options.netnsPrefix}-ov-${req.networkId.slice(0, 12)}`,
      gateway: req.ipv4[0]?.gateway,
      joined: new Set(),
      programmed: new Map(),
    };
    nets.set(n.id, n);
    return n;
  }

  /** Programs the remote peers of a network whose namespace exists, removing stale ones. */
  async function program(n: NetState): Promise<void> {
    if (n.joined.size === 0) return;
    const want = remote.get(n.id) ?? new Map();
    const add: Peer[] = [];
    const drop: Peer[] = [];
    for (const [eid, p] of want) {
      const peer = toPeer(p);
      const had = n.programmed.get(eid);
      if (!had || had.ip !== peer.ip || had.mac !== peer.mac || had.vtep !== peer.vtep) {
        if (had) drop.push(had);
        add.push(peer);
        n.programmed.set(eid, peer);
      }
    }
    for (const [eid, had] of n.programmed) {
      if (!want.has(eid)) {
        drop.push(had);
        n.programmed.delete(eid);
      }
    }
    if (drop.length > 0) {
      const lines = unprogramLines(drop);
      await kernel.ipForce(n.netns, lines.ip);
      await kernel.bridgeForce(n.netns, lines.bridge);
    }
    if (add.length > 0) await kernel.apply(peersPlan(n, add));
  }

  function onPeer(type: "put" | "delete", p: PeerRecord): void {
    if (p.vtep === global?.host) return; // our own endpoints are on our bridge
    const byEp = remote.get(p.networkId) ?? new Map<string, PeerRecord>();
    if (type === "put") byEp.set(p.endpointId, p);
    else byEp.delete(p.endpointId);
    remote.set(p.networkId, byEp);
    const n = nets.get(p.networkId);
    // Coalesced: a burst of events (many hosts connecting at once) costs one programming
    // round per network, not two commands per event.
    if (n && !n.scheduled) {
      n.scheduled = true;
      serial(() => {
        n.scheduled = false;
        return program(n);
      }).catch((err) => log(`overlay: programming peers of ${n.name} failed: ${err}`));
    }
  }

  async function ensureNamespace(n: NetState, undo: UndoStack): Promise<void> {
    if (n.joined.size > 0 || await kernel.netnsExists(n.netns)) return;
    await kernel.apply(networkPlan(n, store().host, hostNetns), undo);
    n.programmed.clear();
  }

  async function dropNamespace(n: NetState): Promise<void> {
    // The VXLAN device goes first, and before the call returns: it was made in the host
    // namespace, which keeps its VNI and UDP port while the device lives, and a deleted
    // namespace's devices live on until the kernel's asynchronous clean-up (a new overlay
    // that got the same VNI at once failed with "A VXLAN device with the specified VNI
    // already exists", seen in the suite). The namespace's deletion takes the rest.
    await kernel.ipForce(n.netns, ["link del dev vxlan0"]);
    await kernel.deleteNetns(n.netns);
    n.programmed.clear();
  }

  return {
    type: "overlay",
    capabilities: () => ({ dataScope: "global", connectivityScope: "global" }),

    validateNetwork(req) {
      store();
      parseOverlayOptions(req);
      if (req.enableIpv6) {
        throw new InvalidArgumentError(`network ${req.name}: IPv6 on overlay is not supported`);
      }
    },

    async start() {
      if (!global) return;
      await global.follow("peers", onPeer);
    },

    createNetwork(req) {
      learn(req);
      return Promise.resolve();
    },

    restoreNetwork(req) {
      // The namespace (if any) outlived the daemon; its endpoints are re-published by
      // restoreEndpoint, and the peers are programmed again once the watch runs.
      learn(req);
      return Promise.resolve();
    },

    deleteNetwork(networkId) {
      return serial(async () => {
        const n = nets.get(networkId);
        nets.delete(networkId);
        remote.delete(networkId);
        if (n) await dropNamespace(n);
      });
    },

    createEndpoint(networkId, _endpointId, iface) {
      get(networkId);
      return Promise.resolve({ mac: iface.mac ?? macFor(iface.address), driverData: {} });
    },

    deleteEndpoint() {
      // the veth went with leave (or with the sandbox's namespace)
      return Promise.resolve();
    },

    join(req: JoinRequest) {
      return serial(async () => {
        const n = get(req.networkId);
        const undo = new UndoStack(log);
        try {
          await ensureNamespace(n, undo);
          await kernel.apply(
            joinPlan(n, {
              endpointId: req.endpointId,
              sandboxNetns: req.sandbox.netnsName,
              ifname: req.ifname,
              mac: req.iface.mac,
            }),
            undo,
          );
          await publish(req);
          n.joined.add(req.endpointId);
          await program(n);
          undo.commit();
        } catch (err) {
          n.joined.delete(req.endpointId);
          await undo.unwind();
          if (n.joined.size === 0) await dropNamespace(n).catch(() => {});
          throw err;
        }
        // no gateway: no default route on the overlay (§3.2)
        return {};
      });
    },

    leave(req: JoinRequest) {
      return serial(async () => {
        const n = nets.get(req.networkId);
        await global?.withdraw("peers", req.networkId, req.endpointId);
        if (!n) return;
        n.joined.delete(req.endpointId);
        if (n.joined.size === 0) await dropNamespace(n);
        else await kernel.ipForce(n.netns, [`link del ${vethName(req.endpointId)}`]);
      });
    },

    /** After a restart: the endpoint is still in the kernel; publish it under the new lease. */
    restoreEndpoint(req: JoinRequest) {
      return serial(async () => {
        const n = get(req.networkId);
        if (!await kernel.netnsExists(n.netns)) return; // reconcile rebuilds it
        n.joined.add(req.endpointId);
        await publish(req);
      });
    },

    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };

  function publish(req: JoinRequest): Promise<void> {
    if (!req.iface.address) {
      throw new InvalidArgumentError(`an overlay endpoint needs an IPv4 address`);
    }
    return store().publish("peers", {
      networkId: req.networkId,
      endpointId: req.endpointId,
      ip: req.iface.address,
      mac: req.iface.mac ?? macFor(req.iface.address),
      vtep: store().host,
    });
  }
}
