/**
 * cnm: a reference implementation of Docker's Container Network Model.
 *
 * ```ts
 * import { openController } from "./mod.ts";
 * const ctl = await openController({ hostNetns: "myhost", prefix: "demo", stateDir: "/tmp/cnm" });
 * await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
 * await ctl.createSandbox({ name: "a" });
 * await ctl.connect("web", "a");
 * ```
 * @module
 */
import { type Controller, createController } from "./impl/controller/mod.ts";
import type { IpamDriver, NetworkDriver } from "./impl/driver_api/mod.ts";
import { createBridgeDriver } from "./impl/drivers/bridge/mod.ts";
import { createHostDriver } from "./impl/drivers/host/mod.ts";
import { createNullDriver } from "./impl/drivers/null/mod.ts";
import { createDefaultIpam, type PredefinedPool } from "./impl/ipam/mod.ts";
import { type CommandRunner, Kernel, type Logger } from "./impl/kernel/mod.ts";
import { openStore, type Store } from "./impl/store/mod.ts";

export * from "./impl/model/mod.ts";
export * from "./impl/controller/mod.ts";
export type * from "./impl/driver_api/mod.ts";
export { createBridgeDriver, createDefaultIpam, createHostDriver, createNullDriver };
export { Kernel, openStore };

/** Name of the nft table a component owns for a prefix (nft names: letters, digits, `_`). */
export function nftTableName(prefix: string, component: string): string {
  return `${prefix.replace(/[^a-zA-Z0-9_]/g, "_")}_${component}`;
}

/** The built-in drivers, wired for one host. This is the one list of drivers. */
export function createDefaultDrivers(
  options: { kernel: Kernel; hostNetns?: string; prefix: string },
): NetworkDriver[] {
  return [
    createNullDriver(),
    createHostDriver(),
    createBridgeDriver({
      kernel: options.kernel,
      hostNetns: options.hostNetns,
      table: nftTableName(options.prefix, "bridge"),
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
  /** DNS servers for sandboxes' resolv.conf. */
  dns?: string[];
  /** Predefined local pools (`--default-pool`). */
  defaultPools?: PredefinedPool[];
  log?: Logger;
  /** Command runner (tests inject fault wrappers). */
  runner?: CommandRunner;
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
    await Deno.mkdir(options.stateDir, { recursive: true });
    store = openStore(`${options.stateDir}/state.db`);
  }
  const drivers = options.drivers?.(kernel) ??
    createDefaultDrivers({ kernel, hostNetns: options.hostNetns, prefix });
  try {
    return await createController({
      kernel,
      store,
      ipam: options.ipam ?? createDefaultIpam({ localPools: options.defaultPools }),
      drivers,
      hostNetns: options.hostNetns,
      prefix,
      dns: options.dns,
      log: options.log,
      onClose: () => store.close(),
    });
  } catch (err) {
    store.close();
    throw err;
  }
}
