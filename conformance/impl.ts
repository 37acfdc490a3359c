/**
 * The `Implementation` interface: everything the conformance suite needs from a CNM
 * implementation, and nothing more. Cases talk to an implementation only through this
 * interface and observe the results from inside namespaces, so the same cases check the
 * reference, a real Docker engine, or your own driver.
 *
 * To test your own system, write one module that default-exports a factory:
 *
 * ```ts
 * import type { AdapterFactory } from "./conformance/impl.ts";
 * const factory: AdapterFactory = (options) => new MyAdapter(options);
 * export default factory;
 * ```
 *
 * and run `deno task conformance --impl ./my_adapter.ts --impl-opt key=value`.
 * Declare only the capabilities you have: cases needing others SKIP with the reason.
 * @module
 */

/**
 * Features a case may need. An implementation declares those it has. Most name a CNM
 * feature; `ipam.docker-policy` is Docker's address policy beyond CNM (the gateway is the
 * subnet's first address, a released address is the next handed out, an overlapping subnet
 * is refused at create), so a non-Docker implementation can run the CNM semantics without it.
 */
export type Capability =
  | "bridge"
  | "bridge.icc"
  | "bridge.internal"
  | "bridge.masquerade"
  | "bridge.mtu"
  | "ipv6"
  | "static-ip"
  | "ip-range"
  | "ipam.docker-policy"
  | "aliases"
  | "ports"
  | "restart"
  | "dns"
  | "dns.upstream"
  | "lb.vip"
  | "lb.dnsrr"
  | "lb.affinity"
  | "macvlan"
  | "macvlan.no-parent"
  | "overlay"
  | "multi-host";

/** Every capability, for listings. */
export const ALL_CAPABILITIES: readonly Capability[] = [
  "bridge",
  "bridge.icc",
  "bridge.internal",
  "bridge.masquerade",
  "bridge.mtu",
  "ipv6",
  "static-ip",
  "ip-range",
  "ipam.docker-policy",
  "aliases",
  "ports",
  "restart",
  "dns",
  "dns.upstream",
  "lb.vip",
  "lb.dnsrr",
  "lb.affinity",
  "macvlan",
  "macvlan.no-parent",
  "overlay",
  "multi-host",
];

/** A host the harness made: a namespace, with its links to "outside". */
export interface Host {
  /** Short name cases use ("h1"). */
  name: string;
  /** Name of the host namespace under /run/netns. */
  netns: string;
  /** Path of the host namespace file. */
  netnsPath: string;
  /** Prefix every name the implementation creates in shared places must start with. */
  prefix: string;
  /** Addresses of the host on its links, e.g. `{ outside: "198.51.100.1/24" }`. */
  addresses: Record<string, string>;
  /** Stub DNS resolvers reachable from the host namespace. */
  dnsUpstreams: string[];
  /** A scratch directory for the implementation's state (removed after the run). */
  stateDir: string;
  /**
   * Set on the hosts of a multi-host underlay only (profile `overlay`): the host's address
   * on the underlay (`203.0.113.1`, no prefix length) and the cluster store's client URL
   * (`http://203.0.113.254:2379`, a real etcd 3.4 with the v2 API on). Such a host has no
   * store of its own: the implementation must run inside the host namespace, on the store.
   */
  underlay?: { address: string; store: string };
}

/** A network to create (Docker's `network create`). */
export interface NetworkSpec {
  name: string;
  driver: string;
  /** Host to create it on (default: the first host). */
  host?: string;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  ipv6Subnet?: string;
  internal?: boolean;
  /** Driver options, Docker's keys. */
  options?: Record<string, string>;
}

/** A sandbox (container) to create. */
export interface SandboxSpec {
  name: string;
  hostname?: string;
  host?: string;
}

/** A created sandbox: where probes enter it. */
export interface SandboxInfo {
  name: string;
  /** Path of its network namespace (`/run/netns/...` or `/proc/PID/ns/net`). */
  netnsPath: string;
  /** Its resolver address, if it has an embedded one (127.0.0.11). */
  resolver?: string;
}

/** A published port (Docker's `-p [HOST_IP:]HOST_PORT:PORT/PROTO`). */
export interface PortSpec {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
  hostIp?: string;
}

/** Options of `connect`. */
export interface ConnectSpec {
  aliases?: string[];
  ipv4?: string;
  publish?: PortSpec[];
}

/** What `connect` reports about the new endpoint. */
export interface EndpointInfo {
  network: string;
  ifname: string;
  mac: string;
  /** With prefix length, e.g. `10.1.0.2/24`. */
  ipv4?: string;
  ipv6?: string;
  gateway?: string;
  published?: PortSpec[];
}

/** A service (load balancing). */
export interface ServiceSpec {
  name: string;
  network: string;
  mode: "vip" | "dnsrr";
  ports?: { port: number; protocol: "tcp" | "udp" }[];
  affinity?: "client-ip";
}

/** Kinds of refusal an implementation reports (mapped from its own errors). */
export type ErrorKind =
  | "not-found"
  | "conflict"
  | "invalid"
  | "forbidden"
  | "unsupported"
  | "internal";

/** An error an adapter throws when the implementation refused or failed a request. */
export class ImplementationError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.name = "ImplementationError";
  }
}

/** The contract between the suite and an implementation. */
export interface Implementation extends AsyncDisposable {
  readonly name: string;
  capabilities(): Promise<Set<Capability>>;
  /** Starts whatever the implementation needs on a host the harness made. */
  addHost(host: Host): Promise<void>;
  createNetwork(spec: NetworkSpec): Promise<{ name: string; subnet: string; gateway?: string }>;
  removeNetwork(name: string): Promise<void>;
  createSandbox(spec: SandboxSpec): Promise<SandboxInfo>;
  removeSandbox(name: string): Promise<void>;
  connect(sandbox: string, network: string, spec?: ConnectSpec): Promise<EndpointInfo>;
  disconnect(sandbox: string, network: string): Promise<void>;
  createService?(spec: ServiceSpec): Promise<{ name: string; vip?: string }>;
  addBackend?(service: string, sandbox: string): Promise<void>;
  removeBackend?(service: string, sandbox: string): Promise<void>;
  removeService?(name: string): Promise<void>;
  /**
   * Kills the implementation on a host at once (SIGKILL: a machine lost), after which the
   * harness takes the host's underlay link down. Returns how long, in ms, the other hosts
   * may take to notice (its store lease's TTL). `restart(host, "kill")` brings it back.
   */
  stopHost?(host: string): Promise<number>;
  /** Restarts the implementation on a host; sandboxes and networks must survive. */
  restart?(host: string, how: "graceful" | "kill"): Promise<void>;
  /**
   * Kernel state worth showing when a case fails on this host (e.g. `nft list ruleset`),
   * as text; optional.
   */
  debugState?(host: string): Promise<string>;
  /**
   * The engine's version (`20.10.24`), called after the first `addHost`; listed
   * divergences apply only to the versions they name.
   */
  version?(): Promise<string>;
  /**
   * Capabilities the implementation has in general but cannot have on THIS machine, with
   * the reason (a kernel limit it probed, e.g. no dummy links): cases needing them SKIP
   * with that reason (a precondition), instead of failing. Called after `addHost`.
   */
  preconditions?(): Promise<Partial<Record<Capability, string>>>;
}

/** Options given to an adapter factory (`--impl-opt K=V`, `--docker-host`, `--fault`). */
export interface AdapterOptions {
  options: Record<string, string>;
  /** Root of this repository (to find the reference daemon). */
  repoRoot: string;
  log: (line: string) => void;
}

/** What an adapter module default-exports. */
export type AdapterFactory = (options: AdapterOptions) => Implementation | Promise<Implementation>;
