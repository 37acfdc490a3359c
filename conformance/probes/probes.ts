/**
 * Probes that run inside a namespace (`nsenter --net=PATH ...`): ICMP, TCP, UDP and HTTP,
 * a reachability matrix, and a dump of a namespace's network state for failure reports.
 * Every probe returns a paste-able reproducer and never throws on a network failure.
 *
 * Probes can carry a witness token (see `witness.ts`): an ICMP payload pattern
 * (`ping -p`), a TCP source port, a UDP payload. A probe that could not run at all
 * (namespace missing, nsenter failing, a usage error of ping/socat/curl) comes back as
 * `failure: "error"`, distinct from the network outcomes `timeout`, `refused` and
 * `unreachable`.
 * @module
 */
import {
  commandLine,
  nsArgv,
  pollUntil,
  runInNs,
  type RunOptions,
  type RunOutcome,
} from "./run.ts";
import { PAYLOAD_PATTERN } from "./witness.ts";

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
  /**
   * Why it failed, when it did: `timeout` (no answer), `refused` (a reset or an ICMP port
   * unreachable), `unreachable` (no route, an ICMP unreachable/prohibited, a local filter
   * refusing the send), `status` (an HTTP answer other than 2xx) or `error` (the probe
   * could not run at all: the namespace is missing, nsenter failed, a usage error).
   */
  failure?: "timeout" | "refused" | "unreachable" | "status" | "error";
  /** ICMP: echo replies that came back (of `count` sent). */
  replies?: number;
  /** True for a probe that does not wait for an answer ({@linkcode burstUdp}). */
  oneWay?: boolean;
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

/**
 * The network outcome an error text names: `refused`, `unreachable` (including a local
 * filter refusing a send with EPERM), `timeout`; anything else is `error`.
 */
export function classifyError(text: string): ProbeResult["failure"] {
  const s = text.toLowerCase();
  if (s.includes("refused")) return "refused";
  if (
    s.includes("unreachable") || s.includes("no route") || s.includes("prohibited") ||
    /\b(sendmsg|sendto|write|connect)\b.*operation not permitted/.test(s) ||
    // a don't-fragment packet above the path's MTU: stopped on the way (locally or by an
    // ICMP "fragmentation needed"), a network outcome like any other
    s.includes("message too long") || s.includes("frag needed")
  ) return "unreachable";
  if (s.includes("timed out") || s.includes("timeout")) return "timeout";
  return "error";
}

/**
 * Why a probe process could not run at all, or undefined when it ran: nsenter's own
 * complaint (`nsenter: cannot open /run/netns/x: ...`, `nsenter: failed to execute ...`)
 * or a command-not-found exit (126/127).
 */
export function harnessProblem(out: { stderr: string; code: number }): string | undefined {
  const lines = out.stderr.split("\n").map((l) => l.trim()).filter(Boolean);
  const nsenter = lines.find((l) => l.startsWith("nsenter:"));
  if (nsenter) return nsenter;
  if (out.code === 126 || out.code === 127) return lines.at(-1) ?? `exit ${out.code}`;
  return undefined;
}

/**
 * Runs a probe process. One that could not run at all (cannot be spawned, nsenter
 * failed, command not found) comes back as a finished `failure: "error"` result.
 */
async function run(
  ns: string,
  argv: string[],
  opts: RunOptions,
  command: string,
): Promise<RunOutcome | ProbeResult> {
  let out: RunOutcome;
  try {
    out = await runInNs(ns, argv, opts);
  } catch (e) {
    const why = `cannot start: ${e instanceof Error ? e.message : String(e)}`;
    return { ok: false, detail: `error: ${why}`, command, failure: "error" };
  }
  const why = harnessProblem(out);
  if (why) return { ok: false, detail: `error: ${why}`, command, failure: "error" };
  return out;
}

function lastLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? "";
}

/** Options of {@linkcode probeIcmp}. */
export interface IcmpOptions {
  /** Wait for the echo reply this long (default 1000 ms); with `count`, after the last. */
  timeoutMs?: number;
  /** Payload size (`ping -s`); at least 24 with a `pattern`. */
  size?: number;
  /** Set DF / forbid fragmentation (`ping -M do`). */
  dontFragment?: boolean;
  /** Payload pattern (`ping -p`), e.g. a witness token: 2-32 hex digits, even. */
  pattern?: string;
  /** Echo requests to send (`ping -c`, default 1); `ok` when at least one reply came. */
  count?: number;
  /** Pause between requests (`ping -i`, default ping's 1 s; at least 2 ms). */
  intervalMs?: number;
}

const ICMP_ERROR =
  /^From (\S+)(?: icmp_seq=\d+)? (.*(?:Unreachable|Prohibited|filtered|exceeded).*)$/im;

/**
 * ICMP echo from namespace `fromNs` to `ip` (`ping -c1 -W`; `-6` for IPv6 literals), or
 * a burst with `count` and `intervalMs` (`ping -c N -i 0.002`). `ok` when at least one
 * reply came back in time; `replies` counts them.
 */
export async function probeIcmp(
  fromNs: string,
  ip: string,
  opts: IcmpOptions = {},
): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const count = opts.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 10000) {
    throw new RangeError(`invalid ping count ${count}`);
  }
  const argv = ["ping", ...(isIpv6(ip) ? ["-6"] : []), "-n", `-c${count}`];
  let spread = 0;
  if (opts.intervalMs !== undefined) {
    if (!(opts.intervalMs >= 2) || !Number.isFinite(opts.intervalMs)) {
      throw new RangeError(`invalid ping interval ${opts.intervalMs} ms (at least 2)`);
    }
    argv.push("-i", seconds(opts.intervalMs));
    spread = (count - 1) * opts.intervalMs;
  } else if (count > 1) {
    spread = (count - 1) * 1000;
  }
  argv.push("-W", seconds(timeoutMs));
  if (opts.size !== undefined) {
    if (!Number.isInteger(opts.size) || opts.size < 0 || opts.size > 65507) {
      throw new RangeError(`invalid ping size ${opts.size}`);
    }
    if (opts.pattern !== undefined && opts.size < 24) {
      throw new RangeError(`ping size ${opts.size} leaves no room for a pattern (at least 24)`);
    }
    argv.push("-s", String(opts.size));
  }
  if (opts.dontFragment) argv.push("-M", "do");
  if (opts.pattern !== undefined) {
    if (!/^(?:[0-9a-fA-F]{2}){1,16}$/.test(opts.pattern)) {
      throw new TypeError(`invalid ping pattern ${JSON.stringify(opts.pattern)}`);
    }
    argv.push("-p", opts.pattern);
  }
  argv.push(ip);
  const command = commandLine(nsArgv(fromNs, argv));
  const out = await run(fromNs, argv, { deadlineMs: timeoutMs + spread + GRACE_MS }, command);
  if ("ok" in out) return out;
  const stats = /(\d+) packets transmitted, (\d+) received/.exec(out.stdout);
  const replies = stats
    ? Number(stats[2])
    : out.stdout.split("\n").filter((l) => l.includes("bytes from")).length;
  if (replies > 0) {
    const reply = out.stdout.split("\n").find((l) => l.includes("bytes from"))?.trim() ?? "reply";
    const what = count === 1 ? reply : `${replies}/${count} replies, first: ${reply}`;
    return { ok: true, detail: `${what} (${out.ms.toFixed(0)} ms)`, command, replies };
  }
  if (out.timedOut) {
    return { ok: false, detail: "timeout", command, failure: "timeout", replies };
  }
  const icmpError = ICMP_ERROR.exec(out.stdout);
  if (icmpError) {
    return {
      ok: false,
      detail: `unreachable: ${icmpError[2].trim()} from ${icmpError[1]}`,
      command,
      failure: "unreachable",
      replies,
    };
  }
  const err = lastLine(out.stderr);
  if (err) return { ok: false, detail: err, command, failure: classifyError(err), replies };
  return {
    ok: false,
    detail: `no reply: ${stats?.[0] ?? `exit ${out.code}`}`,
    command,
    failure: "timeout",
    replies,
  };
}

/** Options of {@linkcode probeTcp}, {@linkcode probeUdp} and {@linkcode probeHttp}. */
export interface ProbeOptions {
  /** Give up after this long (default 1000 ms; 700 ms for UDP). */
  timeoutMs?: number;
}

/** Options of {@linkcode probeTcp}. */
export interface TcpOptions extends ProbeOptions {
  /** Bind this source port (socat `sourceport=N,reuseaddr`), e.g. a witness token. */
  sourcePort?: number;
  /**
   * Send this text (and a newline) once connected: a token that survives a userland
   * proxy. Without it nothing is sent.
   */
  payload?: string;
}

/** Options of {@linkcode probeUdp}. */
export interface UdpOptions extends ProbeOptions {
  /** The datagram's text (a newline is added), e.g. a witness token; default `probe`. */
  payload?: string;
  /** Bind this source port (socat `sourceport=N,reuseaddr`). */
  sourcePort?: number;
}

function checkPayload(payload: string | undefined): void {
  if (payload !== undefined && !PAYLOAD_PATTERN.test(payload)) {
    throw new TypeError(
      `invalid probe payload ${JSON.stringify(payload)}: use 1-64 printable ASCII characters`,
    );
  }
}

function sourcePortOption(port: number | undefined): string {
  if (port === undefined) return "";
  checkPort(port);
  return `,sourceport=${port},reuseaddr`;
}

function socatTarget(proto: "TCP" | "UDP", ip: string, port: number): string {
  if (isIpv6(ip)) return `${proto}6:[${ip.replace(/^\[|\]$/g, "")}]:${port}`;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return `${proto}4:${ip}:${port}`;
  return `${proto}:${ip}:${port}`;
}

function replyResult(out: RunOutcome | ProbeResult, command: string): ProbeResult {
  if ("ok" in out) return out;
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
    const failure = classifyError(err);
    return { ok: false, detail: `${failure}: ${err}`, command, failure };
  }
  return { ok: false, detail: "no reply", command, failure: "timeout" };
}

/**
 * Connects from `fromNs` to `ip:port` over TCP and reads the reply (socat). `ok` when a
 * reply arrived; `identity` is the first line of it, trimmed. `sourcePort` binds the
 * source port (a witness token); `payload` is sent once connected.
 */
export async function probeTcp(
  fromNs: string,
  ip: string,
  port: number,
  opts: TcpOptions = {},
): Promise<ProbeResult> {
  checkPort(port);
  checkPayload(opts.payload);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const t = seconds(timeoutMs);
  const target = `${socatTarget("TCP", ip, port)},connect-timeout=${t}${
    sourcePortOption(opts.sourcePort)
  }`;
  const runOpts = { deadlineMs: timeoutMs + GRACE_MS, untilLine: true };
  if (opts.payload === undefined) {
    const argv = ["socat", "-T", t, "-u", target, "STDOUT"];
    const command = commandLine(nsArgv(fromNs, argv));
    return replyResult(await run(fromNs, argv, runOpts, command), command);
  }
  const argv = ["socat", "-T", t, "-t", t, "-", target];
  const command = `printf '%s\\n' ${shellArg(opts.payload)} | ${commandLine(nsArgv(fromNs, argv))}`;
  const out = await run(fromNs, argv, { ...runOpts, stdin: `${opts.payload}\n` }, command);
  return replyResult(out, command);
}

function shellArg(text: string): string {
  return commandLine([text]);
}

/**
 * Sends one datagram from `fromNs` to `ip:port` over UDP and waits for the reply (socat).
 * `ok` when a reply arrived; `identity` is its first line, trimmed. An ICMP port
 * unreachable ends the probe early as `refused`. The datagram is `payload` and a newline
 * (default `probe`), from `sourcePort` when given.
 */
export async function probeUdp(
  fromNs: string,
  ip: string,
  port: number,
  opts: UdpOptions = {},
): Promise<ProbeResult> {
  checkPort(port);
  checkPayload(opts.payload);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_UDP_TIMEOUT_MS;
  const t = seconds(timeoutMs);
  const target = `${socatTarget("UDP", ip, port)}${sourcePortOption(opts.sourcePort)}`;
  const argv = ["socat", "-T", t, "-t", t, "-", target];
  const payload = opts.payload ?? "probe";
  const feed = opts.payload === undefined ? "echo probe" : `printf '%s\\n' ${shellArg(payload)}`;
  const command = `${feed} | ${commandLine(nsArgv(fromNs, argv))}`;
  const out = await run(fromNs, argv, {
    stdin: `${payload}\n`,
    deadlineMs: timeoutMs + GRACE_MS,
    untilLine: true,
  }, command);
  return replyResult(out, command);
}

/** A {@linkcode ProbeResult} of {@linkcode burstUdp}: `sent` counts datagrams handed over. */
export interface BurstResult extends ProbeResult {
  sent: number;
}

/** Options of {@linkcode burstUdp}. */
export interface BurstOptions {
  /** Kill the sender after this long (default 1000 ms + 1 ms per datagram). */
  timeoutMs?: number;
}

/**
 * The fixed script of {@linkcode burstUdp}: `$1` = address, `$2` = port, the rest are
 * payloads. Each payload is written to its own `/dev/udp` socket (bash opens a fresh one
 * per redirection, so each datagram has its own source port); prints how many went out.
 */
const BURST_SCRIPT = 'ip=$1 port=$2; shift 2; n=0; for p in "$@"; do ' +
  `printf '%s' "$p" >"/dev/udp/$ip/$port" && n=$((n+1)); done; echo "sent $n"`;

const CONNECTS_SCRIPT = "ip=$1 port=$2 n=$3; for ((i = 0; i < n; i++)); do " +
  'if exec 3<>"/dev/tcp/$ip/$port"; then ' +
  'if IFS= read -r -t 2 id <&3; then echo "= $id"; else echo "-"; fi; exec 3<&-; ' +
  'else echo "-"; fi; done 2>/dev/null';

/**
 * `count` fresh TCP connections from `fromNs` to `ip:port`, one after another from ONE
 * process (bash's /dev/tcp with a fixed script; the address is an argument), each reading
 * the responder's first line: the identities, `undefined` for a connection that got no
 * answer. Measured: a process per connection (nsenter + socat) made the load-balancing
 * profile CPU-bound on two cores; one process for many costs a fork-free loop.
 */
export async function tcpIdentities(
  fromNs: string,
  ip: string,
  port: number,
  count: number,
  opts: { deadlineMs?: number } = {},
): Promise<(string | undefined)[]> {
  checkPort(port);
  if (!Number.isInteger(count) || count < 1 || count > 10000) {
    throw new RangeError(`tcpIdentities: count ${count} (1-10000)`);
  }
  if (!/^[0-9A-Fa-f.:]+$/.test(ip)) throw new TypeError(`tcpIdentities: invalid address ${ip}`);
  const argv = ["bash", "-c", CONNECTS_SCRIPT, "cnm-connects", ip, String(port), String(count)];
  const out = await runInNs(fromNs, argv, { deadlineMs: opts.deadlineMs ?? 2500 * count });
  const why = harnessProblem(out);
  if (why) throw new Error(`tcpIdentities: ${why}`);
  const lines = out.stdout.split("\n").filter(Boolean);
  const ids = lines.map((l) => (l.startsWith("= ") ? l.slice(2).trim() : undefined));
  while (ids.length < count) ids.push(undefined);
  return ids.slice(0, count);
}

/**
 * Sends one datagram per payload from `fromNs` to `ip:port`, from ONE process (bash with
 * a fixed script; the payloads are its arguments), without waiting for replies: the
 * target's witness says which arrived. `ok` when every datagram was handed to the kernel;
 * `oneWay` is set.
 */
export async function burstUdp(
  fromNs: string,
  ip: string,
  port: number,
  payloads: string[],
  opts: BurstOptions = {},
): Promise<BurstResult> {
  checkPort(port);
  if (payloads.length < 1 || payloads.length > 10000) {
    throw new RangeError(`burstUdp: ${payloads.length} payloads (1-10000)`);
  }
  for (const p of payloads) checkPayload(p);
  const host = ip.replace(/^\[|\]$/g, "");
  if (!/^[0-9A-Fa-f.:]+$/.test(host)) throw new TypeError(`burstUdp: invalid address ${ip}`);
  const argv = ["bash", "-c", BURST_SCRIPT, "cnm-burst", host, String(port), ...payloads];
  const command = commandLine(nsArgv(fromNs, argv));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS + payloads.length;
  const out = await run(fromNs, argv, { deadlineMs: timeoutMs }, command);
  if ("ok" in out) return { ...out, sent: 0, oneWay: true };
  const sent = Number(/sent (\d+)/.exec(out.stdout)?.[1] ?? 0);
  const total = payloads.length;
  if (sent === total) {
    return {
      ok: true,
      detail: `sent ${sent} datagrams in ${out.ms.toFixed(0)} ms`,
      command,
      sent,
      oneWay: true,
    };
  }
  const err = lastLine(out.stderr);
  const failure = out.timedOut ? "timeout" : err ? classifyError(err) : "error";
  return {
    ok: false,
    detail: `sent ${sent}/${total}${out.timedOut ? " (killed at the deadline)" : ""}${
      err ? `: ${err}` : ""
    }`,
    command,
    failure,
    sent,
    oneWay: true,
  };
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
  const out = await run(fromNs, argv, { deadlineMs: timeoutMs + GRACE_MS }, command);
  if ("ok" in out) return out;
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
      ...(ok ? {} : { failure: "status" as const }),
    };
  }
  if (out.timedOut) return { ok: false, detail: "timeout", command, failure: "timeout" };
  const err = lastLine(out.stderr) || `curl exit ${out.code}`;
  // curl: 7 = could not connect, 28 = timeout
  const failure = out.code === 28 ? "timeout" : classifyError(err);
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
