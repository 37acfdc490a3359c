/**
 * The default gateway service (libnetwork's docker_gwbridge, research/libnetwork.md §3.5):
 * an overlay gives its endpoints no default route, so a sandbox whose only ways out are
 * such endpoints is also connected to a local bridge network, `docker_gwbridge` (inter-
 * container traffic off, masquerade on), which gives it egress and carries the ports it
 * publishes. The endpoint goes again once the sandbox no longer needs it (the overlay left,
 * or another network gives a gateway).
 * @module
 */
import type { UndoStack } from "../kernel/undo.ts";
import { ForbiddenError } from "../model/errors.ts";
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import { type ControllerContext, endpointsOf, findNetwork, networksById } from "./context.ts";
import { connect, type ConnectOptions, disconnectEndpoint } from "./endpoints.ts";
import { GWBRIDGE } from "./names.ts";
import { createNetwork } from "./networks.ts";

/** Its options (libnetwork `default_gateway_linux.go`): no inter-container traffic. */
const GWBRIDGE_OPTIONS = {
  "com.docker.network.bridge.enable_icc": "false",
  "com.docker.network.bridge.enable_ip_masquerade": "true",
};

/**
 * libnetwork's `needDefaultGW`: some endpoint is on a non-internal network whose driver
 * gives no gateway, and no other endpoint gives one.
 */
function needsGateway(eps: EndpointRecord[], nets: Map<string, NetworkRecord>): boolean {
  const real = eps.filter((e) => nets.get(e.networkId)?.name !== GWBRIDGE);
  if (real.some((e) => e.gateway || e.gatewayV6)) return false;
  return real.some((e) => {
    const n = nets.get(e.networkId);
    return !!n && n.scope === "global" && !n.internal;
  });
}

/**
 * Connects as `connect` does; for a global network, ports to publish go to the sandbox's
 * gateway endpoint, which is made or removed as the sandbox's endpoints need.
 */
export async function connectWithGateway(
  ctx: ControllerContext,
  networkRef: string,
  sandboxRef: string,
  opts: ConnectOptions,
  undo: UndoStack,
): Promise<EndpointRecord> {
  const net = findNetwork(ctx, networkRef);
  const viaGateway = net.scope === "global" && !net.internal && !!opts.publish?.length;
  const ep = await connect(
    ctx,
    networkRef,
    sandboxRef,
    viaGateway ? { ...opts, publish: undefined } : opts,
    undo,
  );
  await settleGateway(ctx, ep.sandboxId!, undo, viaGateway ? opts : undefined);
  return ep;
}

/**
 * Gives a sandbox its gateway endpoint when it needs one, and takes it away when not.
 * `publishing` carries the ports of an overlay connect to the gateway endpoint.
 */
export async function settleGateway(
  ctx: ControllerContext,
  sandboxId: string,
  undo: UndoStack,
  publishing?: ConnectOptions,
): Promise<void> {
  const sb = ctx.store.get("sandbox", sandboxId);
  if (!sb) return;
  const nets = networksById(ctx);
  const eps = endpointsOf(ctx, sb);
  const gw = eps.find((e) => nets.get(e.networkId)?.name === GWBRIDGE);
  const need = needsGateway(eps, nets);
  if (need && !gw) {
    const gwNet = await gatewayNetwork(ctx, undo);
    await connect(ctx, gwNet.id, sb.id, { publish: publishing?.publish }, undo);
  } else if (need && gw && publishing?.publish?.length) {
    throw new ForbiddenError(
      `sandbox ${sb.name} already publishes through ${GWBRIDGE}: publish ports with its first overlay connect`,
    );
  } else if (!need && gw) {
    const fresh = ctx.store.get("sandbox", sb.id) as SandboxRecord;
    await disconnectEndpoint(ctx, fresh, gw, true);
  }
}

/** The gateway network, made on first use (and left in place, as Docker leaves it). */
async function gatewayNetwork(ctx: ControllerContext, undo: UndoStack): Promise<NetworkRecord> {
  const found = ctx.store.byName("network", GWBRIDGE)[0];
  if (found) return found;
  return await createNetwork(
    ctx,
    { name: GWBRIDGE, driver: "bridge", options: { ...GWBRIDGE_OPTIONS } },
    undo,
  );
}
