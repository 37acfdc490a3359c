/**
 * Published ports as `connect` takes them (`--publish`, the API's `publish`): checked and
 * normalised before the driver binds them (research/libnetwork.md §3.1, port publishing).
 * @module
 */
import { InvalidArgumentError } from "../model/errors.ts";
import { formatIp, tryParseIp } from "../model/ip.ts";
import type { PortBinding } from "../model/objects.ts";

/** A port to publish as requested: no host port (or 0) = an ephemeral one. */
export interface PortRequest {
  hostIp?: string;
  hostPort?: number;
  containerPort: number;
  protocol?: "tcp" | "udp";
}

function checkPort(what: string, n: number, min: number): void {
  if (!Number.isInteger(n) || n < min || n > 65535) {
    throw new InvalidArgumentError(`invalid ${what} ${n}: expected ${min} to 65535`);
  }
}

/** Checks requested ports and gives them as bindings (protocol tcp and host port 0 by default). */
export function normalizePublish(specs: PortRequest[] = []): PortBinding[] {
  const out: PortBinding[] = [];
  for (const s of specs) {
    checkPort("container port", s.containerPort, 1);
    const hostPort = s.hostPort ?? 0;
    checkPort("host port", hostPort, 0);
    const protocol = s.protocol ?? "tcp";
    if (protocol !== "tcp" && protocol !== "udp") {
      throw new InvalidArgumentError(`invalid protocol ${protocol}: expected tcp or udp`);
    }
    let hostIp: string | undefined;
    if (s.hostIp !== undefined && s.hostIp !== "") {
      const ip = tryParseIp(s.hostIp);
      if (!ip || ip.family !== 4) {
        throw new InvalidArgumentError(`invalid host IP ${s.hostIp}: expected an IPv4 address`);
      }
      hostIp = formatIp(4, ip.value);
    }
    const b: PortBinding = { hostPort, containerPort: s.containerPort, protocol };
    if (hostIp) b.hostIp = hostIp;
    const dup = out.find((o) =>
      hostPort !== 0 && o.hostPort === hostPort && o.protocol === protocol &&
      (o.hostIp ?? "") === (hostIp ?? "")
    );
    if (dup) {
      throw new InvalidArgumentError(
        `host port ${hostIp ? `${hostIp}:` : ""}${hostPort}/${protocol} is requested twice`,
      );
    }
    out.push(b);
  }
  return out;
}
