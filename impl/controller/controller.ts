/**
 * The CNM controller: orchestrates the model, the injected drivers and IPAM, the store and
 * the kernel for one host (a network namespace). Every operation runs under a lock and
 * rolls back every step it did when a later one fails (libnetwork's deferred rollbacks,
 * research/libnetwork.md §1.2). It never imports a concrete driver.
 *
 * This file is the facade: it builds the shared context (./context.ts) and runs each
 * operation of a room under the lock with an undo stack. The rooms:
 * - ./networks.ts: create, remove, inspect networks (IPAM pools, gateways);
 * - ./sandboxes.ts: create, remove, inspect sandboxes (namespaces, their files);
 * - ./endpoints.ts: connect and disconnect (CreateEndpoint, Join, ports, Leave, Delete);
 * - ./sandbox_config.ts: what the sandbox owns (addresses, default routes, hosts file);
 * - ./resolver_sync.ts: what the embedded DNS is told;
 * - ./restore.ts and ./reconcile.ts (with ./repair.ts): after a (re)start;
 * - ./services.ts: services and their load balancing;
 * - ./global_sync.ts: global networks, mirrored from the global store (etcd);
 * - ./gateway_bridge.ts: docker_gwbridge, egress and ports for overlay endpoints.
 * @module
 */
import type { IpamDriver, NetworkDriver } from "../driver_api/mod.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { type Logger, quietLogger } from "../kernel/runner.ts";
import { UndoStack } from "../kernel/undo.ts";
import { CnmError, withAction } from "../model/errors.ts";
import type {
  EndpointRecord,
  NetworkRecord,
  SandboxRecord,
  ServiceRecord,
} from "../model/objects.ts";
import type { GlobalStore } from "../store/global.ts";
import type { Store } from "../store/store.ts";
import { type ControllerContext, driverNames, findNetwork, findSandbox } from "./context.ts";
import { type ConnectOptions, disconnect } from "./endpoints.ts";
import { connectWithGateway, settleGateway } from "./gateway_bridge.ts";
import { syncGlobalNetworks } from "./global_sync.ts";
import { Mutex } from "./lock.ts";
import { nftTableName } from "./names.ts";
import {
  createNetwork,
  inspectNetwork,
  type NetworkCreateOptions,
  type NetworkView,
  removeNetwork,
} from "./networks.ts";
import { reconcile, type ReconcileReport } from "./reconcile.ts";
import {
  followGlobalNames,
  republishEndpoint,
  type SandboxResolver,
  syncResolver,
} from "./resolver_sync.ts";
import { restore } from "./restore.ts";
import {
  createSandbox,
  inspectSandbox,
  removeSandbox,
  type SandboxCreateOptions,
  type SandboxView,
} from "./sandboxes.ts";
import { type ServiceCreateOptions, Services, type ServiceView } from "./services.ts";

export type { ConnectOptions } from "./endpoints.ts";
export { nextIfname } from "./endpoints.ts";
export type { NetworkCreateOptions, NetworkView } from "./networks.ts";
export { EMBEDDED_RESOLV_CONF, type SandboxResolver } from "./resolver_sync.ts";
export type { SandboxCreateOptions, SandboxView } from "./sandboxes.ts";

/** Options of {@linkcode createController}. */
export interface ControllerOptions {
  kernel: Kernel;
  store: Store;
  ipam: IpamDriver;
  drivers: NetworkDriver[];
  /** The global store for global-scope (multi-host) networks; absent = local only. */
  global?: GlobalStore;
  /** The host namespace name; absent = the root namespace. */
  hostNetns?: string;
  /** Start of every name the controller creates in shared places (/run/netns, /etc/netns). */
  prefix: string;
  /** DNS servers written to sandboxes' resolv.conf; default: the host's, minus loopback. */
  dns?: string[];
  log?: Logger;
  /** Called once by `close()` (e.g. to close the store). */
  onClose?: () => void | Promise<void>;
  /**
   * The embedded resolver (impl/dns `DnsService`): when given, every sandbox's resolv.conf
   * points at 127.0.0.11 with `options ndots:0` (Docker's, for user-defined networks) and the
   * resolver follows sandboxes and endpoints.
   */
  resolver?: SandboxResolver;
}

/** The controller of one host. */
export class Controller {
  readonly #ctx: ControllerContext;
  readonly #lock = new Mutex();
  readonly #onClose?: () => void | Promise<void>;
  #closed = false;
  #lastReconcile?: ReconcileReport;

  constructor(options: ControllerOptions) {
    const { kernel, store, ipam, hostNetns, prefix, resolver } = options;
    const ctx: ControllerContext = {
      kernel,
      store,
      ipam,
      global: options.global,
      drivers: new Map(options.drivers.map((d) => [d.type, d])),
      hostNetns,
      prefix,
      instance: store.instanceId,
      dns: options.dns ?? [],
      log: options.log ?? quietLogger,
      resolver,
      restoreFailures: [],
      services: new Services({
        store,
        ipam,
        kernel,
        hostNetns,
        table: nftTableName(prefix, "lb"),
        findNetwork: (ref) => findNetwork(ctx, ref),
        republish: (ep) => republishEndpoint(ctx, ep),
        dnsUpsert: resolver ? (ep) => resolver.upsertEndpoint(ep) : undefined,
        dnsRemove: resolver ? (s, n) => resolver.removeEndpoint(s, n) : undefined,
      }),
    };
    this.#ctx = ctx;
    this.#onClose = options.onClose;
  }

  /** The host namespace this controller serves (undefined = root). */
  get hostNetns(): string | undefined {
    return this.#ctx.hostNetns;
  }

  /** What the last {@linkcode Controller.reconcile} did (undefined before the first). */
  get lastReconcile(): ReconcileReport | undefined {
    return this.#lastReconcile;
  }

  /** Names of the registered drivers. */
  get driverNames(): string[] {
    return driverNames(this.#ctx);
  }

  // ---------------------------------------------------------------- networks

  /** Every network, oldest first. */
  listNetworks(): NetworkRecord[] {
    return this.#ctx.store.list("network");
  }

  /** A network and its endpoints. */
  inspectNetwork(ref: string): NetworkView {
    return inspectNetwork(this.#ctx, ref);
  }

  /** Creates a network (libnetwork `NewNetwork`, §1.2). */
  createNetwork(opts: NetworkCreateOptions): Promise<NetworkRecord> {
    return this.#locked(`Cannot create network "${opts.name}"`, async (undo) => {
      await syncGlobalNetworks(this.#ctx);
      return await createNetwork(this.#ctx, opts, undo);
    });
  }

  /** Removes a network (libnetwork `Network.Delete`, §1.2). */
  removeNetwork(ref: string): Promise<void> {
    return this.#locked(`Cannot remove network "${ref}"`, async () => {
      await syncGlobalNetworks(this.#ctx);
      await removeNetwork(this.#ctx, ref);
    });
  }

  /**
   * Mirrors the global store's networks into this host's (./global_sync.ts); without a
   * global store, nothing. The daemon's API calls it before listing networks.
   */
  syncGlobal(): Promise<void> {
    return this.#lock.run(() => syncGlobalNetworks(this.#ctx));
  }

  // ---------------------------------------------------------------- sandboxes

  /** Every sandbox, oldest first. */
  listSandboxes(): SandboxRecord[] {
    return this.#ctx.store.list("sandbox");
  }

  /** A sandbox and its endpoints, in join order. */
  inspectSandbox(ref: string): SandboxView {
    return inspectSandbox(this.#ctx, ref);
  }

  /** Creates a sandbox: a namespace with loopback up, its hosts and resolv.conf. */
  createSandbox(opts: SandboxCreateOptions): Promise<SandboxRecord> {
    return this.#locked(
      `Cannot create sandbox "${opts.name}"`,
      (undo) => createSandbox(this.#ctx, opts, undo),
    );
  }

  /** Removes a sandbox: leaves every network, deletes its namespace and files (§1.2 step 7). */
  removeSandbox(ref: string): Promise<void> {
    return this.#locked(`Cannot remove sandbox "${ref}"`, () => removeSandbox(this.#ctx, ref));
  }

  // ---------------------------------------------------------------- endpoints

  /**
   * Connects a sandbox to a network: CreateEndpoint then Join (§1.2 steps 3-4), then the
   * default route and hosts file. Returns the endpoint.
   */
  connect(
    networkRef: string,
    sandboxRef: string,
    opts: ConnectOptions = {},
  ): Promise<EndpointRecord> {
    return this.#locked(
      `Cannot connect sandbox "${sandboxRef}" to network "${networkRef}"`,
      async (undo) => {
        await syncGlobalNetworks(this.#ctx);
        return await connectWithGateway(this.#ctx, networkRef, sandboxRef, opts, undo);
      },
    );
  }

  /** Disconnects a sandbox from a network: Leave then Delete (§1.2 steps 5-6). */
  disconnect(networkRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot disconnect sandbox "${sandboxRef}" from network "${networkRef}"`,
      async (undo) => {
        const sb = findSandbox(this.#ctx, sandboxRef);
        await disconnect(this.#ctx, networkRef, sandboxRef);
        await settleGateway(this.#ctx, sb.id, undo);
      },
    );
  }

  // ---------------------------------------------------------------- restart

  /**
   * Rebuilds in-memory state from the store after a (re)start: replays IPAM allocations
   * (libnetwork `reservePools`, §1.5), lets drivers restore their networks (which re-creates
   * a missing bridge) and finishes deletes a crash interrupted. What it cannot do is logged
   * and reported by the next {@linkcode Controller.reconcile}, which does the rest (sandboxes,
   * endpoints, orphans).
   */
  restore(): Promise<void> {
    return this.#lock.run(async () => {
      await restore(this.#ctx);
      if (this.#ctx.global) {
        await syncGlobalNetworks(this.#ctx).catch((err) =>
          this.#ctx.log(`restore: global networks not read: ${err}`)
        );
      }
      for (const d of this.#ctx.drivers.values()) await d.start?.();
      await followGlobalNames(this.#ctx);
    });
  }

  /**
   * Makes the store and the kernel agree after a (re)start, for this controller's host and
   * prefix (issue 3, "Restart after a clean stop or a kill -9"):
   *
   * - a sandbox whose namespace is gone is dropped with its endpoints (driver objects
   *   removed, addresses released);
   * - an operation a crash cut short (its intent is still in the journal) is taken back
   *   (connect, network create) or finished (disconnect, sandbox removal);
   * - a namespace named like ours (`<prefix>-<instance>-<12 hex>`, this store's instance
   *   id, nothing else) that no sandbox owns is removed, with its /etc/netns directory;
   * - drivers with a reconcile hook make their networks whole (a bridge, its addresses, the
   *   nft table) and remove their objects no endpoint names;
   * - an endpoint whose interface is missing or wrong in its sandbox, or whose driver side
   *   is broken, is re-created with the same id, address, MAC and interface name, and its
   *   sandbox's default routes and hosts file are programmed again;
   * - missing default routes and sandbox files are put back.
   *
   * Every item is logged on one line (`reconcile: ...`). Idempotent: a second call on a
   * consistent host reports nothing.
   */
  reconcile(): Promise<ReconcileReport> {
    return this.#lock.run(async () => {
      const report = await reconcile(this.#ctx);
      this.#lastReconcile = report;
      return report;
    });
  }

  /** Stops taking requests (kernel objects and records stay, as with Docker's live restore). */
  close(): Promise<void> {
    return this.#lock.run(async () => {
      if (!this.#closed) {
        this.#closed = true;
        await this.#onClose?.();
      }
    });
  }

  // ---------------------------------------------------------------- services (issue 8)

  /** Every service, oldest first. */
  listServices(): ServiceRecord[] {
    return this.#ctx.services.list();
  }

  /** A service with its backends' sandboxes and addresses. */
  inspectService(ref: string): ServiceView {
    return this.#ctx.services.view(ref);
  }

  /** Creates a service: a VIP from the network's IPAM (VIP mode), its nft rules, its name. */
  createService(opts: ServiceCreateOptions): Promise<ServiceRecord> {
    return this.#locked(
      `Cannot create service "${opts.name}"`,
      (undo) => this.#ctx.services.create(opts, undo),
    );
  }

  /** Removes a service: rules, name and VIP go. */
  removeService(ref: string): Promise<void> {
    return this.#locked(`Cannot remove service "${ref}"`, () => this.#ctx.services.remove(ref));
  }

  /** Adds a sandbox's endpoint on the service's network to its backends (at once). */
  addBackend(serviceRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot add sandbox "${sandboxRef}" to service "${serviceRef}"`,
      (undo) => this.#ctx.services.addBackend(serviceRef, sandboxRef, undo),
    );
  }

  /** Removes a sandbox from a service's backends: it gets no new connections. */
  removeBackend(serviceRef: string, sandboxRef: string): Promise<void> {
    return this.#locked(
      `Cannot remove sandbox "${sandboxRef}" from service "${serviceRef}"`,
      () => this.#ctx.services.removeBackend(serviceRef, sandboxRef),
    );
  }

  // ---------------------------------------------------------------- embedded DNS

  /**
   * Puts every sandbox and endpoint in the store into the resolver (after a start: the
   * resolver keeps nothing), in join order, which decides which network answers first.
   */
  syncResolver(): Promise<void> {
    return this.#lock.run(() => syncResolver(this.#ctx));
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs an operation under the lock with an undo stack; a failure unwinds it. */
  #locked<T>(action: string, fn: (undo: UndoStack) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      if (this.#closed) throw new CnmError("internal", `${action}: the controller is closed`);
      const undo = new UndoStack(this.#ctx.log);
      try {
        const result = await fn(undo);
        undo.commit();
        return result;
      } catch (err) {
        await undo.unwind();
        const wrapped = withAction(action, err);
        this.#ctx.log(`${wrapped.message}`);
        throw wrapped;
      }
    });
  }
}

/**
 * Creates a controller, restores its state from the store and reconciles the kernel with it
 * ({@linkcode Controller.restore}, then {@linkcode Controller.reconcile}; the report is in
 * {@linkcode Controller.lastReconcile}).
 */
export async function createController(options: ControllerOptions): Promise<Controller> {
  const c = new Controller(options);
  await c.restore();
  await c.reconcile();
  await c.syncResolver();
  return c;
}
