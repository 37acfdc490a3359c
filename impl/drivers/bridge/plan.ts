/**
 * Pure plans of the bridge driver: what it asks of the kernel for each verb. Unit tests
 * compare them with golden files in testdata/.
 * @module
 */
import { type Op, type Plan, plan } from "../../kernel/plan.ts";
import type { LinkInfo } from "../../kernel/kernel.ts";
import { formatIp, tryParseIp } from "../../model/ip.ts";
import type { PortBinding } from "../../model/objects.ts";
import type { BridgeConfig } from "./options.ts";

/** What the driver knows of one network. */
export interface BridgeNetwork {
  id: string;
  name: string;
  config: BridgeConfig;
  internal: boolean;
  /** IPv4 subnets and gateways (`10.1.0.0/24`, `10.1.0.1/24`). */
  ipv4: { pool: string; gateway?: string }[];
  ipv6: { pool: string; gateway?: string }[];
  /** The bridge existed before (user-managed): never created or deleted by us. */
  preexisting: boolean;
  /**
   * How a preexisting bridge was found, so that removing the network leaves it so; absent
   * when that is not known (restored without a record): then nothing of it is undone.
   */
  found?: FoundBridge;
}

/**
 * What the network changed on a bridge it found (a user's, named by
 * `com.docker.network.bridge.name`). Docker uses such a bridge as is: it sets its MTU only
 * when the user gave one (`bridge_linux.go` createNetwork, `config.Mtu > 0`) and never
 * deletes it (`ifaceCreatedByUser`); removal here also takes back what the network added.
 */
export interface FoundBridge {
  /** Its MTU before, when the network set another (an explicit driver MTU). */
  mtu?: number;
  /** It was down: the network brought it up. */
  down?: boolean;
  /** The network's gateway addresses it already had: neither added nor removed. */
  kept: string[];
}

/** `ADDR/LEN` in canonical form (RFC 5952 for IPv6), so spellings compare equal. */
export function canonical(cidr: string): string {
  const [addr, len] = cidr.split("/");
  const ip = tryParseIp(addr);
  return ip ? `${formatIp(ip.family, ip.value)}/${len}` : cidr;
}

/** The gateways (with prefix length) of a network, IPv4 first. */
function gateways(net: BridgeNetwork): string[] {
  return [...net.ipv4, ...net.ipv6].flatMap((a) => a.gateway ? [a.gateway] : []);
}

/**
 * How a network finds an existing bridge (`link` as `ip -j -d addr show` reports it): its
 * MTU if the network sets another, whether it is down, which gateways it has already.
 */
export function foundBridge(net: BridgeNetwork, link: LinkInfo): FoundBridge {
  const have = new Set((link.addr_info ?? []).map((a) => canonical(`${a.local}/${a.prefixlen}`)));
  const found: FoundBridge = { kept: gateways(net).filter((g) => have.has(canonical(g))) };
  if (net.config.userMtu && link.mtu !== undefined && link.mtu !== net.config.mtu) {
    found.mtu = link.mtu;
  }
  if (!link.flags?.includes("UP")) found.down = true;
  return found;
}

/** True when `link` is a Linux bridge. */
export function isBridge(link: LinkInfo): boolean {
  return link.linkinfo?.info_kind === "bridge";
}

/** Docker's refusal of a bridge name that an interface of another kind has (newInterface). */
export function notABridgeMessage(name: string): string {
  return `existing interface ${name} is not a bridge`;
}

/** Forwarding sysctls already set in a host namespace (they are set once per host). */
export interface ForwardingDone {
  v4?: boolean;
  v6?: boolean;
}

/** The forwarding sysctls a network needs that are not set yet (Docker sets them too). */
export function forwardingOps(
  net: BridgeNetwork,
  hostNetns?: string,
  done: ForwardingDone = {},
): Op[] {
  const ops: Op[] = [];
  if (!done.v4) {
    ops.push({ kind: "sysctl", netns: hostNetns, key: "net.ipv4.ip_forward", value: "1" });
  }
  if (net.ipv6.length > 0 && !done.v6) {
    ops.push({ kind: "sysctl", netns: hostNetns, key: "net.ipv6.conf.all.forwarding", value: "1" });
  }
  return ops;
}

/**
 * Plan for a new network: forwarding on (unless `done` says it already is), the bridge with
 * its gateway addresses, up. A bridge the network found ({@linkcode BridgeNetwork.found}) is
 * used as is: only the gateways it lacks are added, its MTU is set only when the user gave
 * one, and the undo takes back exactly that.
 */
export function createNetworkPlan(
  net: BridgeNetwork,
  hostNetns?: string,
  done: ForwardingDone = {},
): Plan {
  const br = net.config.bridgeName;
  const lines: string[] = [];
  const undo: string[] = [];
  if (!net.preexisting) {
    lines.push(`link add name ${br} mtu ${net.config.mtu} type bridge`);
    undo.push(`link del dev ${br}`);
    for (const g of gateways(net)) lines.push(gatewayLine(g, br));
  } else {
    const found = net.found ?? { kept: [] };
    if (found.mtu !== undefined) {
      lines.push(`link set dev ${br} mtu ${net.config.mtu}`);
      undo.unshift(`link set dev ${br} mtu ${found.mtu}`);
    }
    const kept = new Set(found.kept.map(canonical));
    for (const g of gateways(net)) {
      if (kept.has(canonical(g))) continue;
      lines.push(gatewayLine(g, br));
      undo.unshift(`addr del ${g} dev ${br}`);
    }
    if (found.down) undo.unshift(`link set dev ${br} down`);
  }
  lines.push(`link set dev ${br} up`);
  return plan(...forwardingOps(net, hostNetns, done), {
    kind: "ip",
    netns: hostNetns,
    lines,
    undo,
  });
}

/** The `ip` line that puts a gateway address (with prefix length) on a bridge. */
export function gatewayLine(gateway: string, bridge: string): string {
  return `addr add ${gateway} dev ${bridge}${gateway.includes(":") ? " nodad" : ""}`;
}

/**
 * Lines that remove a network's bridge, or, on a bridge it found, take back what it changed
 * there and nothing else: the gateways it added, the MTU it set, the up it brought.
 */
export function deleteNetworkLines(net: BridgeNetwork): string[] {
  const br = net.config.bridgeName;
  if (!net.preexisting) return [`link del dev ${br}`];
  const found = net.found ?? { kept: gateways(net) };
  const kept = new Set(found.kept.map(canonical));
  const lines = gateways(net).filter((g) => !kept.has(canonical(g))).map((g) =>
    `addr del ${g} dev ${br}`
  );
  if (found.mtu !== undefined) lines.push(`link set dev ${br} mtu ${found.mtu}`);
  if (found.down) lines.push(`link set dev ${br} down`);
  return lines;
}

/**
 * The comment of a user-named bridge's element in the `bridges` set: whether the network
 * made the bridge or found it, and then how ({@linkcode FoundBridge}). The driver cannot
 * store data with the network, so this is its record across a restart (read back with
 * {@linkcode parseBridgeComment}); e.g. `cnm net=<id12> bridge=found mtu=9000 kept=10.1.0.1/24`.
 */
export function bridgeComment(net: BridgeNetwork): string {
  const head = `cnm net=${net.id.slice(0, 12)} bridge=`;
  if (!net.preexisting) return head + "made";
  if (!net.found) return head + "unknown";
  const f = net.found;
  return head + "found" + (f.mtu !== undefined ? ` mtu=${f.mtu}` : "") +
    (f.down ? " down" : "") + (f.kept.length ? ` kept=${f.kept.join(",")}` : "");
}

/**
 * Reads a {@linkcode bridgeComment} back for network `networkId`: `made`, how the bridge was
 * found, or undefined (another network's, or not ours, or unknown).
 */
export function parseBridgeComment(
  networkId: string,
  comment: string,
): "made" | FoundBridge | undefined {
  const words = comment.trim().split(/\s+/);
  if (words[0] !== "cnm" || words[1] !== `net=${networkId.slice(0, 12)}`) return undefined;
  if (words[2] === "bridge=made" && words.length === 3) return "made";
  if (words[2] !== "bridge=found") return undefined;
  const found: FoundBridge = { kept: [] };
  for (const w of words.slice(3)) {
    if (w === "down") found.down = true;
    else if (/^mtu=\d{1,5}$/.test(w)) found.mtu = Number(w.slice(4));
    else if (w.startsWith("kept=")) found.kept = w.slice(5).split(",").filter(Boolean);
    else return undefined;
  }
  return found;
}

/** An element of the `bridges` set: the name, with its record when the user named it. */
function bridgeElement(net: BridgeNetwork): string {
  const name = `"${net.config.bridgeName}"`;
  return net.config.userBridgeName ? `${name} comment "${bridgeComment(net)}"` : name;
}

/** What a join needs to know of the endpoint. */
export interface JoinSpec {
  /** Name of the host end of the veth pair (chosen by createEndpoint). */
  hostIf: string;
  /** The sandbox's namespace (name under /run/netns). */
  sandboxNetns: string;
  /** Name of the interface inside the sandbox (eth0, ...). */
  ifname: string;
  mac?: string;
}

/**
 * Plan for a join: one `ip -batch` in the host namespace. The veth pair is created with its
 * sandbox end directly inside the sandbox under its final name and with its MAC
 * (`peer netns SB name eth0`): creating it in the host and then moving it costs the kernel
 * a synchronize_net on the move (15 to 30 ms here, measured). The host end goes on the
 * bridge (isolated when ICC is off, which keeps it from every other port but not from the
 * gateway) and up. The sandbox end is then addressed, brought up and routed by the sandbox's
 * owner, the controller, as libnetwork's sandbox (osl) configures the interface a driver's
 * Join hands it. Deleting the host end destroys the pair: that is the whole undo.
 */
export function joinPlan(net: BridgeNetwork, spec: JoinSpec, hostNetns?: string): Plan {
  const mtu = net.config.mtu;
  const isolate = !net.config.icc;
  const lines = [
    `link add name ${spec.hostIf} mtu ${mtu} master ${net.config.bridgeName}${
      isolate ? "" : " up"
    } type veth peer netns ${spec.sandboxNetns} name ${spec.ifname} mtu ${mtu}${
      spec.mac ? ` address ${spec.mac}` : ""
    }`,
  ];
  if (isolate) {
    lines.push(
      `link set dev ${spec.hostIf} type bridge_slave isolated on`,
      `link set dev ${spec.hostIf} up`,
    );
  }
  return plan({ kind: "ip", netns: hostNetns, lines, undo: [`link del dev ${spec.hostIf}`] });
}

/**
 * The nftables layout of the driver's table (one per host, `inet <prefix>_bridge`):
 *
 * - `set bridges`: every bridge of ours;
 * - per network, regular chains named after its id: `in-<id12>` (traffic entering the host
 *   from its bridge), `out-<id12>` (leaving through it; internal networks only) and
 *   `nat-<id12>` (its subnets' traffic leaving the host; when masquerading);
 * - verdict maps that jump to them: `fwd_in` and `fwd_out` (bridge name), `nat_src`
 *   (IPv4 subnet);
 * - two base chains: `forward` (`iifname vmap @fwd_in`, `oifname vmap @fwd_out`) and
 *   `postrouting` (`ip saddr vmap @nat_src`).
 *
 * So a network is added by adding its chains and map elements, and removed by deleting
 * them: one small atomic transaction each, and adding deletes nothing (a transaction that
 * deletes rules costs the kernel an RCU grace period, 12-20 ms here, measured, against
 * about 5 ms for one that only adds). Rules carry an owner comment naming the network.
 *
 * - Isolation between bridge networks: traffic from one of our bridges to another is
 *   dropped in the forward hook (Docker ≤ v27: DOCKER-ISOLATION-STAGE-1/2, §3.1).
 * - Internal networks: nothing enters or leaves the subnet through the host (§3.1,
 *   DOCKER-INTERNAL / STAGE-1 rules).
 * - Masquerade: traffic from the subnet leaving through another interface is SNATed to the
 *   host's address (Docker's POSTROUTING MASQUERADE).
 */
interface NftParts {
  /** Regular chains of the network: name and rules. */
  chains: { name: string; rules: string[] }[];
  /** Elements of `fwd_in`, `fwd_out`, `nat_src`. */
  fwdIn: string[];
  fwdOut: string[];
  natSrc: string[];
}

function nftParts(n: BridgeNetwork): NftParts {
  const id = n.id.slice(0, 12);
  const br = `"${n.config.bridgeName}"`;
  const tag = (what: string) => `comment "cnm net=${id} ${what}"`;
  const parts: NftParts = { chains: [], fwdIn: [], fwdOut: [], natSrc: [] };
  const inRules = [`oifname @bridges oifname != ${br} drop ${tag("isolation")}`];
  const outRules: string[] = [];
  if (n.internal) {
    for (const [fam, list] of [["ip", n.ipv4], ["ip6", n.ipv6]] as const) {
      for (const a of list) {
        inRules.push(`${fam} daddr != ${a.pool} drop ${tag("internal-out")}`);
        outRules.push(`${fam} saddr != ${a.pool} drop ${tag("internal-in")}`);
      }
    }
  } else if (n.config.gatewayModeIpv4 === "nat") {
    // From outside the bridge, only replies and published ports (DNATed) get in: Docker's
    // FORWARD policy DROP with the DOCKER chain's ACCEPT per published port.
    outRules.push(
      `iifname != ${br} ct state established,related accept ${tag("established")}`,
      `iifname != ${br} ct status dnat accept ${tag("published")}`,
      `iifname != ${br} drop ${tag("unpublished")}`,
    );
  }
  parts.chains.push({ name: `in-${id}`, rules: inRules });
  parts.fwdIn.push(`${br} : jump in-${id}`);
  if (outRules.length > 0) {
    parts.chains.push({ name: `out-${id}`, rules: outRules });
    parts.fwdOut.push(`${br} : jump out-${id}`);
  }
  if (!n.internal && n.ipv4.length > 0) {
    // Hairpin: a sandbox reaching a published port through a host address comes back
    // from the gateway, so the reply returns through the host (Docker without the proxy).
    const rules = [`oifname ${br} ct status dnat masquerade ${tag("hairpin")}`];
    if (n.config.masquerade && n.config.gatewayModeIpv4 === "nat") {
      rules.push(`oifname != ${br} masquerade ${tag("masquerade")}`);
    }
    parts.chains.push({ name: `nat-${id}`, rules });
    for (const a of n.ipv4) parts.natSrc.push(`${a.pool} : jump nat-${id}`);
  }
  return parts;
}

/** The published ports of one endpoint (programExternalConnectivity). */
export interface PublishedEndpoint {
  networkId: string;
  endpointId: string;
  /** The sandbox's IPv4 address, without prefix length. */
  address: string;
  /** Resolved bindings: `hostIp` set (`0.0.0.0` = any local address), `hostPort` > 0. */
  bindings: PortBinding[];
}

/** The owner comment of an endpoint's port rules (revoke deletes the rules carrying it). */
export function portsComment(p: { networkId: string; endpointId: string }): string {
  return `cnm net=${p.networkId.slice(0, 12)} ep=${p.endpointId.slice(0, 12)} port`;
}

/**
 * The DNAT rules of an endpoint's published ports, for the `ports` chain (jumped to from
 * the nat prerouting and output hooks): a binding on `0.0.0.0` matches any local address
 * (`fib daddr type local`, Docker's `--dst-type LOCAL`), 127.0.0.1 included but only for
 * the host's own connections (see {@linkcode nftScript}); a binding on an address matches
 * that address only.
 */
export function portRules(p: PublishedEndpoint): string[] {
  return p.bindings.map((b) => {
    const match = !b.hostIp || b.hostIp === "0.0.0.0"
      ? "meta nfproto ipv4 fib daddr type local"
      : `ip daddr ${b.hostIp}`;
    return `${match} ${b.protocol} dport ${b.hostPort} dnat ip to ${p.address}:${b.containerPort} comment "${
      portsComment(p)
    }"`;
  });
}

/** The transaction that adds an endpoint's port rules to a table {@linkcode nftScript} made. */
export function nftAddPorts(table: string, p: PublishedEndpoint): string {
  return portRules(p).map((r) => `add rule inet ${table} ports ${r}\n`).join("");
}

/**
 * The driver's whole nftables state for a host, as one atomic transaction that replaces the
 * previous table (`table {}; delete table; table {...}`), or only deletes it when there is
 * no network. Used when the table's state is not known (start, reconcile, a failed
 * incremental change).
 *
 * Published ports: DNAT rules in chain `ports`, jumped to from `prerouting` (nat,
 * `dstnat`) and `output` (nat, priority -100: nft 1.0.6 refuses the named priority there),
 * so they answer from outside, from sandboxes (hairpin) and from the host itself;
 * connections from 127.0.0.0/8 going out a bridge are masqueraded (with
 * `route_localnet=1`, as Docker does without its userland proxy).
 *
 * Loopback stays on the host: `route_localnet=1` would let a neighbour send a packet to
 * 127.0.0.1 to the host's MAC and have it DNATed to a sandbox (or delivered to a local
 * socket bound to 127.0.0.1). Chain `localhost` (filter, prerouting, priority raw: before
 * conntrack and NAT) drops anything to 127.0.0.0/8 that did not come in on `lo`, as
 * Docker's raw `PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP`; and `prerouting` never jumps to
 * `ports` for 127.0.0.0/8, so only the host's own connections (nat output) are DNATed
 * there. Replies to those are not affected: at raw priority they are still addressed to
 * the bridge's gateway (the masquerade is undone later).
 */
export function nftScript(
  table: string,
  nets: BridgeNetwork[],
  ports: PublishedEndpoint[] = [],
): string {
  const head = `table inet ${table} {}\ndelete table inet ${table}\n`;
  if (nets.length === 0) return head;
  const sorted = [...nets].sort((a, b) => a.config.bridgeName.localeCompare(b.config.bridgeName));
  const all = sorted.map(nftParts);
  const elements = (xs: string[]) => xs.length ? [`    elements = { ${xs.join(", ")} }`] : [];
  const body = [
    `table inet ${table} {`,
    `  set bridges {`,
    `    type ifname`,
    ...elements(sorted.map(bridgeElement)),
    `  }`,
    ...all.flatMap((p) =>
      p.chains.flatMap((c) => [`  chain ${c.name} {`, ...c.rules.map((r) => `    ${r}`), `  }`])
    ),
    `  map fwd_in {`,
    `    type ifname : verdict`,
    ...elements(all.flatMap((p) => p.fwdIn)),
    `  }`,
    `  map fwd_out {`,
    `    type ifname : verdict`,
    ...elements(all.flatMap((p) => p.fwdOut)),
    `  }`,
    `  map nat_src {`,
    `    type ipv4_addr : verdict`,
    `    flags interval`,
    ...elements(all.flatMap((p) => p.natSrc)),
    `  }`,
    `  chain localhost {`,
    `    type filter hook prerouting priority raw; policy accept;`,
    `    iifname != "lo" ip daddr 127.0.0.0/8 drop comment "cnm localhost-guard"`,
    `  }`,
    `  chain ports {`,
    ...ports.flatMap(portRules).map((r) => `    ${r}`),
    `  }`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    ip daddr 127.0.0.0/8 return comment "cnm localhost-ports: from the host only"`,
    `    jump ports`,
    `  }`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    `    jump ports`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname vmap @fwd_in`,
    `    oifname vmap @fwd_out`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr vmap @nat_src`,
    `    oifname @bridges ip saddr 127.0.0.0/8 masquerade comment "cnm localhost-ports"`,
    `  }`,
    `}`,
  ];
  return head + body.join("\n") + "\n";
}

/** The transaction that adds one network to a table {@linkcode nftScript} made. */
export function nftAddNetwork(table: string, net: BridgeNetwork): string {
  const t = `inet ${table}`;
  const p = nftParts(net);
  const lines = p.chains.flatMap((c) => [
    `add chain ${t} ${c.name}`,
    ...c.rules.map((r) => `add rule ${t} ${c.name} ${r}`),
  ]);
  lines.push(`add element ${t} bridges { ${bridgeElement(net)} }`);
  for (const [map, xs] of [["fwd_in", p.fwdIn], ["fwd_out", p.fwdOut], ["nat_src", p.natSrc]]) {
    if (xs.length > 0) lines.push(`add element ${t} ${map} { ${(xs as string[]).join(", ")} }`);
  }
  return lines.join("\n") + "\n";
}

/** The transaction that removes one network from the table. */
export function nftRemoveNetwork(table: string, net: BridgeNetwork): string {
  const t = `inet ${table}`;
  const p = nftParts(net);
  const key = (x: string) => x.split(" : ")[0];
  const lines: string[] = [];
  for (const [map, xs] of [["fwd_in", p.fwdIn], ["fwd_out", p.fwdOut], ["nat_src", p.natSrc]]) {
    if (xs.length > 0) {
      lines.push(`delete element ${t} ${map} { ${(xs as string[]).map(key).join(", ")} }`);
    }
  }
  lines.push(`delete element ${t} bridges { "${net.config.bridgeName}" }`);
  for (const c of p.chains) lines.push(`flush chain ${t} ${c.name}`, `delete chain ${t} ${c.name}`);
  return lines.join("\n") + "\n";
}

/** The MAC of an endpoint (Docker 20.10: 02:42 + the IPv4 address). */
export { macFor } from "../../model/names.ts";
