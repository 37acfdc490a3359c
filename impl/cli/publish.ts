/**
 * `cnm connect --publish [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]` (Docker's `-p`).
 * @module
 */
import { InvalidArgumentError } from "commander";
import type { ConnectBody } from "../daemon/api.ts";

/** One element of the API's `publish`. */
export type PublishSpec = NonNullable<ConnectBody["publish"]>[number];

const USAGE = "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]";

function port(text: string | undefined, what: string, spec: string, allowZero: boolean): number {
  const n = Number(text);
  if (text === undefined || !/^\d{1,5}$/.test(text) || n > 65535 || (!allowZero && n === 0)) {
    throw new InvalidArgumentError(`bad ${what} in "${spec}": ${USAGE}.`);
  }
  return n;
}

/**
 * Parses one `--publish` value. An empty or 0 host port asks for an ephemeral one (left
 * out of the result). Throws commander's InvalidArgumentError (a usage error, exit 2).
 */
export function parsePublish(spec: string): PublishSpec {
  let rest = spec;
  let protocol: "tcp" | "udp" | undefined;
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== "tcp" && p !== "udp") {
      throw new InvalidArgumentError(`bad protocol in "${spec}": ${USAGE}.`);
    }
    protocol = p;
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(":");
  if (parts.length < 2 || parts.length > 3) {
    throw new InvalidArgumentError(`bad port spec "${spec}": ${USAGE}.`);
  }
  const [hostIp, hostText, ctrText] = parts.length === 3 ? parts : [undefined, parts[0], parts[1]];
  if (hostIp !== undefined && !/^\d{1,3}(\.\d{1,3}){3}$/.test(hostIp)) {
    throw new InvalidArgumentError(`bad host IP in "${spec}": ${USAGE}.`);
  }
  const out: PublishSpec = { containerPort: port(ctrText, "container port", spec, false) };
  if (hostIp) out.hostIp = hostIp;
  const hostPort = !hostText ? 0 : port(hostText, "host port", spec, true);
  if (hostPort !== 0) out.hostPort = hostPort;
  if (protocol) out.protocol = protocol;
  return out;
}

/** Commander's collector for the repeatable `--publish`. */
export const collectPublish = (v: string, prev: PublishSpec[]): PublishSpec[] => [
  ...prev,
  parsePublish(v),
];
