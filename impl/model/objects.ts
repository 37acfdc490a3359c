/**
 * The CNM objects as stored records (research/libnetwork.md §1.1): Network, Endpoint and
 * Sandbox. Plain data, no I/O; the controller owns the invariants between them.
 * @module
 */

/** One IPAM pool of a network, with its gateway. */
export interface IpamConfig {
  /** The pool, e.g. `10.1.0.0/24`. */
  subnet: string;
  /** Sub-range addresses come from (`--ip-range`), if any. */
  ipRange?: string;
  /** Gateway address without prefix length, if one was allocated. */
  gateway?: string;
  /** The IPAM's pool id (`LocalDefault/10.1.0.0/24`). */
  poolId: string;
  /** True when the user gave the subnet (not taken from the predefined pools). */
  userSubnet: boolean;
}

/** A network: a group of endpoints that can talk to each other. */
export interface NetworkRecord {
  id: string;
  name: string;
  driver: string;
  /** Network scope: the driver's data scope ("local" or "global"). */
  scope: "local" | "global";
  internal: boolean;
  enableIpv6: boolean;
  /** Driver options as the user gave them (Docker's `-o k=v`). */
  options: Record<string, string>;
  labels: Record<string, string>;
  ipv4: IpamConfig[];
  ipv6: IpamConfig[];
  created: string;
  /** Set while a delete is under way, so a crash mid-delete is finished on restart (§1.5). */
  inDelete?: boolean;
}

/** A published port (Docker's `-p [HOST_IP:]HOST_PORT:PORT/PROTO`), as bound. */
export interface PortBinding {
  /** Host address the port is bound on; `0.0.0.0` = every local address. */
  hostIp?: string;
  /** Host port; 0 in a request = an ephemeral port, resolved to the real one when bound. */
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
}

/** An endpoint: a network's attachment point, joined to at most one sandbox. */
export interface EndpointRecord {
  id: string;
  name: string;
  networkId: string;
  /** Sandbox id when joined. */
  sandboxId?: string;
  /** IPv4 address with prefix length, e.g. `10.1.0.2/24`. */
  ipv4?: string;
  /** IPv6 address with prefix length. */
  ipv6?: string;
  mac?: string;
  /** Interface name inside the sandbox (eth0, eth1, ...). */
  ifname?: string;
  gateway?: string;
  gatewayV6?: string;
  /** True when the user asked for this IPv4 address (`--ip`). */
  staticIpv4?: boolean;
  aliases: string[];
  /** Published ports, as bound (ephemeral host ports resolved). */
  published?: PortBinding[];
  /** Driver-private data (veth names, ...), opaque to the controller. */
  driverData: Record<string, string>;
  created: string;
}

/** A sandbox: a container's network stack, i.e. one network namespace. */
export interface SandboxRecord {
  id: string;
  name: string;
  hostname: string;
  /** Name of the namespace under /run/netns. */
  netnsName: string;
  /** Path of the namespace file, e.g. `/run/netns/cnm-1a2b3c4d5e6f`. */
  netnsPath: string;
  /** Endpoint ids in join order. */
  endpoints: string[];
  created: string;
}

/** A service port (issue 8): balanced over the backends in VIP mode. */
export interface ServicePort {
  port: number;
  protocol: "tcp" | "udp";
}

/** A service: a name on a network over a set of backend endpoints (issue 8). */
export interface ServiceRecord {
  id: string;
  name: string;
  networkId: string;
  /** `vip`: a virtual IP balanced over the backends; `dnsrr`: DNS round robin, no VIP. */
  mode: "vip" | "dnsrr";
  /** The virtual IP (VIP mode), without prefix length. */
  vip?: string;
  ports: ServicePort[];
  /** `client-ip`: one client keeps reaching one backend. */
  affinity?: "client-ip";
  /** Backend endpoint ids, in the order they were added. */
  backends: string[];
  created: string;
}

/**
 * An operation under way, journaled before its first kernel call and deleted in the same
 * store transaction that commits it: a leftover intent is an operation a crash cut short,
 * and names every kernel object it may have made. Reconcile takes a cut-short connect or
 * network create back (nothing of it stays) and finishes a cut-short disconnect or sandbox
 * removal, so each one happened wholly or not at all.
 */
export type IntentRecord =
  | {
    id: string;
    op: "network-create";
    /** The network as it would have been stored. */
    network: NetworkRecord;
  }
  | {
    id: string;
    op: "connect";
    /** The endpoint as it would have been stored (interface names, driver data). */
    endpoint: EndpointRecord;
  }
  | { id: string; op: "disconnect"; endpointId: string }
  | { id: string; op: "sandbox-rm"; sandboxId: string }
  | {
    id: string;
    /** A link whose deletion runs in the background (Kernel.deleteLinkLater). */
    op: "link-delete";
    /** Its namespace (absent: the daemon's own). */
    netns?: string;
    link: string;
  };
