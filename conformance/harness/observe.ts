/**
 * Reading a namespace's state from the outside (`nsenter --net=PATH ip -j ...`), so cases
 * check what the kernel has, not what the implementation says.
 * @module
 */
import { exec } from "./exec.ts";

/** One interface address inside a namespace. */
export interface ObservedAddr {
  ifname: string;
  address: string;
  prefixlen: number;
  family: "inet" | "inet6";
  mtu: number;
  mac?: string;
}

/** Global addresses (v4 and v6) of a namespace's interfaces, lo excluded. */
export async function observeAddrs(netnsPath: string): Promise<ObservedAddr[]> {
  const r = await exec(["nsenter", `--net=${netnsPath}`, "ip", "-j", "addr", "show"]);
  if (r.code !== 0) throw new Error(`cannot read addresses in ${netnsPath}: ${r.stderr.trim()}`);
  const links = JSON.parse(r.stdout) as {
    ifname: string;
    mtu: number;
    address?: string;
    addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
  }[];
  return links.filter((l) => l.ifname !== "lo").flatMap((l) =>
    l.addr_info.filter((a) => a.scope === "global").map((a) => ({
      ifname: l.ifname,
      address: a.local,
      prefixlen: a.prefixlen,
      family: a.family as "inet" | "inet6",
      mtu: l.mtu,
      mac: l.address,
    }))
  );
}

/** Interface names of a namespace, lo excluded. */
export async function observeLinks(netnsPath: string): Promise<string[]> {
  const r = await exec(["nsenter", `--net=${netnsPath}`, "ip", "-j", "link", "show"]);
  if (r.code !== 0) throw new Error(`cannot read links in ${netnsPath}: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) =>
    n !== "lo"
  );
}

/** The IPv4 default route's gateway, or undefined when there is none. */
export async function observeDefaultGateway(netnsPath: string): Promise<string | undefined> {
  const r = await exec(["nsenter", `--net=${netnsPath}`, "ip", "-j", "route", "show", "default"]);
  if (r.code !== 0) return undefined;
  const routes = JSON.parse(r.stdout || "[]") as { gateway?: string }[];
  return routes[0]?.gateway;
}

/** Runs argv inside a namespace (with `stdin` written to it, when given). */
export function inNetns(netnsPath: string, argv: string[], stdin?: string) {
  return exec(["nsenter", `--net=${netnsPath}`, ...argv], { stdin });
}
