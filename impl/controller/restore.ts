/**
 * Restore after a (re)start: the in-memory state (IPAM allocations, the drivers' networks)
 * rebuilt from the store (libnetwork `reservePools`, research/libnetwork.md §1.5). What it
 * cannot do is kept in the context for the next reconcile (./reconcile.ts) to report.
 * @module
 */
import type { ReconcileItem } from "./reconcile.ts";
import { type ControllerContext, networksById } from "./context.ts";
import { forgetIntent, message } from "./journal.ts";
import { joinRequest } from "./endpoints.ts";
import { shareNames } from "./resolver_sync.ts";
import { networkRequest, releaseNetworkIpam } from "./networks.ts";

/**
 * Replays IPAM allocations, lets drivers restore their networks (which re-creates a missing
 * bridge), finishes deletes a crash interrupted and takes back the network creates a crash
 * cut short (./journal.ts).
 */
export async function restore(ctx: ControllerContext): Promise<void> {
  const failed = (kind: ReconcileItem["kind"], name: string, what: string, err: unknown) => {
    const reason = `${what} failed: ${message(err)}`;
    ctx.restoreFailures.push({ kind, name, reason });
    ctx.log(`restore: ${kind} ${name}: ${reason}`);
  };
  for (const net of ctx.store.list("network")) {
    const driver = ctx.drivers.get(net.driver);
    if (!driver) {
      ctx.log(`restore: network ${net.name} uses unknown driver ${net.driver}; kept as is`);
      continue;
    }
    for (const [family, cfgs] of [[4, net.ipv4], [6, net.ipv6]] as const) {
      for (const c of cfgs) {
        try {
          await ctx.ipam.requestPool({
            addressSpace: c.poolId.split("/")[0],
            pool: c.subnet,
            subPool: c.ipRange,
            v6: family === 6,
          });
          if (c.gateway) {
            await ctx.ipam.requestAddress(c.poolId, c.gateway, { gateway: true });
          }
        } catch (err) {
          failed("network", net.name, `replaying pool ${c.subnet}`, err);
        }
      }
    }
    const req = networkRequest(net);
    try {
      // The driver knows the network again (and re-creates its kernel objects if they
      // are missing); a delete a crash interrupted is then finished (§1.5).
      await driver.restoreNetwork?.(req);
      if (net.inDelete) {
        ctx.log(`restore: finishing the removal of network ${net.name}`);
        await driver.deleteNetwork(net.id);
        await releaseNetworkIpam(ctx, net);
        ctx.store.transaction((tx) => tx.delete("network", net.id));
      }
    } catch (err) {
      failed("network", net.name, net.inDelete ? "finishing its removal" : "restoring it", err);
    }
  }
  // after the stored networks are known again: the driver's rewrite of its rules then
  // keeps them (isolation holds throughout)
  await takeBackNetworkCreates(ctx, failed);
  const nets = networksById(ctx);
  const sandboxes = new Map(ctx.store.list("sandbox").map((s) => [s.id, s]));
  for (const ep of ctx.store.list("endpoint")) {
    const net = nets.get(ep.networkId);
    if (!net) continue;
    if (net.scope === "global") {
      // its address is held in the global store; the driver publishes the endpoint again
      const sb = ep.sandboxId ? sandboxes.get(ep.sandboxId) : undefined;
      const driver = ctx.drivers.get(net.driver);
      if (sb) {
        try {
          await driver?.restoreEndpoint?.(joinRequest(sb, ep, net));
          await shareNames(ctx, ep, sb, net);
        } catch (err) {
          failed("endpoint", `${ep.name}/${net.name}`, "publishing it again", err);
        }
      }
      continue;
    }
    try {
      if (ep.ipv4) await ctx.ipam.requestAddress(net.ipv4[0].poolId, ep.ipv4.split("/")[0]);
      if (ep.ipv6) await ctx.ipam.requestAddress(net.ipv6[0].poolId, ep.ipv6.split("/")[0]);
    } catch (err) {
      failed("endpoint", `${ep.name}/${net.name}`, "replaying its address", err);
    }
  }
  await ctx.services.restoreAddresses();
}

/**
 * Takes back each network create a crash cut short (its intent is left): the driver learns
 * the network and deletes it, removing whatever of its bridge and rules was made. Its pools
 * were never replayed, so nothing is held.
 */
async function takeBackNetworkCreates(
  ctx: ControllerContext,
  failed: (kind: ReconcileItem["kind"], name: string, what: string, err: unknown) => void,
): Promise<void> {
  for (const intent of ctx.store.list("intent")) {
    if (intent.op !== "network-create") continue;
    const net = intent.network;
    try {
      const driver = ctx.drivers.get(net.driver);
      if (driver && !ctx.store.get("network", net.id)) {
        await driver.restoreNetwork?.(networkRequest(net));
        await driver.deleteNetwork(net.id);
      }
      forgetIntent(ctx, intent.id);
      ctx.log(`restore: network ${net.name}: its create was cut short: taken back`);
    } catch (err) {
      failed("network", net.name, "taking back its cut-short create", err);
    }
  }
}
