/**
 * Probes that run inside a namespace (`nsenter --net=PATH ...`): ICMP, TCP, UDP and HTTP,
 * a reachability matrix, and a dump of a namespace's network state for failure reports.
 * Every probe returns a paste-able reproducer and never throws on a network failure.
 * @module
 */
import { commandLine, nsArgv, pollUntil, runInNs } from "./run.ts";

export { pollUntil };
export type { PollOptions } from "./run.ts";

/** Default timeout of negative-friendly TCP, ICMP and HTTP probes. */
export const DEFAULT_TIMEOUT_MS = 1000;
/** Default timeout of UDP probes. */
export const DEFAULT_UDP_TIMEOUT_MS = 700;

/** Extra time a probe process gets beyond its own timeout before it is killed. */
const GRACE_MS = 400;

/** How a probe went. */
export interface ProbeResult {
  /** True when the target answered (a reply, an echo reply, an HTTP 2xx). */
  ok: boolean;
  /** The responder's identity (its reply, trimmed), when one answered. */
  identity?: string;
  /** What happened, in words (`reply "b" in 3 ms`, `connection refused`, `timeout`). */
  detail: string;
  /** A command line that reproduces the probe (`nsenter --net=... ping -c1 -W1 10.1.0.3`). */
  command: string;
  /** Why it failed, when it did. */
  failure?: "timeout" | "refused" | "unreachable" | "error";
}

/** True when `ip` is an IPv6 literal. */
export function isIpv6(ip: string): boolean {
  return ip.includes(":");
}

function seconds(ms: number): string {
  const s = Math.max(ms, 1) / 1000;
  return String(Number(s.toFixed(3)));
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`invalid port ${port}`);
  }
}

function classify(stderr: string): ProbeResult["failure"] {
  const s = stderr.toLowerCase();
  if (s.includes("refused")) return "refused";
  if (s.includes("unreachable") || s.includes("no route")) return "unreachable";
  if (s.includes("timed out") || s.includes("timeout")) return "timeout";
  return "error";
}

function lastLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? "";
}

/** Options of {@linkcode probeIcmp}. */
export interface IcmpOptions {
  /** Wait for the echo reply this long (default 1000 ms). */
  timeoutMs?: number;
  /** Payload size (`ping -s`). */
  size?: number;
  /** Set DF / forbid fragmentation (`ping -M do`). */
  dontFragment?: boolean;
}

/**
 * One ICMP echo from namespace `fromNs` to `ip` (`ping -c1 -W`; `-6` for IPv6 literals).
 * `ok` when the reply came back in time.
 */
export async function probeIcmp(
  fromNs: string,
  ip: string,
  opts: IcmpOptions = {},
): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const argv = ["ping", ...(isIpv6(ip) ? ["-6"] : []), "-n", "-c1", "-W", seconds(timeoutMs)];
  if (opts.size !== undefined) {
    if (!Number.isInteger(opts.size) || opts.size < 0 || opts.size > 65507) {
      throw new RangeError(`invalid ping size ${opts.size}`);
    }
    argv.push("-s", String(opts.size));
  }
  if (opts.dontFragment) argv.push("-M", "do");
  argv.push(ip);
  const command = commandLine(nsArgv(fromNs, argv));
  const out = await runInNs(fromNs, argv, { deadlineMs: timeoutMs + GRACE_MS });
  if (out.code === 0) {
    const reply = out.stdout.split("\n").find((l) => l.includes("bytes from"))?.trim() ?? "reply";
    return { ok: true, detail: `${reply} (${out.ms.toFixed(0)} ms)`, command };
  }
  if (out.timedOut) return { ok: false, detail: "timeout", command, failure: "timeout" };
  const err = lastLine(out.stderr);
  if (err) return { ok: false, detail: err, command, failure: classify(err) };
  const stats = out.stdout.split("\n").find((l) => l.includes("packets transmitted"))?.trim();
  return {
    ok: false,
    detail: `no reply: ${stats ?? `exit ${out.code}`}`,
    command,
    failure: "timeout",
  };
}

/** Options of {@linkcode probeTcp}, {@linkcode probeUdp} and {@linkcode probeHttp}. */
export interface ProbeOptions {
  /** Give up after this long (default 1000 ms; 700 ms for UDP). */
  timeoutMs?: number;
}

function socatTarget(proto: "TCP" | "UDP", ip: string, port: number): string {
  if (isIpv6(ip)) return `${proto}6:[${ip.replace(/^\[|\]$/g, "")}]:${port}`;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return `${proto}4:${ip}:${port}`;
  return `${proto}:${ip}:${port}`;
}

function replyResult(
  out: { stdout: string; stderr: string; timedOut: boolean; ms: number; code: number },
  command: string,
): ProbeResult {
  const firstLine = out.stdout.split("\n")[0];
  if (out.stdout.length > 0) {
    const identity = firstLine.trim();
    return {
      ok: true,
      identity,
      detail: `reply "${identity}" in ${out.ms.toFixed(0)} ms`,
      command,
    };
  }
  if (out.timedOut) return { ok: false, detail: "timeout", command, failure: "timeout" };
  const err = lastLine(out.stderr);
  if (err) {
    const failure = classify(err);
    return { ok: false, detail: `${failure}: ${err}`, command, failure };
  }
  return { ok: false, detail: "no reply", command, failure: "timeout" };
}

/**
 * Connects from `fromNs` to `ip:port` over TCP and reads the reply (socat). `ok` when a
 * reply arrived; `identity` is the first line of it, trimmed.
 */
export async function probeTcp(
  fromNs: string,
  ip: string,
  port: number,
  opts: ProbeOptions = {},
): Promise<ProbeResult> {
  checkPort(port);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const t = seconds(timeoutMs);
  const argv = [
    "socat",
    "-T",
    t,
    "-u",
    `${socatTarget("TCP", ip, port)},connect-timeout=${t}`,
    "STDOUT",
  ];
  const command = commandLine(nsArgv(fromNs, argv));
  const out = await runInNs(fromNs, argv, { deadlineMs: timeoutMs + GRACE_MS, untilLine: true });
  return replyResult(out, command);
}

/**
 * Sends one datagram from `fromNs` to `ip:port` over UDP and waits for the reply (socat).
 * `ok` when a reply arrived; `identity` is its first line, trimmed. An ICMP port
 * unreachable ends the probe early as `refused`.
 */
export async function probeUdp(
  fromNs: string,
  ip: string,
  port: number,
  opts: ProbeOptions = {},
): Promise<ProbeResult> {
  checkPort(port);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_UDP_TIMEOUT_MS;
  const t = seconds(timeoutMs);
  const argv = ["socat", "-T", t, "-t", t, "-", socatTarget("UDP", ip, port)];
  const command = `echo probe | ${commandLine(nsArgv(fromNs, argv))}`;
  const out = await runInNs(fromNs, argv, {
    stdin: "probe\n",
    deadlineMs: timeoutMs + GRACE_MS,
    untilLine: true,
  });
  return replyResult(out, command);
}

const STATUS_MARK = "\n__cnm_http_status__:";

/** A {@linkcode ProbeResult} of an HTTP probe, with the status code when one came back. */
export interface HttpProbeResult extends ProbeResult {
  status?: number;
}

/**
 * Fetches `url` from inside `fromNs` (curl, no proxy). `ok` on a 2xx answer; `identity`
 * is the body, trimmed. IPv6 literals go in brackets: `http://[fd00::2]:80/`.
 */
export async function probeHttp(
  fromNs: string,
  url: string,
  opts: ProbeOptions = {},
): Promise<HttpProbeResult> {
  if (!/^https?:\/\/[^\s]+$/.test(url)) throw new TypeError(`invalid URL ${JSON.stringify(url)}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const t = seconds(timeoutMs);
  const base = ["curl", "-sS", "-g", "--noproxy", "*", "--max-time", t, "--connect-timeout", t];
  const argv = [...base, "-w", `${STATUS_MARK}%{http_code}`, url];
  const command = commandLine(nsArgv(fromNs, [...base, url]));
  const out = await runInNs(fromNs, argv, { deadlineMs: timeoutMs + GRACE_MS });
  const at = out.stdout.lastIndexOf(STATUS_MARK);
  const status = at >= 0 ? Number(out.stdout.slice(at + STATUS_MARK.length).trim()) : 0;
  if (status > 0) {
    const body = out.stdout.slice(0, at);
    const identity = body.trim();
    const ok = status >= 200 && status < 300;
    return {
      ok,
      identity,
      status,
      detail: `HTTP ${status} "${identity.slice(0, 80)}" in ${out.ms.toFixed(0)} ms`,
      command,
      ...(ok ? {} : { failure: "error" as const }),
    };
  }
  if (out.timedOut) return { ok: false, detail: "timeout", command, failure: "timeout" };
  const err = lastLine(out.stderr) || `curl exit ${out.code}`;
  // curl: 7 = could not connect, 28 = timeout
  const failure = out.code === 28 ? "timeout" : classify(err);
  return { ok: false, detail: `${failure}: ${err}`, command, failure };
}

/** Options of {@linkcode reachMatrix}. */
export interface MatrixOptions {
  /** Per-probe timeout (default 1000 ms). */
  timeoutMs?: number;
  /** Probes run at once (default 16). */
  concurrency?: number;
}

/**
 * ICMP reachability from every source namespace to every target address, probed in
 * parallel (bounded concurrency). `result[i][j]` is true when `sources[i]` reached
 * `targets[j]`.
 */
export async function reachMatrix(
  sources: { label: string; ns: string }[],
  targets: { label: string; ip: string }[],
  opts: MatrixOptions = {},
): Promise<boolean[][]> {
  const matrix = sources.map(() => targets.map(() => false));
  const jobs: [number, number][] = [];
  sources.forEach((_, i) => targets.forEach((_, j) => jobs.push([i, j])));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const [i, j] = jobs[next++];
      const r = await probeIcmp(sources[i].ns, targets[j].ip, { timeoutMs });
      matrix[i][j] = r.ok;
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? 16, jobs.length));
  await Promise.all(Array.from({ length: n }, worker));
  return matrix;
}

/**
 * The network state of a namespace as text, for failure reports: `ip -br addr`,
 * `ip route`, `ip -6 route` and `nft list ruleset`, each under a `## command` heading.
 * Errors are reported inline, never thrown.
 */
export async function debugState(ns: string): Promise<string> {
  const sections: string[][] = [
    ["ip", "-br", "addr"],
    ["ip", "route"],
    ["ip", "-6", "route"],
    ["nft", "list", "ruleset"],
  ];
  const parts = await Promise.all(sections.map(async (argv) => {
    let body: string;
    try {
      const out = await runInNs(ns, argv, { deadlineMs: 5000 });
      body = out.code === 0
        ? out.stdout.trimEnd()
        : `(exit ${out.code}${out.timedOut ? ", timed out" : ""}) ${out.stderr.trim()}`;
    } catch (e) {
      body = `(error) ${e instanceof Error ? e.message : String(e)}`;
    }
    return `## ${argv.join(" ")}\n${body || "(empty)"}`;
  }));
  return `# netns ${ns}\n${parts.join("\n")}\n`;
}
