/**
 * The composition root: picks and wires the parts of one controller (kernel, store, the
 * built-in drivers, IPAM, the embedded DNS). The controller itself never imports a concrete
 * driver; this is the one place that does. The top-level mod.ts re-exports it.
 * @module
 */
import { type Controller, createController, retiredLinksJournal } from "./controller/mod.ts";
import type { SandboxResolver } from "./controller/mod.ts";
import { nftTableName } from "./controller/names.ts";
import type { IpamDriver, NetworkDriver } from "./driver_api/mod.ts";
import { createBridgeDriver } from "./drivers/bridge/mod.ts";
import { createHostDriver } from "./drivers/host/mod.ts";
import { createMacvlanDriver } from "./drivers/macvlan/mod.ts";
import { createNullDriver } from "./drivers/null/mod.ts";
import { createOverlayDriver } from "./drivers/overlay/mod.ts";
import { DnsService } from "./dns/mod.ts";
import { createDefaultIpam, createGlobalIpam, type PredefinedPool } from "./ipam/mod.ts";
import { type CommandRunner, Kernel, type Logger } from "./kernel/mod.ts";
import { GlobalStore, openStore, type Store, type StoreAddress } from "./store/mod.ts";

/** The built-in drivers, wired for one host. This is the one list of drivers. */
export function createDefaultDrivers(
  options: {
    kernel: Kernel;
    hostNetns?: string;
    prefix: string;
    /** The store's instance id (in the overlay's namespace names); absent in unit tests. */
    instance?: string;
    global?: GlobalStore;
    log?: Logger;
  },
): NetworkDriver[] {
  return [
    createNullDriver(),
    createHostDriver(),
    createBridgeDriver({
      kernel: options.kernel,
      hostNetns: options.hostNetns,
      table: nftTableName(options.prefix, "bridge"),
    }),
    createMacvlanDriver({ kernel: options.kernel, hostNetns: options.hostNetns }),
    createOverlayDriver({
      kernel: options.kernel,
      hostNetns: options.hostNetns,
      netnsPrefix: options.instance ? `${options.prefix}-${options.instance}` : options.prefix,
      global: options.global,
      log: options.log,
    }),
  ];
}

/** Options of {@linkcode openController}. */
export interface OpenControllerOptions {
  /** Host namespace name under /run/netns; absent = the root namespace. */
  hostNetns?: string;
  /** Start of every name created in shared places; default "cnm". */
  prefix?: string;
  /** State directory (holds state.db); ":memory:" keeps state in memory only. */
  stateDir: string;
  /**
   * Upstream DNS servers: forwarded to by the embedded resolver (from the host namespace),
   * or written to sandboxes' resolv.conf when the embedded resolver is off.
   */
  dns?: string[];
  /**
   * Run Docker's embedded resolver at 127.0.0.11 in every sandbox (the daemon does; the
   * library default is off, so a program embedding the controller opts in).
   */
  embeddedDns?: boolean;
  /** Wraps the embedded resolver (the test-only faults of testing/test_faults.ts use it). */
  wrapResolver?: (r: SandboxResolver) => SandboxResolver;
  /** Predefined local pools (`--default-pool`). */
  defaultPools?: PredefinedPool[];
  log?: Logger;
  /** Command runner (tests inject fault wrappers). */
  runner?: CommandRunner;
  /**
   * The global store (`--store`) for multi-host networks, with this host's advertise
   * address and the lease TTL in seconds; absent = local networks only.
   */
  globalStore?: { address: StoreAddress; advertise: string; ttl: number };
  /** Replaces the built-in drivers. */
  drivers?: (kernel: Kernel) => NetworkDriver[];
  ipam?: IpamDriver;
}

/** Opens the store, wires kernel, IPAM and drivers, and restores the controller's state. */
export async function openController(options: OpenControllerOptions): Promise<Controller> {
  const prefix = options.prefix ?? "cnm";
  const kernel = new Kernel({ runner: options.runner, log: options.log });
  let store: Store;
  if (options.stateDir === ":memory:") {
    store = openStore(":memory:");
  } else {
    await Deno.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    store = openStore(`${options.stateDir}/state.db`);
  }
  let global: GlobalStore | undefined;
  if (options.globalStore) {
    try {
      global = await GlobalStore.open(options.globalStore.address, {
        host: options.globalStore.advertise,
        ttl: options.globalStore.ttl,
        log: options.log,
      });
    } catch (err) {
      store.close();
      throw err;
    }
  }
  const drivers = options.drivers?.(kernel) ??
    createDefaultDrivers({
      kernel,
      hostNetns: options.hostNetns,
      prefix,
      instance: store.instanceId,
      global,
      log: options.log,
    });
  const resolver = options.embeddedDns
    ? new DnsService({
      upstreams: options.dns ?? [],
      hostNetnsPath: options.hostNetns ? kernel.netnsPath(options.hostNetns) : undefined,
      log: options.log,
    })
    : undefined;
  const localIpam = options.ipam ?? createDefaultIpam({ localPools: options.defaultPools });
  try {
    // deletions left to the background are journaled in the store; an earlier process's
    // unfinished ones are finished before anything looks at the kernel
    kernel.retired = retiredLinksJournal(store);
    await kernel.settleRetired();
    return await createController({
      kernel,
      store,
      ipam: global ? createGlobalIpam(localIpam, global) : localIpam,
      global,
      drivers,
      hostNetns: options.hostNetns,
      prefix,
      dns: options.dns,
      log: options.log,
      resolver: resolver && options.wrapResolver ? options.wrapResolver(resolver) : resolver,
      onClose: async () => {
        await kernel.settleRetired();
        await resolver?.close();
        await global?.close();
        store.close();
      },
    });
  } catch (err) {
    await resolver?.close();
    await global?.close();
    store.close();
    throw err;
  }
}
