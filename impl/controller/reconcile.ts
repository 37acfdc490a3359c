/**
 * Reconcile after a (re)start: makes the store and the kernel agree, in phases (records
 * that point at nothing, sandboxes whose namespace is gone, namespaces nobody owns, the
 * drivers' side, each sandbox's side, the services), and reports what it did. Also the
 * report's types and the optional hook a driver offers so the controller can reconcile the
 * driver's side of the kernel. The repairs themselves are in ./repair.ts.
 * @module
 */
import type { NetworkDriver } from "../driver_api/mod.ts";
import type { LinkInfo, RouteInfo } from "../kernel/kernel.ts";
import type { NetworkRecord, PortBinding, SandboxRecord } from "../model/objects.ts";
import { type ControllerContext, endpointsOf, networksById } from "./context.ts";
import {
  dropEndpoint,
  interfaceProblem,
  type Note,
  reconcileFiles,
  recreateEndpoint,
} from "./repair.ts";
import { disconnectEndpoint, joinRequest } from "./endpoints.ts";
import { settleEndpointIntents, type SettleSteps } from "./journal.ts";
import { gatewayEndpoint, routeLines } from "./sandbox_config.ts";
import { removeSandbox } from "./sandboxes.ts";

/** One thing reconcile changed, with why. */
export interface ReconcileItem {
  /** What it is: a network, sandbox, endpoint, namespace, link, file, driver object. */
  kind: "network" | "sandbox" | "endpoint" | "netns" | "link" | "file" | "driver";
  /** Its name: a network or sandbox name, `sandbox/network` for an endpoint, a path. */
  name: string;
  /** Why reconcile acted, e.g. `namespace /run/netns/x is gone`. */
  reason: string;
}

/**
 * What {@linkcode Controller.reconcile} did to make the store and the kernel agree. Each
 * item is also logged on one line.
 */
export interface ReconcileReport {
  /** Kernel objects re-created from the store (bridges, endpoints, routes, files). */
  recreated: ReconcileItem[];
  /** Records dropped because what they describe is gone for good (a sandbox's namespace). */
  dropped: ReconcileItem[];
  /** Kernel objects carrying our names that no record owns, removed. */
  removed: ReconcileItem[];
  /** What reconcile could not repair (kept as stored; the next reconcile tries again). */
  failed: ReconcileItem[];
}

/** A stored endpoint, as the controller hands it to a driver's reconcile hook. */
export interface StoredEndpointRef {
  networkId: string;
  endpointId: string;
  driverData: Record<string, string>;
  /** IPv4 address with prefix length. */
  ipv4?: string;
  /** Published ports, as bound: the driver installs them again. */
  published?: PortBinding[];
}

/**
 * The optional reconcile hook of a driver (the bridge driver has it). The controller calls
 * it once per reconcile, after `restoreNetwork` ran for every network, with every stored
 * endpoint of the driver's networks. The driver makes its networks' kernel objects whole,
 * reports endpoints whose driver side is broken (the controller re-creates them) and removes
 * its kernel objects that no stored endpoint names.
 *
 * It is not part of `driver_api` yet; drivers implement it structurally.
 */
export interface DriverReconcileHook {
  reconcile(endpoints: StoredEndpointRef[]): Promise<{
    repaired: { networkId?: string; what: string }[];
    broken: { endpointId: string; reason: string }[];
    removed: { kind: "link" | "driver"; name: string; reason: string }[];
  }>;
}

/** The driver's reconcile hook, when it has one. */
export function reconcileHookOf(
  driver: NetworkDriver,
): DriverReconcileHook | undefined {
  const hook = (driver as Partial<DriverReconcileHook>).reconcile;
  return typeof hook === "function" ? { reconcile: hook.bind(driver) } : undefined;
}

/** The empty report. */
export function emptyReport(): ReconcileReport {
  return { recreated: [], dropped: [], removed: [], failed: [] };
}

/** Escapes a string for use inside a RegExp. */
export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The names one controller gives its sandbox namespaces: `<prefix>-<instance>-<12 hex>`
 * exactly, so a host namespace `<prefix>-host`, or a sandbox of another daemon (another
 * instance id, or an older `<prefix>-<12 hex>` name) never matches.
 */
export function sandboxNetnsPattern(prefix: string, instance: string): RegExp {
  return new RegExp(`^${escapeRegExp(prefix)}-${escapeRegExp(instance)}-[0-9a-f]{12}$`);
}

/** One reconcile run: the context, the networks as they were at its start, its report. */
interface Run {
  ctx: ControllerContext;
  nets: Map<string, NetworkRecord>;
  /** A network's name (or the start of its id when it is gone). */
  netName(id: string): string;
  note: Note;
  /** Runs one step; a failure is reported, never thrown, so a start always completes. */
  attempt(kind: ReconcileItem["kind"], name: string, fn: () => Promise<void>): Promise<void>;
}

/**
 * The work of `Controller.reconcile` (whose doc lists what is repaired), phase by phase in
 * this order: what restore() could not do, records that point at nothing, sandboxes whose
 * namespace is gone, the operations a crash cut short (./journal.ts), namespaces and
 * /etc/netns directories nobody owns, the drivers' side, each sandbox's side, the services.
 * A failed step is reported, never thrown.
 */
export async function reconcile(ctx: ControllerContext): Promise<ReconcileReport> {
  const report = emptyReport();
  const note: Note = (list, item) => {
    report[list].push(item);
    ctx.log(`reconcile: ${list} ${item.kind} ${item.name}: ${item.reason}`);
  };
  const nets = networksById(ctx);
  const run: Run = {
    ctx,
    nets,
    netName: (id) => nets.get(id)?.name ?? id.slice(0, 12),
    note,
    attempt: async (kind, name, fn) => {
      try {
        await fn();
      } catch (err) {
        note("failed", { kind, name, reason: err instanceof Error ? err.message : String(err) });
      }
    },
  };
  for (const item of ctx.restoreFailures.splice(0)) note("failed", item);
  await dropDanglingRecords(run);
  await dropSandboxesWithoutNetns(run);
  for (const { list, item } of await settleEndpointIntents(ctx, settleSteps(run))) {
    note(list, item);
  }
  await removeUnownedNetns(run);
  const broken = await reconcileDrivers(run);
  for (const sb of ctx.store.list("sandbox")) {
    await run.attempt("sandbox", sb.name, () => reconcileSandbox(run, sb, broken));
  }
  await run.attempt("driver", "services", () => ctx.services.reconcile());
  return report;
}

/**
 * How reconcile settles the journal's intents: a cut-short connect's kernel objects go
 * (Leave, when its sandbox is there, then Delete: the host-side veth by its journaled name,
 * even when it never reached its bridge); a disconnect or sandbox removal is run again.
 */
function settleSteps({ ctx, nets }: Run): SettleSteps {
  return {
    async undoConnect({ endpoint: ep }) {
      if (ctx.store.get("endpoint", ep.id)) return;
      const net = nets.get(ep.networkId);
      const driver = net && ctx.drivers.get(net.driver);
      if (!net || !driver) return;
      const sb = ep.sandboxId ? ctx.store.get("sandbox", ep.sandboxId) : undefined;
      if (sb && await ctx.kernel.netnsExists(sb.netnsName)) {
        await driver.leave(joinRequest(sb, ep, net));
      }
      await driver.deleteEndpoint(net.id, ep.id, ep.driverData);
    },
    async finishDisconnect(endpointId) {
      const ep = ctx.store.get("endpoint", endpointId);
      const sb = ep?.sandboxId ? ctx.store.get("sandbox", ep.sandboxId) : undefined;
      if (ep && sb) await disconnectEndpoint(ctx, sb, ep, true);
      else if (ep) await dropEndpoint(ctx, ep, nets, false);
    },
    async finishSandboxRemoval(sandboxId) {
      if (ctx.store.get("sandbox", sandboxId)) await removeSandbox(ctx, sandboxId);
    },
  };
}

/** Records that point at records that are gone (a crash between two writes). */
async function dropDanglingRecords({ ctx, nets, netName, note }: Run): Promise<void> {
  const sandboxIds = new Set(ctx.store.list("sandbox").map((s) => s.id));
  for (const ep of ctx.store.list("endpoint")) {
    if (ep.sandboxId && sandboxIds.has(ep.sandboxId) && nets.has(ep.networkId)) continue;
    await dropEndpoint(ctx, ep, nets, false);
    note("dropped", {
      kind: "endpoint",
      name: `${ep.name}/${netName(ep.networkId)}`,
      reason: nets.has(ep.networkId) ? "its sandbox record is gone" : "its network is gone",
    });
  }
  for (const sb of ctx.store.list("sandbox")) {
    const live = sb.endpoints.filter((id) => ctx.store.get("endpoint", id));
    if (live.length !== sb.endpoints.length) {
      ctx.store.transaction((tx) => tx.put("sandbox", { ...sb, endpoints: live }));
    }
  }
}

/**
 * Sandboxes whose namespace is gone: nothing to re-create them from (the processes that
 * lived in them are gone too), so the records go, as libnetwork's sandboxCleanup drops
 * sandboxes of containers that no longer exist.
 */
async function dropSandboxesWithoutNetns({ ctx, nets, netName, note, attempt }: Run) {
  const kernel = ctx.kernel;
  for (const sb of ctx.store.list("sandbox")) {
    if (await kernel.netnsExists(sb.netnsName)) continue;
    await attempt("sandbox", sb.name, async () => {
      const reason = `namespace ${sb.netnsPath} is gone`;
      for (const ep of endpointsOf(ctx, sb)) {
        await dropEndpoint(ctx, ep, nets, false);
        note("dropped", { kind: "endpoint", name: `${sb.name}/${netName(ep.networkId)}`, reason });
      }
      await kernel.fs.remove(kernel.etcNetnsPath(sb.netnsName));
      ctx.store.transaction((tx) => tx.delete("sandbox", sb.id));
      note("dropped", { kind: "sandbox", name: sb.name, reason });
    });
  }
}

/**
 * Namespaces and /etc/netns directories named like ours that no sandbox owns (a crash
 * between creating the namespace and storing the sandbox).
 */
async function removeUnownedNetns({ ctx, note, attempt }: Run): Promise<void> {
  const kernel = ctx.kernel;
  const pattern = sandboxNetnsPattern(ctx.prefix, ctx.instance);
  const known = new Set(ctx.store.list("sandbox").map((s) => s.netnsName));
  for (const name of await kernel.netnsList()) {
    if (!pattern.test(name) || known.has(name) || name === ctx.hostNetns) continue;
    await attempt("netns", name, async () => {
      await kernel.deleteNetns(name);
      await kernel.fs.remove(kernel.etcNetnsPath(name));
      note("removed", { kind: "netns", name, reason: "no sandbox record names it" });
    });
  }
  for (const name of await kernel.etcNetnsList()) {
    if (!pattern.test(name) || known.has(name) || name === ctx.hostNetns) continue;
    await attempt("file", kernel.etcNetnsPath(name), async () => {
      await kernel.fs.remove(kernel.etcNetnsPath(name));
      note("removed", {
        kind: "file",
        name: kernel.etcNetnsPath(name),
        reason: "no sandbox record names it",
      });
    });
  }
}

/**
 * The drivers' side: networks whole, broken endpoints found, orphans removed. Returns the
 * broken endpoints (id → why) for the sandboxes' side to re-create.
 */
async function reconcileDrivers(
  { ctx, nets, netName, note, attempt }: Run,
): Promise<Map<string, string>> {
  const broken = new Map<string, string>();
  const endpoints = ctx.store.list("endpoint");
  for (const driver of ctx.drivers.values()) {
    const hook = reconcileHookOf(driver);
    if (!hook) continue;
    const mine = endpoints.filter((e) => nets.get(e.networkId)?.driver === driver.type);
    await attempt("driver", driver.type, async () => {
      const result = await hook.reconcile(
        mine.map((e) => ({
          networkId: e.networkId,
          endpointId: e.id,
          driverData: e.driverData,
          ipv4: e.ipv4,
          published: e.published,
        })),
      );
      for (const { networkId, what } of result.repaired) {
        note(
          "recreated",
          networkId
            ? { kind: "network", name: netName(networkId), reason: what }
            : { kind: "driver", name: driver.type, reason: what },
        );
      }
      for (const b of result.broken) broken.set(b.endpointId, b.reason);
      for (const item of result.removed) note("removed", item);
    });
  }
  return broken;
}

/**
 * One sandbox's side: each endpoint's interface, addresses and MAC (a broken one is
 * re-created); default routes; loopback; the files under /etc/netns.
 */
async function reconcileSandbox(
  { ctx, nets, note }: Run,
  sb: SandboxRecord,
  broken: Map<string, string>,
): Promise<void> {
  const [links, routes] = await ctx.kernel.ipJsonBatch(sb.netnsName, [
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
  for (const ep of endpointsOf(ctx, sb)) {
    if (!ep.ifname) continue;
    const net = nets.get(ep.networkId);
    const driver = net && ctx.drivers.get(net.driver);
    if (!net || !driver) continue;
    const reason = interfaceProblem(ep, links) ?? broken.get(ep.id);
    if (!reason) continue;
    const name = `${sb.name}/${net.name}`;
    try {
      await recreateEndpoint(ctx, sb, ep, net, driver);
      touched = true;
      note("recreated", {
        kind: "endpoint",
        name,
        reason: `${reason}: ${ep.ifname} re-created with ${ep.ipv4 ?? ep.ipv6 ?? "no address"}`,
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
  const now = gatewayEndpoint(endpointsOf(ctx, sb), nets);
  const route = routes.find((r) => r.dst === "default");
  const routeOk = !now?.gateway || unrepaired.has(now.id) ||
    (route?.gateway === now.gateway && route?.dev === now.ifname);
  if ((touched && !(now && unrepaired.has(now.id))) || !routeOk) {
    lines.push(...routeLines(now));
    if (!touched) {
      note("recreated", {
        kind: "sandbox",
        name: sb.name,
        reason: `default route via ${now?.gateway} dev ${now?.ifname} was missing: re-added`,
      });
    }
  }
  if (lines.length > 0) await ctx.kernel.ip(sb.netnsName, lines);
  await reconcileFiles(ctx, sb, note);
}
