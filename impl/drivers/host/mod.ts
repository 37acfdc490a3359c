/**
 * The host driver: the sandbox uses the host's namespace (research/libnetwork.md §3.4).
 * In cnm a sandbox always has its own namespace, so joining a host network is refused, as
 * Docker refuses `docker network connect host CONTAINER` ("container cannot be disconnected
 * from host network or connected to host network").
 * @module
 */
import type { NetworkDriver } from "../../driver_api/mod.ts";
import { ForbiddenError, InvalidArgumentError } from "../../model/errors.ts";

/** Creates the host driver. */
export function createHostDriver(): NetworkDriver {
  return {
    type: "host",
    skipIpam: true,
    singleInstance: true,
    undeletable: true,
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    validateNetwork(req) {
      const keys = Object.keys(req.options);
      if (keys.length > 0) {
        throw new InvalidArgumentError(`driver "host" takes no options, got "${keys[0]}"`);
      }
    },
    createNetwork: () => Promise.resolve(),
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve({ driverData: {} }),
    deleteEndpoint: () => Promise.resolve(),
    join: () =>
      Promise.reject(
        new ForbiddenError(
          "a sandbox cannot be connected to the host network: it has its own namespace",
        ),
      ),
    leave: () => Promise.resolve(),
    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };
}
