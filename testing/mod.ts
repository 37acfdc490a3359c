/**
 * Helpers for the project's own tests: root detection, unique throwaway names, a throwaway
 * host namespace, probes run inside a namespace, and a leak audit. Test-only code.
 * @module
 */
import { randomHex } from "../impl/model/names.ts";

/** True when running as root (integration tests need it). */
export const isRoot = Deno.uid() === 0;

/** The reason integration tests give when skipped. */
export const NEEDS_ROOT = !isRoot;

/** A unique run prefix, `cnmt-<6 hex>`, for everything one test creates. */
export function testPrefix(): string {
  return `cnmt-${randomHex(6)}`;
}

/** Runs a command; returns code and output (never throws on exit code). */
export async function sh(
  argv: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
  });
  const child = cmd.spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
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
 * A TCP connection from `fromNs` to `ip:port`, where a one-shot listener in `toNs` answers
 * with `hello`; true when the reply arrives.
 */
export async function tcpReach(
  fromNs: string,
  toNs: string,
  ip: string,
  port: number,
  timeoutS = 1,
): Promise<boolean> {
  const server = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      toNs,
      "socat",
      "-T",
      "3",
      `TCP-LISTEN:${port},reuseaddr`,
      "SYSTEM:echo hello",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    // poll until the listener is up (bounded), never a bare sleep
    for (let i = 0; i < 50; i++) {
      const ss = await sh(["ip", "netns", "exec", toNs, "ss", "-Hltn", `sport = :${port}`]);
      if (ss.stdout.trim()) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await sh([
      "ip",
      "netns",
      "exec",
      fromNs,
      "socat",
      "-T",
      String(timeoutS),
      `TCP:${ip}:${port},connect-timeout=${timeoutS}`,
      "-",
    ], { stdin: "" });
    return r.stdout.includes("hello");
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited */ }
    await server.status;
  }
}

/** One UDP datagram from `fromNs` to `ip:port`, answered by a one-shot responder in `toNs`. */
export async function udpReach(
  fromNs: string,
  toNs: string,
  ip: string,
  port: number,
  timeoutS = 1,
): Promise<boolean> {
  const server = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      toNs,
      "socat",
      "-T",
      "3",
      `UDP-RECVFROM:${port},reuseaddr`,
      "SYSTEM:echo hello",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (let i = 0; i < 50; i++) {
      const ss = await sh(["ip", "netns", "exec", toNs, "ss", "-Hlun", `sport = :${port}`]);
      if (ss.stdout.trim()) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await sh([
      "ip",
      "netns",
      "exec",
      fromNs,
      "socat",
      "-T",
      String(timeoutS),
      "-",
      `UDP:${ip}:${port}`,
    ], { stdin: "ping\n" });
    return r.stdout.includes("hello");
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited */ }
    await server.status;
  }
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
