/**
 * What the controller's reconcile step reports, and the optional hook a driver offers so
 * the controller can reconcile the driver's side of the kernel after a restart.
 * @module
 */
import type { NetworkDriver } from "../driver_api/mod.ts";
import type { PortBinding } from "../model/objects.ts";

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
 * The names the controller gives sandbox namespaces: `<prefix>-<12 hex>` exactly, so a host
 * namespace `<prefix>-host` or `<prefix>-h1-out` never matches.
 */
export function sandboxNetnsPattern(prefix: string): RegExp {
  return new RegExp(`^${escapeRegExp(prefix)}-[0-9a-f]{12}$`);
}
