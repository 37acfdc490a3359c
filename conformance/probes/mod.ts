/**
 * Probes the conformance cases use to observe an implementation from inside its
 * sandboxes' namespaces: ICMP/TCP/UDP/HTTP/DNS probes with paste-able reproducers,
 * responders that answer with a sandbox's identity, bounded polling, a reachability
 * matrix and a state dump for failure reports; witnesses (passive captures in a target
 * namespace) that see which token-carrying probe packets arrived, and the verdict of a
 * probe from both ends. Every command enters the namespace with `nsenter --net=PATH` and
 * is built from an argv (no shell strings).
 * @module
 */
export {
  type BurstOptions,
  type BurstResult,
  burstUdp,
  classifyError,
  debugState,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_UDP_TIMEOUT_MS,
  harnessProblem,
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
  tcpIdentities,
  type TcpOptions,
  type UdpOptions,
} from "./probes.ts";
export {
  allocSourcePort,
  type CaptureStats,
  matchesToken,
  newToken,
  type Packet,
  parseTcpdump,
  SOURCE_PORT_MAX,
  SOURCE_PORT_MIN,
  startWitness,
  TcpdumpParser,
  type Token,
  tokenMatcher,
  type Witness,
  type WitnessOptions,
} from "./witness.ts";
export { classifyProbe, type Outcome, type ProbeEvidence, type ProbeVerdict } from "./outcome.ts";
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
