/**
 * The network driver contract: libnetwork's `driverapi.Driver` verbs
 * (research/libnetwork.md §2.1) in TypeScript. Drivers are injected into the controller,
 * which never imports a concrete one.
 * @module
 */
import type { PortBinding } from "../model/objects.ts";

/** Data or connectivity scope of a driver (§1.3). */
export type Scope = "local" | "global";

/** What a driver declares about itself (`driverapi.Capability`). */
export interface DriverCapability {
  /** Where the driver's state lives: "local" (one host) or "global" (shared store). */
  dataScope: Scope;
  /** How far its networks reach: one host, or several. */
  connectivityScope: Scope;
}

/** One IPAM pool handed to `createNetwork` (`driverapi.IPAMData`). */
export interface IpamData {
  /** The pool, e.g. `10.1.0.0/24`. */
  pool: string;
  /** Gateway with prefix length, e.g. `10.1.0.1/24`; absent when none was allocated. */
  gateway?: string;
}

/** Everything `createNetwork` gets (the `options` map of §2.1, typed). */
export interface CreateNetworkRequest {
  networkId: string;
  /** The user's network name, for messages only. */
  name: string;
  /** The user's driver options (`com.docker.network.generic`). */
  options: Record<string, string>;
  internal: boolean;
  enableIpv6: boolean;
  ipv4: IpamData[];
  ipv6: IpamData[];
}

/** The endpoint's interface as the controller knows it before the driver runs. */
export interface EndpointInterface {
  /** IPv4 address with prefix length. */
  address?: string;
  /** IPv6 address with prefix length. */
  addressV6?: string;
  /** MAC address, if the user or the IPAM chose one. */
  mac?: string;
}

/** What `createEndpoint` gives back. */
export interface CreateEndpointResult {
  /** The MAC the interface will have. */
  mac?: string;
  /** Driver-private data the controller stores with the endpoint and hands back later. */
  driverData: Record<string, string>;
}

/** A sandbox, as a driver sees it: a network namespace. */
export interface SandboxRef {
  id: string;
  /** Name under /run/netns. */
  netnsName: string;
  /** Path of the namespace file (libnetwork's sandbox key). */
  netnsPath: string;
}

/** Everything `join` gets. */
export interface JoinRequest {
  networkId: string;
  endpointId: string;
  sandbox: SandboxRef;
  /** Interface name to give the endpoint inside the sandbox (eth0, eth1, ...). */
  ifname: string;
  iface: EndpointInterface;
  driverData: Record<string, string>;
  /**
   * Set on a Leave when the sandbox itself is being removed: its interfaces are down already
   * and its namespace is deleted next, which deletes the links inside it (and a veth's peer)
   * with it, so a driver need not delete them one by one in the caller's time (the bridge
   * driver leaves its host end to Kernel.deleteLinkLater). Each deletion waits out the
   * kernel's unregistering of the device (`link del` of a veth: 19-25 ms measured, against
   * about 5 ms for an `ip` call that changes nothing); the namespace's clean-up is one
   * asynchronous pass for all of them (a veth's host end was gone 9 ms after the namespace).
   */
  namespaceGoing?: boolean;
}

/** What `join` gives back (`driverapi.JoinInfo`). */
export interface JoinResult {
  /** IPv4 default gateway this endpoint offers, without prefix; absent = none (internal). */
  gateway?: string;
  /** IPv6 default gateway this endpoint offers. */
  gatewayV6?: string;
  /** Driver data to store after the join (replaces what was stored). */
  driverData?: Record<string, string>;
}

/**
 * The `options` key of {@linkcode ExternalConnectivityRequest} that carries the ports to
 * publish, a `PortBinding[]` (libnetwork's `netlabel.PortMap`).
 */
export const PORTMAP_OPTION = "com.docker.network.portmap";

/** Port publishing and similar, done for the sandbox's gateway endpoint (`ExtConner`). */
export interface ExternalConnectivityRequest {
  networkId: string;
  endpointId: string;
  sandbox: SandboxRef;
  iface: EndpointInterface;
  driverData: Record<string, string>;
  /** `PORTMAP_OPTION`: the ports to publish (`PortBinding[]`). */
  options: Record<string, unknown>;
}

/** What `programExternalConnectivity` gives back. */
export interface ExternalConnectivityResult {
  /** The ports as bound: host address and ephemeral host ports resolved. */
  published?: PortBinding[];
}

/** A network driver: bridge, null, host, macvlan, overlay, remote. */
export interface NetworkDriver {
  /** The driver's name, as given to `--driver`. */
  readonly type: string;
  /** Scopes of the driver. */
  capabilities(): DriverCapability;
  /**
   * True for drivers whose networks skip IPAM (host, null), which libnetwork calls
   * `hasSpecialDriver` (§1.2).
   */
  readonly skipIpam?: boolean;
  /** At most one network of this driver may exist (host, null; §1.2). */
  readonly singleInstance?: boolean;
  /** Networks of this driver cannot be removed (host, null; §1.2). */
  readonly undeletable?: boolean;
  /** A sandbox on a network of this driver can be on no other network (null, "none"). */
  readonly exclusive?: boolean;
  /**
   * Checks a create request without side effects; throws InvalidArgumentError (unknown
   * option, bad value) or ForbiddenError (conflict with another network).
   */
  validateNetwork?(req: CreateNetworkRequest): void;
  createNetwork(req: CreateNetworkRequest): Promise<void>;
  /** Removes the network's kernel objects; idempotent. */
  deleteNetwork(networkId: string): Promise<void>;
  createEndpoint(
    networkId: string,
    endpointId: string,
    iface: EndpointInterface,
  ): Promise<CreateEndpointResult>;
  /** Removes the endpoint's kernel objects; idempotent. */
  deleteEndpoint(
    networkId: string,
    endpointId: string,
    driverData: Record<string, string>,
  ): Promise<void>;
  join(req: JoinRequest): Promise<JoinResult>;
  /** Takes the endpoint out of the sandbox; idempotent. */
  leave(req: JoinRequest): Promise<void>;
  programExternalConnectivity(
    req: ExternalConnectivityRequest,
  ): Promise<ExternalConnectivityResult | void>;
  revokeExternalConnectivity(req: ExternalConnectivityRequest): Promise<void>;
  /**
   * Re-creates the kernel objects of a stored network after a restart if they are missing
   * (the controller's reconcile step); optional.
   */
  restoreNetwork?(req: CreateNetworkRequest): Promise<void>;
  /**
   * After a restart, for each endpoint still joined: the driver knows it again (the overlay
   * publishes it to the global store under its new lease); optional.
   */
  restoreEndpoint?(req: JoinRequest): Promise<void>;
  /**
   * Called once after restore: the driver starts following what it follows (the overlay:
   * the global store's peers); optional.
   */
  start?(): Promise<void>;
}
