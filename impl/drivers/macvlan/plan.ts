/**
 * Pure plans of the macvlan driver: what it asks of the kernel for each verb. Unit tests
 * compare them with golden files in testdata/.
 * @module
 */
import { type Op, type Plan, plan } from "../../kernel/plan.ts";
import type { MacvlanConfig } from "./options.ts";

/** What the driver knows of one network. */
export interface MacvlanNetwork {
  id: string;
  name: string;
  config: MacvlanConfig;
  /**
   * No default route in its sandboxes: the user asked for `--internal`, or the network has
   * no parent (forced internal, as libnetwork's macvlan does).
   */
  internal: boolean;
  /** IPv4 subnets and gateways (`192.0.2.0/24`, `192.0.2.1/24`). */
  ipv4: { pool: string; gateway?: string }[];
  ipv6: { pool: string; gateway?: string }[];
}

/**
 * Plan for the private parent of a network without `parent`: a veth pair, both ends up and
 * without addresses, in the host namespace. Its endpoints reach each other through it and
 * nothing else (the pair leads nowhere). Deleting one end deletes the pair: that is the
 * whole undo. Empty for a network with a user parent (nothing to make).
 */
export function createNetworkPlan(net: MacvlanNetwork, hostNetns?: string): Plan {
  const { parent, peer, userParent } = net.config;
  if (userParent || !peer) return plan();
  return plan({
    kind: "ip",
    netns: hostNetns,
    lines: [
      `link add name ${parent} type veth peer name ${peer}`,
      `link set dev ${parent} up`,
      `link set dev ${peer} up`,
    ],
    undo: [`link del dev ${parent}`],
  });
}

/** Lines that remove what a network's creation made: the private parent, or nothing. */
export function deleteNetworkLines(net: MacvlanNetwork): string[] {
  return net.config.userParent ? [] : [`link del dev ${net.config.parent}`];
}

/** What a join needs to know of the endpoint. */
export interface JoinSpec {
  /** The sandbox's namespace (name under /run/netns). */
  sandboxNetns: string;
  /** Name of the interface inside the sandbox (eth0, ...). */
  ifname: string;
  mac?: string;
}

/**
 * Plan for a join. The macvlan link is created on the parent (in the host namespace) with
 * its sandbox end directly inside the sandbox, under its final name and with its MAC
 * (`netns SB name eth0`): creating it in the host and moving it would cost the kernel a
 * synchronize_net, as the bridge driver measured. One line, so it is done or not done: no
 * undo is needed, and a failed join leaves nothing. The controller then addresses the
 * interface, brings it up and routes it, as libnetwork's sandbox (osl) configures the
 * interface a driver's Join hands it.
 *
 * Passthru mode ignores the address given at creation (the link takes the parent's MAC), so
 * a second step sets it inside the sandbox, as Docker's sandbox does; the kernel gives the
 * parent its own MAC back when the link goes. That step's undo deletes the link, and the
 * driver runs it even when the step failed on its first line (the link exists by then).
 */
export function joinPlan(net: MacvlanNetwork, spec: JoinSpec, hostNetns?: string): Plan {
  const { parent, mode } = net.config;
  const passthru = mode === "passthru";
  const ops: Op[] = [{
    kind: "ip",
    netns: hostNetns,
    lines: [
      `link add link ${parent} name ${spec.ifname} netns ${spec.sandboxNetns}${
        spec.mac && !passthru ? ` address ${spec.mac}` : ""
      } type macvlan mode ${mode}`,
    ],
  }];
  if (passthru && spec.mac) {
    ops.push({
      kind: "ip",
      netns: spec.sandboxNetns,
      lines: [`link set dev ${spec.ifname} address ${spec.mac}`],
      undo: [`link del dev ${spec.ifname}`],
    });
  }
  return plan(...ops);
}

/** The line that takes an endpoint out of its sandbox (run with `-force`: idempotent). */
export function leaveLines(spec: Pick<JoinSpec, "ifname">): string[] {
  return [`link del dev ${spec.ifname}`];
}

/** The MAC of an endpoint (Docker 20.10: 02:42 + the IPv4 address). */
export { macFor } from "../../model/names.ts";
