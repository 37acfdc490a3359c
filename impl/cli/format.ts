/**
 * Output of the CLI: tables like `docker network ls` and pretty JSON.
 * @module
 */
import type { NetworkRecord } from "../model/objects.ts";
import type { SandboxView } from "../controller/controller.ts";

/**
 * Lays out rows in columns as Go's tabwriter does for docker: each column as wide as its
 * widest cell plus three spaces; the last column is not padded.
 */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) =>
    r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i] + 3)).join("").trimEnd()
  ).join("\n");
}

/** Natural-ish order by name, as docker's CLI sorts `ls` output. */
function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name.localeCompare(b.name, undefined, { numeric: true });
}

/** The `cnm network ls` table: NETWORK ID, NAME, DRIVER, SUBNET. */
export function networkTable(nets: NetworkRecord[]): string {
  return table(
    ["NETWORK ID", "NAME", "DRIVER", "SUBNET"],
    [...nets].sort(byName).map((n) => [
      n.id.slice(0, 12),
      n.name,
      n.driver,
      [...n.ipv4, ...n.ipv6].map((c) => c.subnet).join(","),
    ]),
  );
}

/** The `cnm sandbox ls` table: SANDBOX ID, NAME, NETNS, NETWORKS. */
export function sandboxTable(sandboxes: SandboxView[]): string {
  return table(
    ["SANDBOX ID", "NAME", "NETNS", "NETWORKS"],
    [...sandboxes].sort(byName).map((s) => [
      s.id.slice(0, 12),
      s.name,
      s.netnsName,
      (s.endpointDetails ?? []).map((e) => e.networkName).join(","),
    ]),
  );
}

/** JSON as `inspect` prints it. */
export function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
