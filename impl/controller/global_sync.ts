/**
 * Global networks, kept in step with the global store: the store has the one copy (every
 * host's), the local store a mirror so `network ls` and the lookups by name work as for
 * local networks. Run under the controller's lock before the operations that name a
 * network, and by the daemon's API before listing.
 * @module
 */
import type { ControllerContext } from "./context.ts";
import { learnGlobalNetwork } from "./networks.ts";

/**
 * Mirrors the global store's networks: those made on other hosts are learnt; those removed
 * there are forgotten here (driver and mirror), unless a local endpoint is still on one,
 * which the removal's own check makes impossible and which is then kept and logged.
 */
export async function syncGlobalNetworks(ctx: ControllerContext): Promise<void> {
  if (!ctx.global) return;
  const there = new Map((await ctx.global.listNetworks()).map((n) => [n.id, n]));
  const here = ctx.store.list("network").filter((n) => n.scope === "global");
  const hereIds = new Set(here.map((n) => n.id));
  for (const [id, net] of there) {
    if (hereIds.has(id)) continue;
    const driver = ctx.drivers.get(net.driver);
    if (!driver) {
      ctx.log(`global network ${net.name} uses driver ${net.driver}, not on this host`);
      continue;
    }
    if (ctx.store.byName("network", net.name).length > 0) {
      ctx.log(`global network ${net.name}: a local network has that name; not mirrored`);
      continue;
    }
    await learnGlobalNetwork(ctx, driver, net);
    ctx.log(`network ${net.name} id=${id.slice(0, 12)} learnt from the global store`);
  }
  for (const net of here) {
    if (there.has(net.id)) continue;
    if (ctx.store.list("endpoint").some((e) => e.networkId === net.id)) {
      ctx.log(`global network ${net.name} is gone from the store but has local endpoints`);
      continue;
    }
    await ctx.drivers.get(net.driver)?.deleteNetwork(net.id);
    for (const c of net.ipv4) await ctx.ipam.releasePool(c.poolId).catch(() => {});
    ctx.store.transaction((tx) => tx.delete("network", net.id));
    ctx.log(`network ${net.name} id=${net.id.slice(0, 12)} removed by another host`);
  }
}
