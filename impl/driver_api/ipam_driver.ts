/**
 * The IPAM driver contract: libnetwork's `ipamapi.Ipam` (research/libnetwork.md §2.4, §2.5).
 * @module
 */

/** `RequestPool` arguments. */
export interface PoolRequest {
  /** Address space: "LocalDefault" or "GlobalDefault". */
  addressSpace: string;
  /** The subnet the user asked for (CIDR); absent = take one from the predefined pools. */
  pool?: string;
  /** Sub-range addresses are handed out from (`--ip-range`), inside `pool`. */
  subPool?: string;
  /** IPv6 pool wanted. */
  v6: boolean;
  /** Driver-specific options, e.g. `com.docker.network.ipam.serial`. */
  options?: Record<string, string>;
}

/** `RequestPool` answer. */
export interface PoolResponse {
  /** Opaque id: `<AS>/<subnet>` or `<AS>/<subnet>/<ip-range>`. */
  poolId: string;
  /** The pool, as CIDR. */
  pool: string;
  meta: Record<string, string>;
}

/** `RequestAddress` options. */
export interface AddressRequestOptions {
  /** The address is for the gateway (`RequestAddressType=com.docker.network.gateway`). */
  gateway?: boolean;
}

/** Capabilities of an IPAM driver. */
export interface IpamCapability {
  /** The controller must replay RequestPool/RequestAddress after a restart. */
  requiresRequestReplay: boolean;
}

/** An IPAM driver. */
export interface IpamDriver {
  readonly type: string;
  capabilities(): IpamCapability;
  /** The default local and global address spaces. */
  defaultAddressSpaces(): { local: string; global: string };
  requestPool(req: PoolRequest): Promise<PoolResponse>;
  releasePool(poolId: string): Promise<void>;
  /**
   * Allocates an address from the pool: `preferred` if given (an error if taken), else the
   * lowest free one. Returns it with the pool's prefix length (`10.1.0.2/24`).
   */
  requestAddress(
    poolId: string,
    preferred?: string,
    options?: AddressRequestOptions,
  ): Promise<string>;
  /** Frees an address (without prefix length); releasing a free address is a no-op. */
  releaseAddress(poolId: string, address: string): Promise<void>;
}
