/**
 * The null driver: a sandbox on a "none" network has loopback only (research/libnetwork.md
 * §3.4). Single instance, undeletable, no IPAM, no kernel objects.
 * @module
 */
import type { NetworkDriver } from "../../driver_api/mod.ts";
import { InvalidArgumentError } from "../../model/errors.ts";

/** Creates the null driver. */
export function createNullDriver(): NetworkDriver {
  return {
    type: "null",
    skipIpam: true,
    singleInstance: true,
    undeletable: true,
    exclusive: true,
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    validateNetwork(req) {
      const keys = Object.keys(req.options);
      if (keys.length > 0) {
        throw new InvalidArgumentError(`driver "null" takes no options, got "${keys[0]}"`);
      }
    },
    createNetwork: () => Promise.resolve(),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve({ driverData: {} }),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve({}),
    leave: () => Promise.resolve(),
    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };
}
