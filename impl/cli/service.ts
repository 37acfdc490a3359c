/**
 * `cnm service ...` (issue 8): the `--port` flag's parser and the `service ls` table.
 * @module
 */
import { InvalidArgumentError } from "commander";
import type { ServiceRecord } from "../model/objects.ts";
import { table } from "./format.ts";

/** Collects `--port PORT[/tcp|/udp]` values (commander's argParser). */
export function collectPort(
  value: string,
  prev: { port: number; protocol: string }[],
): { port: number; protocol: string }[] {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(value);
  if (!m) throw new InvalidArgumentError(`"${value}" is not PORT[/tcp|/udp]`);
  return [...prev, { port: Number(m[1]), protocol: m[2] ?? "tcp" }];
}

/** The `service ls` table. */
export function serviceTable(services: ServiceRecord[]): string {
  return table(
    ["ID", "NAME", "MODE", "VIP", "PORTS", "BACKENDS"],
    services.map((s) => [
      s.id.slice(0, 12),
      s.name,
      s.mode,
      s.vip ?? "-",
      s.ports.map((p) => `${p.port}/${p.protocol}`).join(",") || "-",
      String(s.backends.length),
    ]),
  );
}
