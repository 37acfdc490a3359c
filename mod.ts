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
 *
 * This module only re-exports impl/: the composition root (`openController`,
 * `createDefaultDrivers`) is impl/open.ts.
 * @module
 */
export * from "./impl/model/mod.ts";
export * from "./impl/controller/mod.ts";
export type * from "./impl/driver_api/mod.ts";
export { createBridgeDriver } from "./impl/drivers/bridge/mod.ts";
export { createHostDriver } from "./impl/drivers/host/mod.ts";
export { createMacvlanDriver } from "./impl/drivers/macvlan/mod.ts";
export { createNullDriver } from "./impl/drivers/null/mod.ts";
export { createDefaultIpam } from "./impl/ipam/mod.ts";
export { DnsService } from "./impl/dns/mod.ts";
export { Kernel } from "./impl/kernel/mod.ts";
export { openStore } from "./impl/store/mod.ts";
export { nftTableName } from "./impl/controller/names.ts";
export { createDefaultDrivers, openController, type OpenControllerOptions } from "./impl/open.ts";
