/**
 * TEST ONLY: throwaway namespaces for the probes' own root tests (probes_test.ts,
 * witness_test.ts): two namespaces joined by a veth pair, and their removal by prefix.
 * @module
 */
import { probeIcmp } from "./probes.ts";
import { pollUntil, runCommand } from "./run.ts";

/** Runs argv; throws with its stderr when it fails. */
export async function must(argv: string[]): Promise<string> {
  const out = await runCommand(argv, { deadlineMs: 10_000 });
  if (out.code !== 0) throw new Error(`${argv.join(" ")} failed (${out.code}): ${out.stderr}`);
  return out.stdout;
}

/** Names under /run/netns. */
export async function netnsList(): Promise<string[]> {
  const out = await runCommand(["ip", "netns", "list"], { deadlineMs: 5000 });
  return out.stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
}

/** Pids of the processes in a named namespace. */
export async function pidsIn(ns: string): Promise<number[]> {
  const out = await runCommand(["ip", "netns", "pids", ns], { deadlineMs: 5000 });
  return out.stdout.split(/\s+/).filter(Boolean).map(Number);
}

/** Three random bytes as hex (unique prefixes). */
export function hex6(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Two namespaces `<prefix>-a` and `<prefix>-b` joined by a veth pair (created inside a, its
 * peer moved straight to b: the root namespace is never touched): a = `<v4>.1` and
 * `<v6>::1`, b = `.2` and `::2`; returns once b answers a over both families.
 */
export async function makePair(
  prefix: string,
  v4 = "10.250.0",
  v6 = "fd00:250:",
): Promise<{ a: string; b: string; pa: string; pb: string }> {
  const a = `${prefix}-a`;
  const b = `${prefix}-b`;
  for (const ns of [a, b]) {
    await must(["ip", "netns", "add", ns]);
    await must(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await must([
    "ip",
    "-n",
    a,
    "link",
    "add",
    "va",
    "type",
    "veth",
    "peer",
    "name",
    "vb",
    "netns",
    b,
  ]);
  await must(["ip", "-n", a, "addr", "add", `${v4}.1/24`, "dev", "va"]);
  await must(["ip", "-n", b, "addr", "add", `${v4}.2/24`, "dev", "vb"]);
  await must(["ip", "-n", a, "addr", "add", `${v6}:1/64`, "dev", "va", "nodad"]);
  await must(["ip", "-n", b, "addr", "add", `${v6}:2/64`, "dev", "vb", "nodad"]);
  await must(["ip", "-n", a, "link", "set", "va", "up"]);
  await must(["ip", "-n", b, "link", "set", "vb", "up"]);
  const pa = `/run/netns/${a}`;
  // links come up asynchronously (IPv6 later than IPv4): converge before testing
  for (const ip of [`${v4}.2`, `${v6}:2`]) {
    const up = await pollUntil(() => probeIcmp(pa, ip, { timeoutMs: 200 }), (r) => r.ok, {
      deadlineMs: 5000,
      intervalMs: 20,
    });
    if (!up.ok) throw new Error(`veth pair not up: ${up.value.command}: ${up.value.detail}`);
  }
  return { a, b, pa, pb: `/run/netns/${b}` };
}

/** Kills the processes in, and deletes, every namespace whose name starts with `prefix`. */
export async function removeByPrefix(prefix: string): Promise<void> {
  for (const ns of await netnsList()) {
    if (!ns.startsWith(prefix)) continue;
    for (const pid of await pidsIn(ns)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await runCommand(["ip", "netns", "del", ns], { deadlineMs: 5000 });
  }
}
