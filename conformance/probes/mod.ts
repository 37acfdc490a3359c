/**
 * Probes the conformance cases use to observe an implementation from inside its
 * sandboxes' namespaces: ICMP/TCP/UDP/HTTP/DNS probes with paste-able reproducers,
 * responders that answer with a sandbox's identity, bounded polling, a reachability
 * matrix and a state dump for failure reports. Every command enters the namespace with
 * `nsenter --net=PATH` and is built from an argv (no shell strings).
 * @module
 */
export {
  debugState,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_UDP_TIMEOUT_MS,
  type HttpProbeResult,
  type IcmpOptions,
  isIpv6,
  type MatrixOptions,
  type PollOptions,
  pollUntil,
  probeHttp,
  probeIcmp,
  type ProbeOptions,
  type ProbeResult,
  probeTcp,
  probeUdp,
  reachMatrix,
} from "./probes.ts";
export {
  type DnsOptions,
  type DnsProbeResult,
  type DnsRcode,
  type DnsType,
  parseDig,
  probeDns,
} from "./dns.ts";
export {
  IDENTITY_PATTERN,
  type ResponderOptions,
  type Responders,
  startResponders,
} from "./responders.ts";
export { commandLine, netnsPath, nsArgv, shellQuote } from "./run.ts";
