/**
 * The embedded DNS (issue 7): Docker's resolver at 127.0.0.11 inside every sandbox, with
 * Docker 20.10's semantics (research/libnetwork.md §4.1-4.4). {@linkcode DnsService} is
 * what the controller and daemon use; the rest is exported for tests and tools.
 * @module
 */
export { DnsService, type DnsServiceOptions, type DnsServiceStats } from "./service.ts";
export { type DnsEndpoint, DnsRecords, type NameRecord, NetworkTable, View } from "./records.ts";
export { type ForwardFn, Resolver, type ResolverOptions, type ResolverStats } from "./resolver.ts";
export { Forwarder, type ForwarderOptions, parseUpstream, type Upstream } from "./forward.ts";
export * from "./wire.ts";
