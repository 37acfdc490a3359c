/**
 * Helpers for the project's own tests: root detection, unique throwaway names, a throwaway
 * host namespace, probes run inside a namespace, and a leak audit. Test-only code.
 * @module
 */
import { randomHex } from "../impl/model/names.ts";
import { exec } from "../conformance/harness/exec.ts";

/** True when running as root (integration tests need it). */
export const isRoot = Deno.uid() === 0;

/** The reason integration tests give when skipped. */
export const NEEDS_ROOT = !isRoot;

/** A unique run prefix, `cnmt-<6 hex>`, for everything one test creates. */
export function testPrefix(): string {
  return `cnmt-${randomHex(6)}`;
}

/** Runs a command; returns code and output (never throws on exit code). */
export function sh(
  argv: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec(argv, { stdin: opts.stdin, timeoutMs: opts.timeoutMs ?? 15_000 });
}

/** Runs a command and throws with its stderr when it fails. */
export async function must(argv: string[], stdin?: string): Promise<string> {
  const r = await sh(argv, { stdin });
  if (r.code !== 0) throw new Error(`${argv.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Creates a throwaway namespace with loopback up. */
export async function addNetns(name: string): Promise<void> {
  await must(["ip", "netns", "add", name]);
  await must(["ip", "-n", name, "link", "set", "lo", "up"]);
}

/** Deletes every namespace whose name starts with `prefix` (and its /etc/netns dir). */
export async function removeNetnsByPrefix(prefix: string): Promise<void> {
  for (const name of await listNetns()) {
    if (!name.startsWith(prefix)) continue;
    const pids = await sh(["ip", "netns", "pids", name]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await sh(["ip", "netns", "del", name]);
    await Deno.remove(`/etc/netns/${name}`, { recursive: true }).catch(() => {});
  }
}

/** Names under /run/netns. */
export async function listNetns(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir("/run/netns")) names.push(e.name);
  } catch { /* none */ }
  return names.sort();
}

/** One ICMP echo from a namespace; true when answered. */
export async function ping(netns: string, ip: string, timeoutS = 1): Promise<boolean> {
  const r = await sh(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", String(timeoutS), ip]);
  return r.code === 0;
}

/**
 * One TCP connection or UDP datagram from `fromNs` to `ip:port`, answered with `hello` by a
 * one-shot socat responder in `toNs`; true when the reply arrives.
 */
async function reach(
  proto: "tcp" | "udp",
  fromNs: string,
  toNs: string,
  ip: string,
  port: number,
  timeoutS: number,
): Promise<boolean> {
  const listen = proto === "tcp"
    ? `TCP-LISTEN:${port},reuseaddr`
    : `UDP-RECVFROM:${port},reuseaddr`;
  const server = new Deno.Command("ip", {
    args: ["netns", "exec", toNs, "socat", "-T", "3", listen, "SYSTEM:echo hello"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    // poll until the listener is up (bounded), never a bare sleep
    const ssFlags = proto === "tcp" ? "-Hltn" : "-Hlun";
    for (let i = 0; i < 50; i++) {
      const ss = await sh(["ip", "netns", "exec", toNs, "ss", ssFlags, `sport = :${port}`]);
      if (ss.stdout.trim()) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const client = proto === "tcp"
      ? ["-T", String(timeoutS), `TCP:${ip}:${port},connect-timeout=${timeoutS}`, "-"]
      : ["-T", String(timeoutS), "-", `UDP:${ip}:${port}`];
    const r = await sh(["ip", "netns", "exec", fromNs, "socat", ...client], {
      stdin: proto === "tcp" ? "" : "ping\n",
    });
    return r.stdout.includes("hello");
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited */ }
    await server.status;
  }
}

/** A TCP connection from `fromNs` to `ip:port` (a responder in `toNs`); true when answered. */
export function tcpReach(
  fromNs: string,
  toNs: string,
  ip: string,
  port: number,
  timeoutS = 1,
): Promise<boolean> {
  return reach("tcp", fromNs, toNs, ip, port, timeoutS);
}

/** One UDP datagram from `fromNs` to `ip:port` (a responder in `toNs`); true when answered. */
export function udpReach(
  fromNs: string,
  toNs: string,
  ip: string,
  port: number,
  timeoutS = 1,
): Promise<boolean> {
  return reach("udp", fromNs, toNs, ip, port, timeoutS);
}

/** What of ours is in a host namespace: links other than lo, and nft tables. */
export async function hostResidue(hostNetns: string): Promise<string[]> {
  const out: string[] = [];
  const links = JSON.parse(await must(["ip", "-n", hostNetns, "-j", "link", "show"])) as {
    ifname: string;
  }[];
  for (const l of links) if (l.ifname !== "lo") out.push(`link ${l.ifname}`);
  const tables = await must(["ip", "netns", "exec", hostNetns, "nft", "list", "tables"]);
  for (const t of tables.split("\n").filter(Boolean)) out.push(t.trim());
  return out;
}

/**
 * {@linkcode hostResidue} once it is empty, or as it is after `deadlineMs`: a removed
 * sandbox's veths go with its namespace, which the kernel cleans up asynchronously (and
 * Kernel.deleteLinkLater in the background), so the host namespace is empty again shortly
 * after the call, not at its return.
 */
export async function settledHostResidue(hostNetns: string, deadlineMs = 2000): Promise<string[]> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const left = await hostResidue(hostNetns);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Namespaces and /etc/netns entries whose names start with `prefix`, except `keep`. */
export async function prefixResidue(prefix: string, keep: string[] = []): Promise<string[]> {
  const out = (await listNetns()).filter((n) => n.startsWith(prefix) && !keep.includes(n))
    .map((n) => `netns ${n}`);
  try {
    for await (const e of Deno.readDir("/etc/netns")) {
      if (e.name.startsWith(prefix) && !keep.includes(e.name)) out.push(`/etc/netns/${e.name}`);
    }
  } catch { /* no /etc/netns */ }
  return out;
}

/**
 * A throwaway host namespace `host` linked to an "outside" namespace `out` (documentation
 * range 198.51.100.0/24: the host is .1 on out0, the outside .2 on eth0), the outside
 * routing each of `routes` through the host.
 */
export async function addHostWithOutside(
  host: string,
  out: string,
  routes: string[] = [],
): Promise<void> {
  await addNetns(host);
  await addNetns(out);
  await must([
    "ip",
    "-n",
    host,
    "link",
    "add",
    "out0",
    "type",
    "veth",
    "peer",
    "netns",
    out,
    "name",
    "eth0",
  ]);
  await must(
    ["ip", "-n", host, "-batch", "-"],
    "addr add 198.51.100.1/24 dev out0\nlink set out0 up\n",
  );
  await must(
    ["ip", "-n", out, "-batch", "-"],
    "addr add 198.51.100.2/24 dev eth0\nlink set eth0 up\n" +
      routes.map((r) => `route add ${r} via 198.51.100.1\n`).join(""),
  );
}
