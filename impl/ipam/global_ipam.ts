/**
 * The IPAM with a global address space in the global store: pools of the `GlobalDefault`
 * space (libnetwork's, research/libnetwork.md §2.5) have their addresses in etcd, unique
 * across hosts; every other pool goes to the local IPAM. A global pool itself is claimed by
 * the network's create transaction (impl/store/global.ts), so here it is only named.
 * @module
 */
import type {
  AddressRequestOptions,
  IpamCapability,
  IpamDriver,
  PoolRequest,
  PoolResponse,
} from "../driver_api/ipam_driver.ts";
import { InvalidArgumentError } from "../model/errors.ts";
import type { GlobalStore } from "../store/global.ts";
import { GLOBAL_ADDRESS_SPACE } from "./default_ipam.ts";

const isGlobal = (poolId: string) => poolId.startsWith(`${GLOBAL_ADDRESS_SPACE}/`);
const subnetOf = (poolId: string) => poolId.slice(GLOBAL_ADDRESS_SPACE.length + 1);

/** Wraps a local IPAM so `GlobalDefault` pools live in the global store. */
export function createGlobalIpam(local: IpamDriver, store: GlobalStore): IpamDriver {
  /** Sub-ranges (`--ip-range`) of global pools, as the pool requests named them. */
  const ranges = new Map<string, string | undefined>();
  return {
    type: local.type,
    capabilities: (): IpamCapability => local.capabilities(),
    defaultAddressSpaces: () => local.defaultAddressSpaces(),
    requestPool(req: PoolRequest): Promise<PoolResponse> {
      if (req.addressSpace !== GLOBAL_ADDRESS_SPACE) return local.requestPool(req);
      if (!req.pool) {
        throw new InvalidArgumentError(`a global pool is chosen by the global store`);
      }
      const poolId = `${GLOBAL_ADDRESS_SPACE}/${req.pool}`;
      ranges.set(poolId, req.subPool);
      return Promise.resolve({ poolId, pool: req.pool, meta: {} });
    },
    releasePool(poolId: string): Promise<void> {
      if (!isGlobal(poolId)) return local.releasePool(poolId);
      ranges.delete(poolId);
      return Promise.resolve();
    },
    requestAddress(
      poolId: string,
      preferred?: string,
      options?: AddressRequestOptions,
    ): Promise<string> {
      if (!isGlobal(poolId)) return local.requestAddress(poolId, preferred, options);
      const subnet = subnetOf(poolId);
      // the gateway was claimed with the network
      if (options?.gateway && preferred) {
        return Promise.resolve(`${preferred}/${subnet.split("/")[1]}`);
      }
      return store.requestAddress(subnet, preferred, ranges.get(poolId));
    },
    releaseAddress(poolId: string, address: string): Promise<void> {
      if (!isGlobal(poolId)) return local.releaseAddress(poolId, address);
      return store.releaseAddress(subnetOf(poolId), address);
    },
  };
}
