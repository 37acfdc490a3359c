/**
 * What the rooms of the controller share: one {@linkcode ControllerContext} per controller
 * (the kernel, store, IPAM, drivers, resolver and services of one host), and the lookups
 * every room makes (a network, sandbox or driver by name). The facade in ./controller.ts
 * builds the context; the rooms (./networks.ts, ./sandboxes.ts, ./endpoints.ts, ...) take it
 * as their first argument, as ./services.ts takes its `ServiceContext`.
 * @module
 */
import type { IpamDriver, NetworkDriver } from "../driver_api/mod.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { Logger } from "../kernel/runner.ts";
import { InvalidArgumentError, NotFoundError } from "../model/errors.ts";
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import type { GlobalStore } from "../store/global.ts";
import type { RecordOf, Store } from "../store/store.ts";
import type { ReconcileItem } from "./reconcile.ts";
import type { SandboxResolver } from "./resolver_sync.ts";
import type { Services } from "./services.ts";

/** The state of one controller, shared by its rooms. */
export interface ControllerContext {
  readonly kernel: Kernel;
  /** Networks, sandboxes, endpoints and services: the store is the one copy of the state. */
  readonly store: Store;
  readonly ipam: IpamDriver;
  /** The global store (etcd) for global-scope networks; absent = local networks only. */
  readonly global?: GlobalStore;
  /** The registered drivers by type. */
  readonly drivers: ReadonlyMap<string, NetworkDriver>;
  /** The host namespace name; undefined = the root namespace. */
  readonly hostNetns?: string;
  /** Start of every name the controller creates in shared places. */
  readonly prefix: string;
  /**
   * The store's instance id: in the names of this controller's sandbox namespaces
   * (`<prefix>-<instance>-<12 hex>`), so reconcile never takes another daemon's for its own.
   */
  readonly instance: string;
  /** DNS servers for sandboxes' resolv.conf when there is no embedded resolver. */
  readonly dns: string[];
  readonly log: Logger;
  /** The embedded resolver, when there is one (./resolver_sync.ts tells it). */
  readonly resolver?: SandboxResolver;
  /** Services and their load balancing (./services.ts). */
  readonly services: Services;
  /** What restore() could not do, reported (and emptied) by the next reconcile(). */
  readonly restoreFailures: ReconcileItem[];
}

/** Names of the registered drivers, sorted. */
export function driverNames(ctx: ControllerContext): string[] {
  return [...ctx.drivers.keys()].sort();
}

/** The driver of a type; an unknown one is refused, naming the known ones. */
export function driverOf(ctx: ControllerContext, name: string): NetworkDriver {
  const d = ctx.drivers.get(name);
  if (!d) {
    throw new InvalidArgumentError(
      `unknown driver "${name}" (known: ${driverNames(ctx).join(", ")})`,
    );
  }
  return d;
}

/**
 * Finds a record by exact name, then exact id, then unique id prefix (hex digits only); an
 * ambiguous prefix is refused, none found is a not-found error. Indexed lookups: no scan of
 * every record (connect finds its sandbox this way).
 */
function findByRef<K extends "network" | "sandbox">(
  ctx: ControllerContext,
  kind: K,
  ref: string,
  what: string,
  whats: string,
): RecordOf<K> {
  const hit = ctx.store.byName(kind, ref)[0] ?? ctx.store.get(kind, ref);
  if (hit) return hit;
  const byPrefix = /^[0-9a-f]{1,64}$/.test(ref) ? ctx.store.byIdPrefix(kind, ref, 2) : [];
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) {
    throw new InvalidArgumentError(`${what} id prefix "${ref}" matches several ${whats}`);
  }
  throw new NotFoundError(`${what} "${ref}" not found`);
}

/** Finds a network by name, full id or unique id prefix. */
export function findNetwork(ctx: ControllerContext, ref: string): NetworkRecord {
  return findByRef(ctx, "network", ref, "network", "networks");
}

/** Finds a sandbox by name, full id or unique id prefix. */
export function findSandbox(ctx: ControllerContext, ref: string): SandboxRecord {
  return findByRef(ctx, "sandbox", ref, "sandbox", "sandboxes");
}

/** A sandbox's endpoint records, in join order. */
export function endpointsOf(ctx: ControllerContext, sb: SandboxRecord): EndpointRecord[] {
  return sb.endpoints.map((id) => ctx.store.get("endpoint", id))
    .filter((e): e is EndpointRecord => !!e);
}

/** Every network by id. */
export function networksById(ctx: ControllerContext): Map<string, NetworkRecord> {
  return new Map(ctx.store.list("network").map((n) => [n.id, n]));
}
