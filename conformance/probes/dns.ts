/**
 * The DNS probe: `dig` run inside a namespace, its output parsed into a status and the
 * answer data.
 * @module
 */
import { commandLine, nsArgv, runInNs } from "./run.ts";

/** Record types the probe asks for. */
export type DnsType = "A" | "AAAA" | "PTR" | "SRV";

/**
 * Outcome of a query: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED` (or another rcode dig
 * prints), `timeout` when no server answered in time, `error` when dig failed otherwise
 * (connection refused over TCP, network unreachable, bad arguments).
 */
export type DnsRcode =
  | "NOERROR"
  | "NXDOMAIN"
  | "SERVFAIL"
  | "REFUSED"
  | "timeout"
  | "error"
  | string;

/** What {@linkcode probeDns} observed. */
export interface DnsProbeResult {
  /** True when the name resolved: status NOERROR with at least one answer of the type. */
  ok: boolean;
  rcode: DnsRcode;
  /**
   * The data of the answers of the asked type, as dig prints it: addresses for A/AAAA,
   * fully qualified names with their trailing dot for PTR (`c1.net.`), and
   * `priority weight port target.` for SRV. CNAMEs that lead there are left out.
   */
  answers: string[];
  detail: string;
  command: string;
}

/** Options of {@linkcode probeDns}. */
export interface DnsOptions {
  /** Record type (default `A`). For `PTR`, `name` may be an address (`dig -x`). */
  type?: DnsType;
  /** Query over TCP (`+tcp`). */
  tcp?: boolean;
  /** Give up after this long; dig counts whole seconds, so at least 1000 ms (default). */
  timeoutMs?: number;
}

const NAME = /^[A-Za-z0-9_.:-]+$/;

/**
 * Parses dig's `+noall +answer +comments` output (stdout and stderr together): the status
 * of the header, the answers of `type`, and, when no answer came, why.
 */
export function parseDig(
  output: string,
  type: DnsType,
): { rcode: DnsRcode; answers: string[]; problem?: string } {
  let rcode: DnsRcode | undefined;
  let problem: string | undefined;
  let timedOut = false;
  let unreached = false;
  const answers: string[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const status = line.match(/->>HEADER<<-.*\bstatus:\s*([A-Za-z]+)/);
    if (status) {
      rcode = status[1].toUpperCase();
      continue;
    }
    if (
      /^;;.*(communications error|connection to .* failed|timed out|refused|unreachable)/i.test(
        line,
      )
    ) {
      problem ??= line.replace(/^;;\s*/, "");
      if (/timed out/i.test(line)) timedOut = true;
      continue;
    }
    if (/no servers could be reached/i.test(line)) {
      unreached = true;
      continue;
    }
    if (line.startsWith(";")) continue;
    // name ttl class type rdata...
    const fields = line.split(/\s+/);
    const classAt = fields.findIndex((f, i) => i > 0 && /^(IN|CH|HS)$/.test(f));
    if (classAt < 0 || classAt + 2 > fields.length) continue;
    if (fields[classAt + 1].toUpperCase() !== type) continue;
    answers.push(fields.slice(classAt + 2).join(" "));
  }
  if (rcode) return { rcode, answers };
  if (timedOut || (unreached && !problem)) {
    return { rcode: "timeout", answers: [], problem: problem ?? "no servers could be reached" };
  }
  return {
    rcode: "error",
    answers: [],
    problem: problem ?? (unreached ? "no servers could be reached" : undefined),
  };
}

/**
 * Asks `server` for `name` from inside `fromNs` with
 * `dig +tries=1 +time=N @server name TYPE [+tcp] +noall +answer +comments`.
 */
export async function probeDns(
  fromNs: string,
  server: string,
  name: string,
  opts: DnsOptions = {},
): Promise<DnsProbeResult> {
  const type = opts.type ?? "A";
  if (!NAME.test(name)) throw new TypeError(`invalid DNS name ${JSON.stringify(name)}`);
  if (!NAME.test(server)) throw new TypeError(`invalid DNS server ${JSON.stringify(server)}`);
  const timeoutMs = opts.timeoutMs ?? 1000;
  const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
  const isAddress = /^\d+\.\d+\.\d+\.\d+$/.test(name) || name.includes(":");
  const query = type === "PTR" && isAddress ? ["-x", name] : [name, type];
  const argv = [
    "dig",
    "+tries=1",
    `+time=${secs}`,
    `@${server}`,
    ...query,
    ...(opts.tcp ? ["+tcp"] : []),
    "+noall",
    "+answer",
    "+comments",
  ];
  const command = commandLine(nsArgv(fromNs, argv));
  const out = await runInNs(fromNs, argv, { deadlineMs: secs * 1000 + 1500 });
  if (out.timedOut) {
    return { ok: false, rcode: "timeout", answers: [], detail: "timeout (dig killed)", command };
  }
  const { rcode, answers, problem } = parseDig(`${out.stdout}\n${out.stderr}`, type);
  const ok = rcode === "NOERROR" && answers.length > 0;
  let detail: string;
  if (rcode === "error") detail = `error: ${problem ?? `dig exit ${out.code}`}`;
  else if (rcode === "timeout") detail = `timeout: ${problem ?? "no answer"}`;
  else detail = `${rcode}${answers.length ? `: ${answers.join(", ")}` : " (no answers)"}`;
  return { ok, rcode, answers, detail, command };
}
