/**
 * Responders: long-lived servers the suite runs inside a sandbox's namespace, each
 * answering with the sandbox's identity, so a probe can tell WHO answered (load
 * balancing, aliases, port publishing).
 *
 * - TCP: every connection gets `IDENTITY\n`;
 * - UDP: every datagram gets `IDENTITY\n` back;
 * - HTTP: any request gets `200 OK` with body `IDENTITY\n`.
 *
 * Each is one `socat ... fork` process (entered with `nsenter --net=PATH`), listening on
 * IPv4 and IPv6 at once (`ipv6only=0`), or IPv4 only where the namespace has no IPv6.
 * The reply is passed in an environment variable to a fixed shell literal that also drains
 * what the client sends (a reply program that exits before reading its input makes socat
 * fail with EPIPE and, racily, drop the reply).
 * @module
 */
import { commandLine, killTree, netnsPath, runInNs } from "./run.ts";

/** Names a responder may answer with. */
export const IDENTITY_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,64}$/;

/** Options of {@linkcode startResponders}. */
export interface ResponderOptions {
  tcp?: number[];
  udp?: number[];
  http?: number[];
  /** How long to wait for every listener (default 5000 ms). */
  readyDeadlineMs?: number;
}

/** Running responders; stop them (or `await using` them) when done. */
export interface Responders extends AsyncDisposable {
  readonly ns: string;
  readonly identity: string;
  /** Pids of the listening socat processes. */
  readonly pids: number[];
  /** The command line of each server (for failure reports). */
  readonly commands: string[];
  /** Kills every server and everything they forked; idempotent. */
  stop(): Promise<void>;
}

type Kind = "tcp" | "udp" | "http";

interface Listener {
  kind: Kind;
  port: number;
  ipv6: boolean;
  child: Deno.ChildProcess;
  command: string;
  stderr: Promise<string>;
  cancelStderr: () => void;
  exited: boolean;
}

/** The fixed shell literal each fork runs: print the reply, then drain the input. */
const REPLY_SCRIPT = "printenv CNM_REPLY; exec cat >/dev/null";

function checkPorts(kind: Kind, ports: number[] | undefined): number[] {
  for (const p of ports ?? []) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new RangeError(`invalid ${kind} port ${p}`);
    }
  }
  return ports ?? [];
}

function listenerArgv(kind: Kind, port: number, ipv6: boolean): string[] {
  const address = kind === "udp"
    ? `${ipv6 ? "UDP6" : "UDP4"}-RECVFROM:${port}${ipv6 ? ",ipv6only=0" : ""},fork`
    : `${ipv6 ? "TCP6" : "TCP4"}-LISTEN:${port}${ipv6 ? ",ipv6only=0" : ""},reuseaddr,fork`;
  // -T: a fork idle this long ends (UDP forks wait for more datagrams otherwise)
  return ["socat", "-T", kind === "udp" ? "1" : "5", address, `SYSTEM:${REPLY_SCRIPT},pipes`];
}

function replyOf(kind: Kind, identity: string): string {
  if (kind !== "http") return identity;
  // printenv appends "\n": the body is IDENTITY\n
  return [
    "HTTP/1.0 200 OK",
    "Content-Type: text/plain",
    `Content-Length: ${identity.length + 1}`,
    "Connection: close",
    "",
    identity,
  ].join("\r\n");
}

function collect(
  stream: ReadableStream<Uint8Array>,
): { text: Promise<string>; cancel: () => void } {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const text = (async () => {
    let out = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (out.length < 8192) out += decoder.decode(value, { stream: true });
      }
    } catch { /* cancelled */ }
    return out;
  })();
  return { text, cancel: () => void reader.cancel().catch(() => {}) };
}

function spawn(ns: string, kind: Kind, port: number, identity: string, ipv6: boolean): Listener {
  const argv = ["nsenter", `--net=${netnsPath(ns)}`, ...listenerArgv(kind, port, ipv6)];
  const reply = replyOf(kind, identity);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { CNM_REPLY: reply },
  }).spawn();
  const { text, cancel } = collect(child.stderr);
  const envText = kind === "http"
    ? `CNM_REPLY="$(printf '${reply.replaceAll("\r\n", "\\r\\n")}')"`
    : `CNM_REPLY=${identity}`;
  const listener: Listener = {
    kind,
    port,
    ipv6,
    child,
    command: `${envText} ${commandLine(argv)}`,
    stderr: text,
    cancelStderr: cancel,
    exited: false,
  };
  child.status.then(() => listener.exited = true);
  return listener;
}

/** Listening sockets of namespace `ns` as `proto/port -> pids`. */
async function listening(ns: string): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  // one `ss` for both protocols (its first column is then the protocol): readiness is
  // polled for every sandbox a case starts, and each poll is a process
  const r = await runInNs(ns, ["ss", "-Hltunp"], { deadlineMs: 3000 });
  for (const line of r.stdout.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 6 || (fields[0] !== "tcp" && fields[0] !== "udp")) continue;
    const local = fields[4];
    const port = local.slice(local.lastIndexOf(":") + 1);
    const key = `${fields[0]}/${port}`;
    const pids = out.get(key) ?? new Set<number>();
    for (const m of line.matchAll(/pid=(\d+)/g)) pids.add(Number(m[1]));
    out.set(key, pids);
  }
  return out;
}

async function stopListener(l: Listener): Promise<number[]> {
  const left = await killTree(l.child);
  // the stderr pipe closes with the last process that held it; do not wait forever
  const timer = setTimeout(l.cancelStderr, 1000);
  await l.stderr;
  clearTimeout(timer);
  return left;
}

/**
 * Starts TCP, UDP and HTTP responders answering with `identity` inside namespace `ns`
 * (`/run/netns/X`, `/proc/PID/ns/net` or a name under /run/netns), and returns once every
 * listener is up (polled with `ss`, bounded). Throws, leaving nothing running, when one
 * cannot start (port in use, bad identity).
 */
export async function startResponders(
  ns: string,
  identity: string,
  opts: ResponderOptions,
): Promise<Responders> {
  if (!IDENTITY_PATTERN.test(identity)) {
    throw new TypeError(
      `invalid responder identity ${JSON.stringify(identity)}: use 1-64 of [A-Za-z0-9_.-]`,
    );
  }
  netnsPath(ns);
  const wanted: [Kind, number][] = [];
  const seen = new Set<string>();
  for (const kind of ["tcp", "udp", "http"] as const) {
    for (const port of checkPorts(kind, opts[kind])) {
      const key = `${kind === "udp" ? "udp" : "tcp"}/${port}`;
      if (seen.has(key)) throw new RangeError(`port ${key} requested twice`);
      seen.add(key);
      wanted.push([kind, port]);
    }
  }
  const listeners: Listener[] = [];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const left = (await Promise.all(listeners.map(stopListener))).flat();
      if (left.length) {
        throw new Error(`responders in ${ns}: processes ${left.join(", ")} survived SIGKILL`);
      }
    })();
    return stopped;
  };
  try {
    for (const [kind, port] of wanted) listeners.push(spawn(ns, kind, port, identity, true));
    const deadlineMs = opts.readyDeadlineMs ?? 5000;
    const end = performance.now() + deadlineMs;
    while (true) {
      // a listener that died: retry IPv4-only when the namespace lacks IPv6, else fail
      for (const [i, l] of listeners.entries()) {
        if (!l.exited) continue;
        const why = (await l.stderr).trim();
        if (/address family not supported/i.test(why) && l.ipv6) {
          listeners[i] = spawn(ns, l.kind, l.port, identity, false);
          continue;
        }
        throw new Error(
          `Cannot start ${l.kind} responder "${identity}" on port ${l.port} in ${ns}: ${
            why.split("\n").at(-1) || "socat exited"
          }`,
        );
      }
      const sockets = await listening(ns);
      const ready = listeners.every((l) =>
        sockets.get(`${l.kind === "udp" ? "udp" : "tcp"}/${l.port}`)?.has(l.child.pid)
      );
      if (ready) break;
      if (performance.now() > end) {
        throw new Error(
          `Cannot start responders "${identity}" in ${ns}: not listening after ${deadlineMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  return {
    ns,
    identity,
    get pids() {
      return listeners.map((l) => l.child.pid);
    },
    get commands() {
      return listeners.map((l) => l.command);
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
