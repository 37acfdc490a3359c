/**
 * The overlay driver's kernel plans (research/libnetwork.md §3.2), built without running
 * anything so unit tests compare them with golden files:
 *
 * - a per-network namespace holding a bridge `br0` (with the gateway address, as
 *   libnetwork's) and the VXLAN device `vxlan0` on it. The VXLAN device is created in the
 *   host namespace, where the underlay is, and then moved: its UDP socket stays bound where
 *   it was made, and one VNI can exist once per namespace, so two networks never clash;
 * - per endpoint, a veth pair from `br0` straight into the sandbox under its interface name;
 * - per remote peer, a static neighbour (IP -> MAC) on `vxlan0`, answered by the device's
 *   ARP proxy, and a forwarding entry (MAC -> the peer's VTEP): libnetwork's peerdb.
 * @module
 */
import { type Plan, plan } from "../../kernel/plan.ts";

/** VXLAN's UDP port (IANA; libnetwork's default data-path port). */
export const VXLAN_PORT = 4789;
/** The overlay MTU: 1500 less VXLAN's 50 bytes of headers (libnetwork: 1450). */
export const OVERLAY_MTU = 1450;

/** What the plans need of a network. */
export interface OverlayNetwork {
  id: string;
  vni: number;
  mtu: number;
  /** The per-network namespace's name. */
  netns: string;
  /** Gateway with prefix length, on `br0`. */
  gateway?: string;
}

/** A remote endpoint to program (libnetwork's peer entry). */
export interface Peer {
  /** Address without prefix length. */
  ip: string;
  mac: string;
  /** The remote host's advertise address. */
  vtep: string;
}

/** The VXLAN device's name while it is in the host namespace (libnetwork's `vx-<vni>-<id5>`). */
export function vxlanName(net: Pick<OverlayNetwork, "id" | "vni">): string {
  return `vx-${net.vni.toString(16).padStart(6, "0")}-${net.id.slice(0, 5)}`;
}

/** The bridge-side end of an endpoint's veth pair, in the network's namespace. */
export function vethName(endpointId: string): string {
  return `ve${endpointId.slice(0, 12)}`;
}

/**
 * Makes the network's namespace, its bridge and VXLAN device. Undo: deleting the namespace
 * takes everything in it; the VXLAN device is deleted from the host if it never moved.
 */
export function networkPlan(net: OverlayNetwork, advertise: string, hostNetns?: string): Plan {
  const vx = vxlanName(net);
  return plan(
    { kind: "netns-add", name: net.netns },
    {
      kind: "ip",
      netns: net.netns,
      lines: [
        "link set lo up",
        `link add br0 mtu ${net.mtu} type bridge`,
        ...(net.gateway ? [`addr add ${net.gateway} dev br0`] : []),
        "link set br0 up",
      ],
    },
    {
      kind: "ip",
      netns: hostNetns,
      lines: [
        `link add ${vx} mtu ${net.mtu} type vxlan id ${net.vni} local ${advertise} dstport ${VXLAN_PORT} nolearning proxy`,
        `link set ${vx} netns ${net.netns}`,
      ],
      undo: [`link del ${vx}`],
    },
    {
      kind: "ip",
      netns: net.netns,
      lines: [`link set ${vx} name vxlan0`, "link set vxlan0 master br0 up"],
    },
  );
}

/** Joins an endpoint: a veth from `br0` into the sandbox, named and with its MAC. */
export function joinPlan(
  net: OverlayNetwork,
  spec: { endpointId: string; sandboxNetns: string; ifname: string; mac?: string },
): Plan {
  const veth = vethName(spec.endpointId);
  return plan({
    kind: "ip",
    netns: net.netns,
    lines: [
      `link add name ${veth} mtu ${net.mtu} master br0 up type veth peer netns ${spec.sandboxNetns} name ${spec.ifname} mtu ${net.mtu}${
        spec.mac ? ` address ${spec.mac}` : ""
      }`,
    ],
    undo: [`link del ${veth}`],
  });
}

/** Programs remote peers: static neighbours and forwarding entries on `vxlan0`. */
export function peersPlan(net: OverlayNetwork, peers: Peer[]): Plan {
  return plan(
    {
      kind: "ip",
      netns: net.netns,
      lines: peers.map((p) => `neigh replace ${p.ip} lladdr ${p.mac} dev vxlan0 nud permanent`),
    },
    {
      kind: "bridge",
      netns: net.netns,
      lines: peers.map((p) => `fdb replace ${p.mac} dev vxlan0 dst ${p.vtep} self permanent`),
    },
  );
}

/** Lines that remove remote peers (run with `-force`: one already gone is no error). */
export function unprogramLines(peers: Peer[]): { ip: string[]; bridge: string[] } {
  return {
    ip: peers.map((p) => `neigh del ${p.ip} dev vxlan0`),
    bridge: peers.map((p) => `fdb del ${p.mac} dev vxlan0 dst ${p.vtep} self`),
  };
}
