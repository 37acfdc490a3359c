/**
 * Pure plans of the bridge driver: what it asks of the kernel for each verb. Unit tests
 * compare them with golden files in testdata/.
 * @module
 */
import { type Plan, plan } from "../../kernel/plan.ts";
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
}

/** Links of one endpoint: the host end on the bridge and the end that goes to the sandbox. */
export interface VethNames {
  hostIf: string;
  peerIf: string;
}

/** Plan for a new network: the bridge with its gateway addresses, and forwarding on. */
export function createNetworkPlan(net: BridgeNetwork, hostNetns?: string): Plan {
  const br = net.config.bridgeName;
  const lines: string[] = [];
  const undo: string[] = [];
  if (!net.preexisting) {
    lines.push(`link add name ${br} mtu ${net.config.mtu} type bridge`);
    undo.push(`link del dev ${br}`);
  } else {
    lines.push(`link set dev ${br} mtu ${net.config.mtu}`);
  }
  for (const a of [...net.ipv4, ...net.ipv6]) {
    if (!a.gateway) continue;
    const v6 = a.gateway.includes(":");
    lines.push(`addr add ${a.gateway} dev ${br}${v6 ? " nodad" : ""}`);
    if (net.preexisting) undo.unshift(`addr del ${a.gateway} dev ${br}`);
  }
  lines.push(`link set dev ${br} up`);
  return plan(
    { kind: "sysctl", netns: hostNetns, key: "net.ipv4.ip_forward", value: "1" },
    net.ipv6.length > 0 &&
      { kind: "sysctl", netns: hostNetns, key: "net.ipv6.conf.all.forwarding", value: "1" },
    { kind: "ip", netns: hostNetns, lines, undo },
  );
}

/** Lines that remove a network's bridge (or, if the user made it, only our addresses). */
export function deleteNetworkLines(net: BridgeNetwork): string[] {
  const br = net.config.bridgeName;
  if (!net.preexisting) return [`link del dev ${br}`];
  return [...net.ipv4, ...net.ipv6].flatMap((a) =>
    a.gateway ? [`addr del ${a.gateway} dev ${br}`] : []
  );
}

/**
 * Plan for an endpoint: a veth pair, the host end on the bridge (isolated when ICC is off,
 * which keeps it from every other port but not from the gateway), the other end waiting
 * to be moved into the sandbox.
 */
export function createEndpointPlan(
  net: BridgeNetwork,
  veth: VethNames,
  mac: string | undefined,
  hostNetns?: string,
): Plan {
  const mtu = net.config.mtu;
  const lines = [
    `link add name ${veth.hostIf} mtu ${mtu} type veth peer name ${veth.peerIf} mtu ${mtu}${
      mac ? ` address ${mac}` : ""
    }`,
    `link set dev ${veth.hostIf} master ${net.config.bridgeName}`,
  ];
  if (!net.config.icc) lines.push(`link set dev ${veth.hostIf} type bridge_slave isolated on`);
  lines.push(`link set dev ${veth.hostIf} up`);
  return plan({ kind: "ip", netns: hostNetns, lines, undo: [`link del dev ${veth.hostIf}`] });
}

/** Plan for a join: move the peer into the sandbox under its name, address it, bring it up. */
export function joinPlan(
  veth: VethNames,
  sandboxNetns: string,
  ifname: string,
  addresses: string[],
  hostNetns?: string,
): Plan {
  return plan(
    {
      kind: "ip",
      netns: hostNetns,
      lines: [`link set dev ${veth.peerIf} netns ${sandboxNetns} name ${ifname}`],
    },
    {
      kind: "ip",
      netns: sandboxNetns,
      lines: [
        ...addresses.map((a) => `addr add ${a} dev ${ifname}${a.includes(":") ? " nodad" : ""}`),
        `link set dev ${ifname} up`,
      ],
      undo: [`link del dev ${ifname}`],
    },
  );
}

/**
 * The driver's whole nftables state for a host, rendered as one atomic transaction that
 * replaces the previous one (`table {}; delete table; table {...}`). Rules carry an owner
 * comment naming the network.
 *
 * - Isolation between bridge networks: traffic from one of our bridges to another is
 *   dropped in the forward hook (Docker ≤ v27: DOCKER-ISOLATION-STAGE-1/2, §3.1).
 * - Internal networks: nothing enters or leaves the subnet through the host (§3.1,
 *   DOCKER-INTERNAL / STAGE-1 rules).
 * - Masquerade: traffic from the subnet leaving through another interface is SNATed to the
 *   host's address (Docker's POSTROUTING MASQUERADE).
 */
export function nftScript(table: string, nets: BridgeNetwork[]): string {
  const head = `table inet ${table} {}\ndelete table inet ${table}\n`;
  if (nets.length === 0) return head;
  const sorted = [...nets].sort((a, b) => a.config.bridgeName.localeCompare(b.config.bridgeName));
  const bridges = sorted.map((n) => `"${n.config.bridgeName}"`).join(", ");
  const fwd: string[] = [];
  const nat: string[] = [];
  for (const n of sorted) {
    const br = `"${n.config.bridgeName}"`;
    const tag = (what: string) => `comment "cnm net=${n.id.slice(0, 12)} ${what}"`;
    fwd.push(`iifname ${br} oifname @bridges oifname != ${br} drop ${tag("isolation")}`);
    if (n.internal) {
      for (const [fam, list] of [["ip", n.ipv4], ["ip6", n.ipv6]] as const) {
        for (const a of list) {
          fwd.push(`iifname ${br} ${fam} daddr != ${a.pool} drop ${tag("internal-out")}`);
          fwd.push(`oifname ${br} ${fam} saddr != ${a.pool} drop ${tag("internal-in")}`);
        }
      }
    } else if (n.config.masquerade) {
      for (const a of n.ipv4) {
        nat.push(`ip saddr ${a.pool} oifname != ${br} masquerade ${tag("masquerade")}`);
      }
    }
  }
  const body = [
    `table inet ${table} {`,
    `  set bridges {`,
    `    type ifname`,
    `    elements = { ${bridges} }`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    ...fwd.map((r) => `    ${r}`),
    `  }`,
    ...(nat.length
      ? [
        `  chain postrouting {`,
        `    type nat hook postrouting priority srcnat; policy accept;`,
        ...nat.map((r) => `    ${r}`),
        `  }`,
      ]
      : []),
    `}`,
  ];
  return head + body.join("\n") + "\n";
}

/**
 * MAC for an endpoint: Docker 20.10 derives it from the IPv4 address, `02:42:` + the four
 * octets (`netutils.GenerateMACFromIP`, research/libnetwork.md §3.1 "Older releases");
 * random and locally administered when there is no IPv4 address.
 */
export function macFor(ipv4?: string): string {
  let bytes: number[];
  if (ipv4) {
    bytes = [0x02, 0x42, ...ipv4.split("/")[0].split(".").map(Number)];
  } else {
    bytes = Array.from(crypto.getRandomValues(new Uint8Array(6)));
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
  }
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}
