/**
 * The nftables program of services (issue 8): one table the controller owns in the host
 * namespace, re-rendered whole in one atomic transaction on every change. Pure: no I/O.
 *
 * - `prerouting` (nat, dstnat) and `output` (nat, -100: nft 1.0.6 refuses the named dstnat
 *   priority in an output chain): per service and port,
 *   `ip daddr VIP tcp dport P dnat ip to numgen random mod N map { 0 : B0, ... }`
 *   (`jhash ip saddr mod N` with client-IP affinity), as kube-proxy's nftables mode does;
 * - `postrouting` (nat, srcnat): connections that were addressed to a VIP are masqueraded
 *   to the bridge's address, so replies come back through the host (the backend and the
 *   client are on one bridge: without it the backend would answer the client directly,
 *   bypassing the un-DNAT);
 * - `input` (filter): whatever reaches a VIP itself (a service with no backends, a port the
 *   service does not have) is rejected at once: TCP reset, else ICMP port unreachable.
 *
 * Hairpin: a backend reaching its own service would, once DNATed back to itself in the
 * host, carry a packet whose source and destination are the same address, which the host's
 * routing drops (checked on kernel 6.18, with or without masquerade). So each backend's own
 * namespace gets the same balancing in its `output` hook ({@linkcode lbSandboxScript}): a
 * backend's connection to a VIP is DNATed before it leaves, to itself (delivered locally)
 * or to another backend (reached directly on the bridge, the reply un-DNATed in the backend).
 *
 * The VIP is put on the network's bridge as a /32, so the bridge answers sandboxes' ARP for
 * it (the VIP is inside the subnet, so sandboxes ARP for it rather than route it); no route
 * changes are needed in the sandboxes.
 * @module
 */
import type { ServicePort } from "../model/objects.ts";

/** A service as the nft program needs it. */
export interface LbService {
  id: string;
  name: string;
  vip: string;
  ports: ServicePort[];
  affinity?: "client-ip";
  /** Backend IPv4 addresses (no prefix length), in order. */
  backends: string[];
}

/** The owner comment of a service's rules. */
export function ownerComment(id: string, name: string): string {
  return `comment "cnm-svc:${id.slice(0, 12)}:${name}"`;
}

function dnatRule(s: LbService, p: ServicePort): string {
  const head = `ip daddr ${s.vip} ${p.protocol} dport ${p.port}`;
  if (s.backends.length === 0) return "";
  const n = s.backends.length;
  const pick = s.affinity === "client-ip"
    ? `jhash ip saddr mod ${n} seed 0x636e6d`
    : `numgen random mod ${n}`;
  const map = s.backends.map((b, i) => `${i} : ${b}`).join(", ");
  return `${head} dnat ip to ${pick} map { ${map} } ${ownerComment(s.id, s.name)}`;
}

/**
 * The whole table as one transaction: created if missing, deleted, and written again (so
 * the result never depends on what was there). With no VIP service, the table is removed.
 */
export function lbTableScript(table: string, services: LbService[]): string {
  const vips = [...services].sort((a, b) => a.name.localeCompare(b.name));
  if (vips.length === 0) return `table inet ${table}\ndelete table inet ${table}\n`;
  const dnat = vips.flatMap((s) => s.ports.map((p) => dnatRule(s, p)).filter((r) => r));
  const rules = (lines: string[]) => lines.map((l) => `    ${l}`);
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    ...rules(dnat),
    `  }`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    ...rules(dnat),
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules(
      vips.map((s) => `ct original ip daddr ${s.vip} masquerade ${ownerComment(s.id, s.name)}`),
    ),
    `  }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    ...rules(vips.flatMap((s) => [
      `ip daddr ${s.vip} meta l4proto tcp reject with tcp reset ${ownerComment(s.id, s.name)}`,
      `ip daddr ${s.vip} reject ${ownerComment(s.id, s.name)}`,
    ])),
    `  }`,
    `}`,
    "",
  ].join("\n");
}

/**
 * The table in a backend's own namespace (hairpin, see above): the services it is a backend
 * of, balanced in its `output` hook. With none, the table is removed.
 */
export function lbSandboxScript(table: string, services: LbService[]): string {
  const vips = [...services].sort((a, b) => a.name.localeCompare(b.name));
  const dnat = vips.flatMap((s) => s.ports.map((p) => dnatRule(s, p)).filter((r) => r));
  if (dnat.length === 0) return `table inet ${table}\ndelete table inet ${table}\n`;
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    ...dnat.map((l) => `    ${l}`),
    `  }`,
    `}`,
    "",
  ].join("\n");
}

/** The `ip` line that puts a VIP on its network's bridge (answers ARP for it). */
export function vipAddLine(vip: string, bridge: string): string {
  return `addr replace ${vip}/32 dev ${bridge}`;
}

/** The `ip` line that takes a VIP off its bridge. */
export function vipDelLine(vip: string, bridge: string): string {
  return `addr del ${vip}/32 dev ${bridge}`;
}
