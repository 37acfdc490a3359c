/**
 * The witness: ground truth from the receiving side. A passive packet capture (tcpdump)
 * inside the TARGET namespace records every ICMP/TCP/UDP packet that ARRIVES there, and
 * each probe packet carries a per-check token, so the suite can tell "the packet reached
 * the target" from "it did not" even when NAT, DNAT, load balancing or hairpinning
 * rewrote its addresses.
 *
 * The capture is `nsenter --net=PATH tcpdump --immediate-mode -i any -y LINUX_SLL2 -Q in
 * -n -l -U -x -s 256 -B 4096 'icmp or icmp6 or tcp or udp'`:
 *
 * - `-i any` sees every interface of the namespace, including ones added later;
 * - `-Q in` keeps only packets that are not outgoing (tcpdump 4.99.3 / libpcap 1.10.3
 *   accept it with `-i any`). Forwarded packets are seen once, on the way in; packets the
 *   namespace sends itself (replies, RSTs, ICMP errors) are not seen;
 * - `--immediate-mode` hands each packet over at once: without it libpcap's TPACKET_V3
 *   ring hands packets over in blocks, every 100 ms under `-l` (measured ~97 ms late
 *   instead of ~5 ms);
 * - `-y LINUX_SLL2` fixes the link type so every header line names its interface and a
 *   packet's captured bytes are known (`-s` minus the 20-byte SLL2 header);
 * - `-x` prints each packet in hex from the IP header on. Every field of a record comes
 *   from that hex, not from tcpdump's one-line summary, whose wording depends on
 *   the port (UDP 7001 is decoded as AFS "rx", for instance).
 *
 * Readiness and the barrier use a self-test packet: `ping -c1 -W1 -p TOKEN 127.0.0.1`
 * from inside the namespace. On `any`, libpcap shows each loopback packet once, as `lo In`
 * (it drops the outgoing copy itself), so the self-test echo request is visible under
 * `-Q in` (checked on this machine). The witness is armed once it has parsed its own
 * self-test packet. `sync()` does the same with a fresh token: tcpdump reads all
 * interfaces through one packet socket, in order, so once the self-test packet is parsed,
 * every packet that arrived before it has been parsed too. The self-test needs loopback up
 * and no rule in the namespace dropping its own loopback ICMP.
 *
 * Caveat: the capture taps packets BEFORE tc ingress and netfilter (prerouting, input,
 * netdev ingress) of the target namespace. A packet counts as arrived when it reached the
 * namespace's interfaces, even if the namespace's own firewall drops it afterwards. Model
 * isolation where the packet gets dropped before it gets there (sender or host
 * namespace).
 * @module
 */
import { commandLine, killTree, netnsPath, runInNs, type RunOutcome } from "./run.ts";

/** One packet the witness saw arriving in its namespace. */
export interface Packet {
  /** Capture time as tcpdump prints it (`HH:MM:SS.micro`, local time). */
  time: string;
  /** Interface it arrived on (`vb`, `eth0`, `lo`). */
  iface: string;
  /** Packet type: `In` (to this host), `B` (broadcast), `M` (multicast), `P` (other host). */
  direction: string;
  family: 4 | 6;
  proto: "icmp" | "tcp" | "udp";
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** TCP flags, as tcpdump writes them: `S`, `S.`, `P.`, `F.`, `R`, `.` (ACK). */
  tcpFlags?: string;
  /** ICMP / ICMPv6 type (8 / 128 = echo request). */
  icmpType?: number;
  /** True for a non-first fragment (it has no transport header, so no ports/type). */
  fragment?: boolean;
  /** Length of the IP packet on the wire (the capture may hold fewer bytes). */
  length: number;
  /** The captured packet from the IP header on: lowercase hex, no spaces. */
  hex: string;
}

/** A per-check mark a probe carries, so a witness recognises its packets. */
export type Token =
  /** ICMP echo request whose payload holds `pattern` (16 hex digits, `ping -p`). */
  | { proto: "icmp"; pattern: string }
  /** UDP datagram whose payload holds the ASCII `payload`. */
  | { proto: "udp"; payload: string }
  /**
   * TCP segment from source port `sport` (any flags). With `payload` (sent as data by
   * `probeTcp(..., { payload })`), a segment carrying it matches too: that survives a
   * userland proxy, which reconnects from another port.
   */
  | { proto: "tcp"; sport: number; payload?: string };

/** Lowest TCP/UDP source port {@linkcode allocSourcePort} hands out. */
export const SOURCE_PORT_MIN = 20000;
/** Highest source port {@linkcode allocSourcePort} hands out (below the ephemeral range). */
export const SOURCE_PORT_MAX = 32767;

const SPAN = SOURCE_PORT_MAX - SOURCE_PORT_MIN + 1;
let nextPort = SOURCE_PORT_MIN + (crypto.getRandomValues(new Uint16Array(1))[0] % SPAN);

/**
 * A source port for a probe, from a process-wide allocator over 20000–32767 (below the
 * kernel's default ephemeral range 32768–60999). It cycles, so a port comes back only
 * after 12768 other allocations; it starts at a random point, so two processes
 * rarely hand out the same ports at once.
 */
export function allocSourcePort(): number {
  const port = nextPort;
  nextPort = port === SOURCE_PORT_MAX ? SOURCE_PORT_MIN : port + 1;
  return port;
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Text a UDP (or TCP data) token may carry: 1-64 printable ASCII characters. */
export const PAYLOAD_PATTERN: RegExp = /^[\x20-\x7e]{1,64}$/;
/** An ICMP token pattern: 8 bytes as 16 hex digits. */
export const ICMP_PATTERN: RegExp = /^[0-9a-fA-F]{16}$/;

/** A fresh ICMP token: 8 random bytes. */
export function newToken(proto: "icmp"): { proto: "icmp"; pattern: string };
/** A fresh UDP token: `cnmtok-` and 12 random hex digits. */
export function newToken(proto: "udp"): { proto: "udp"; payload: string };
/** A fresh TCP token: a source port from {@linkcode allocSourcePort}. */
export function newToken(proto: "tcp"): { proto: "tcp"; sport: number };
/** A fresh token of `proto`. */
export function newToken(proto: Token["proto"]): Token;
export function newToken(proto: Token["proto"]): Token {
  switch (proto) {
    case "icmp":
      return { proto, pattern: randomHex(8) };
    case "udp":
      return { proto, payload: `cnmtok-${randomHex(6)}` };
    case "tcp":
      return { proto, sport: allocSourcePort() };
  }
  throw new TypeError(`unknown token protocol ${JSON.stringify(proto)}`);
}

/** Hex of an ASCII string, lowercase. */
export function asciiHex(text: string): string {
  return Array.from(new TextEncoder().encode(text), (x) => x.toString(16).padStart(2, "0"))
    .join("");
}

/** True when `needle` occurs in `hex` at an even (byte-aligned) position. */
export function containsAligned(hex: string, needle: string): boolean {
  if (needle === "") return false;
  let i = hex.indexOf(needle);
  while (i >= 0) {
    if (i % 2 === 0) return true;
    i = hex.indexOf(needle, i + 1);
  }
  return false;
}

function checkToken(token: Token): void {
  switch (token.proto) {
    case "icmp":
      if (!ICMP_PATTERN.test(token.pattern)) {
        throw new TypeError(`invalid ICMP token pattern ${JSON.stringify(token.pattern)}`);
      }
      return;
    case "udp":
      if (!PAYLOAD_PATTERN.test(token.payload)) {
        throw new TypeError(`invalid UDP token payload ${JSON.stringify(token.payload)}`);
      }
      return;
    case "tcp":
      if (!Number.isInteger(token.sport) || token.sport < 1 || token.sport > 65535) {
        throw new TypeError(`invalid TCP token source port ${token.sport}`);
      }
      if (token.payload !== undefined && !PAYLOAD_PATTERN.test(token.payload)) {
        throw new TypeError(`invalid TCP token payload ${JSON.stringify(token.payload)}`);
      }
      return;
  }
  throw new TypeError(`invalid token ${JSON.stringify(token)}`);
}

/** True when an ICMP record is an echo request (ICMP type 8, ICMPv6 type 128). */
export function isEchoRequest(p: Packet): boolean {
  return p.proto === "icmp" && !p.fragment && p.icmpType === (p.family === 4 ? 8 : 128);
}

/**
 * A predicate for the packets carrying `token` (see {@linkcode matchesToken}); checks the
 * token once. Throws TypeError on a malformed token.
 */
export function tokenMatcher(token: Token): (p: Packet) => boolean {
  checkToken(token);
  switch (token.proto) {
    case "icmp": {
      const pattern = token.pattern.toLowerCase();
      return (p) => isEchoRequest(p) && containsAligned(p.hex, pattern);
    }
    case "udp": {
      const payload = asciiHex(token.payload);
      return (p) => p.proto === "udp" && containsAligned(p.hex, payload);
    }
    case "tcp": {
      const sport = token.sport;
      const payload = token.payload === undefined ? undefined : asciiHex(token.payload);
      return (p) =>
        p.proto === "tcp" &&
        (p.sport === sport || (payload !== undefined && containsAligned(p.hex, payload)));
    }
  }
}

/**
 * True when packet `p` carries `token`: an ICMP/ICMPv6 echo request holding the pattern
 * at a byte-aligned position, a UDP datagram holding the payload, a TCP segment from the
 * source port (any flags) or holding the token's optional payload. Throws TypeError on a
 * malformed token.
 */
export function matchesToken(p: Packet, token: Token): boolean {
  return tokenMatcher(token)(p);
}

// ---------------------------------------------------------------------------------------
// tcpdump text parser

const HEADER = /^(\d{2}:\d{2}:\d{2}\.\d+) +(?:(\S+) +)?(In|Out|B|M|P) +/;
const HEXLINE = /^\s+0x([0-9a-f]+):\s+([0-9a-f ]+?)\s*$/;

interface Pending {
  time: string;
  iface: string;
  direction: string;
  hex: string;
  /** Bytes after which the packet is complete (Infinity while unknown). */
  need: number;
}

const TCP_FLAGS: [number, string][] = [
  [0x01, "F"],
  [0x02, "S"],
  [0x04, "R"],
  [0x08, "P"],
  [0x20, "U"],
  [0x40, "E"],
  [0x80, "W"],
  [0x10, "."],
];

function ipv4(hex: string, at: number): string {
  const parts: number[] = [];
  for (let i = 0; i < 4; i++) parts.push(parseInt(hex.slice((at + i) * 2, (at + i) * 2 + 2), 16));
  return parts.join(".");
}

/** Formats 16 bytes of hex as an IPv6 address in RFC 5952 form (`fd99::1`). */
export function ipv6(hex: string, at = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push(parseInt(hex.slice((at + i * 2) * 2, (at + i * 2) * 2 + 4), 16));
  }
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text = groups.map((g) => g.toString(16));
  if (bestAt < 0) return text.join(":");
  return `${text.slice(0, bestAt).join(":")}::${text.slice(bestAt + bestLen).join(":")}`;
}

/** Decodes the IP packet in `hex` (from the IP header on); undefined when not ICMP/TCP/UDP. */
export function decodePacket(
  hex: string,
  meta: { time: string; iface: string; direction: string },
): Packet | undefined {
  const bytes = hex.length >> 1;
  const b = (i: number) => i < bytes ? parseInt(hex.slice(i * 2, i * 2 + 2), 16) : NaN;
  const u16 = (i: number) => (b(i) << 8) | b(i + 1);
  const version = b(0) >> 4;
  let family: 4 | 6;
  let next: number;
  let at: number;
  let length: number;
  let src: string;
  let dst: string;
  let fragment = false;
  if (version === 4 && bytes >= 20) {
    family = 4;
    at = (b(0) & 0x0f) * 4;
    length = u16(2);
    next = b(9);
    fragment = (u16(6) & 0x1fff) !== 0;
    src = ipv4(hex, 12);
    dst = ipv4(hex, 16);
  } else if (version === 6 && bytes >= 40) {
    family = 6;
    length = 40 + u16(4);
    next = b(6);
    src = ipv6(hex, 8);
    dst = ipv6(hex, 24);
    at = 40;
    // walk extension headers: hop-by-hop, routing, destination options, AH, fragment
    for (let hops = 0; hops < 8; hops++) {
      if (next === 0 || next === 43 || next === 60) {
        if (at + 2 > bytes) break;
        const n = b(at);
        at += (b(at + 1) + 1) * 8;
        next = n;
      } else if (next === 51) {
        if (at + 2 > bytes) break;
        const n = b(at);
        at += (b(at + 1) + 2) * 4;
        next = n;
      } else if (next === 44) {
        if (at + 8 > bytes) break;
        fragment = (u16(at + 2) >> 3) !== 0;
        next = b(at);
        at += 8;
      } else {
        break;
      }
    }
  } else {
    return undefined;
  }
  const proto = next === 6
    ? "tcp"
    : next === 17
    ? "udp"
    : (family === 4 && next === 1) || (family === 6 && next === 58)
    ? "icmp"
    : undefined;
  if (!proto) return undefined;
  const p: Packet = { ...meta, family, proto, src, dst, length, hex };
  if (fragment) {
    p.fragment = true;
    return p;
  }
  if (proto === "icmp") {
    if (at < bytes) p.icmpType = b(at);
  } else if (at + 4 <= bytes) {
    p.sport = u16(at);
    p.dport = u16(at + 2);
    if (proto === "tcp" && at + 14 <= bytes) {
      const flags = b(at + 13);
      p.tcpFlags = TCP_FLAGS.filter(([bit]) => flags & bit).map(([, c]) => c).join("") ||
        "none";
    }
  }
  return p;
}

/** Options of {@linkcode TcpdumpParser}. */
export interface ParserOptions {
  /**
   * Most bytes of a packet tcpdump prints (snap length minus the link header: 256 - 20
   * for LINUX_SLL2). A packet is complete once it printed this many bytes or its IP
   * length; otherwise only the next packet, {@linkcode TcpdumpParser.flush} or the end
   * completes it. Default: unknown (Infinity).
   */
  captureLimit?: number;
}

/**
 * Incremental parser of `tcpdump -i any -y LINUX_SLL2 -n -x` text: push chunks as they
 * come, get back the packets they completed. Lines that are neither a packet header nor
 * hex are ignored; so are packets that are not IPv4/IPv6 ICMP, TCP or UDP.
 */
export class TcpdumpParser {
  #partial = "";
  #pending: Pending | undefined;
  #limit: number;
  /** Hex lines that came without a packet header (normally 0). */
  orphanLines = 0;

  constructor(opts: ParserOptions = {}) {
    this.#limit = opts.captureLimit ?? Infinity;
  }

  /** True while a packet is waiting for more hex lines. */
  get pending(): boolean {
    return this.#pending !== undefined;
  }

  /** Feeds a chunk of tcpdump's output; returns the packets it completed, in order. */
  push(text: string): Packet[] {
    const out: Packet[] = [];
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) this.#line(line, out);
    return out;
  }

  /** Completes the packet being parsed (and a last unterminated line), if any. */
  flush(): Packet[] {
    const out: Packet[] = [];
    if (this.#partial) {
      const line = this.#partial;
      this.#partial = "";
      this.#line(line, out);
    }
    this.#finish(out);
    return out;
  }

  #finish(out: Packet[]): void {
    const p = this.#pending;
    this.#pending = undefined;
    if (!p || !p.hex) return;
    const packet = decodePacket(p.hex, { time: p.time, iface: p.iface, direction: p.direction });
    if (packet) out.push(packet);
  }

  #line(line: string, out: Packet[]): void {
    const head = HEADER.exec(line);
    if (head) {
      this.#finish(out);
      this.#pending = {
        time: head[1],
        iface: head[2] ?? "?",
        direction: head[3],
        hex: "",
        need: Infinity,
      };
      return;
    }
    const hexLine = HEXLINE.exec(line);
    if (!hexLine) return;
    const p = this.#pending;
    const offset = parseInt(hexLine[1], 16);
    if (!p || offset !== p.hex.length / 2) {
      this.orphanLines++;
      return;
    }
    p.hex += hexLine[2].replaceAll(" ", "");
    if (p.need === Infinity && p.hex.length >= 12) {
      const version = parseInt(p.hex[0], 16);
      const length = version === 4
        ? parseInt(p.hex.slice(4, 8), 16)
        : version === 6
        ? 40 + parseInt(p.hex.slice(8, 12), 16)
        : Infinity;
      p.need = Math.min(length, this.#limit);
    }
    if (p.hex.length / 2 >= p.need) this.#finish(out);
  }
}

/** Parses a whole tcpdump text at once (see {@linkcode TcpdumpParser}). */
export function parseTcpdump(text: string, opts: ParserOptions = {}): Packet[] {
  const parser = new TcpdumpParser(opts);
  return [...parser.push(text), ...parser.flush()];
}

// ---------------------------------------------------------------------------------------
// the witness process

/** Snap length of the capture: enough for IP + TCP/UDP headers and a token. */
export const SNAPLEN = 256;
const SLL2_HEADER = 20;
/** The capture filter. */
export const CAPTURE_FILTER = "icmp or icmp6 or tcp or udp";

/** The tcpdump argv a witness runs (inside `nsenter --net=PATH`). */
export function tcpdumpArgv(): string[] {
  return [
    "tcpdump",
    "--immediate-mode",
    "-i",
    "any",
    "-y",
    "LINUX_SLL2",
    "-Q",
    "in",
    "-n",
    "-l",
    "-U",
    "-x",
    "-s",
    String(SNAPLEN),
    "-B",
    "4096",
    CAPTURE_FILTER,
  ];
}

/** tcpdump's counters (what it prints on SIGUSR1). */
export interface CaptureStats {
  captured: number;
  receivedByFilter: number;
  droppedByKernel: number;
}

const STATS_LINE =
  /(\d+) packets? captured, (\d+) packets? received by filter, (\d+) packets? dropped by kernel/;

/** Options of {@linkcode startWitness}. */
export interface WitnessOptions {
  /** Give up arming after this long (default 5000 ms). */
  armDeadlineMs?: number;
  /** Default deadline of {@linkcode Witness.sync} (default 3000 ms). */
  syncDeadlineMs?: number;
  /** Records kept; the oldest go first (default 20000). */
  maxRecords?: number;
  /** Pause between self-test pings (default 25 ms; arming takes ~40 ms, ~115 ms at 100). */
  selfTestIntervalMs?: number;
}

/** A running witness; stop it (or `await using` it) when done. */
export interface Witness extends AsyncDisposable {
  readonly ns: string;
  readonly label: string;
  /** Paste-able command line of the capture. */
  readonly command: string;
  /** Pid of tcpdump (nsenter execs it). */
  readonly pid: number;
  /** Milliseconds from the startWitness call until it was armed. */
  readonly armedMs: number;
  /** Records dropped because more than `maxRecords` came. */
  readonly evicted: number;
  /**
   * Barrier: sends a fresh self-test packet and waits until it is parsed, so every packet
   * that arrived before is recorded; then asks tcpdump for its counters. Throws when the
   * self-test is not seen in time, or once the kernel dropped any packet of the capture
   * (buffer overrun: arrivals may be undercounted). Either way the witness is broken: a
   * harness error.
   */
  sync(deadlineMs?: number): Promise<void>;
  /** tcpdump's counters, asked for with SIGUSR1 (throws when no answer within 1 s). */
  stats(): Promise<CaptureStats>;
  /** The records carrying `token` (call {@linkcode Witness.sync} first). */
  saw(token: Token): Packet[];
  /** Every record kept, oldest first (a copy). */
  packets(): Packet[];
  /** What tcpdump wrote on stderr so far (for failure reports). */
  stderr(): string;
  /** Kills tcpdump and everything it forked; idempotent. */
  stop(): Promise<void>;
}

const STDERR_LIMIT = 16384;

/**
 * Starts a witness in namespace `ns` (`/run/netns/X`, `/proc/PID/ns/net` or a name under
 * /run/netns) and returns once it is armed: it has parsed a self-test ping sent from
 * inside the namespace to 127.0.0.1. Throws one line naming the namespace and tcpdump's
 * stderr when it cannot arm in time, leaving nothing running.
 */
export async function startWitness(
  ns: string,
  label: string,
  opts: WitnessOptions = {},
): Promise<Witness> {
  const started = performance.now();
  const path = netnsPath(ns);
  const argv = ["nsenter", `--net=${path}`, ...tcpdumpArgv()];
  const command = commandLine(argv);
  const maxRecords = opts.maxRecords ?? 20000;
  const syncDeadline = opts.syncDeadlineMs ?? 3000;
  const selfTestInterval = opts.selfTestIntervalMs ?? 25;

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    throw new Error(
      `witness ${label} in ${ns}: cannot start ${command}: ${e instanceof Error ? e.message : e}`,
    );
  }

  let records: Packet[] = [];
  let evicted = 0;
  let stderrText = "";
  let exited = false;
  const waiters = new Set<{ match: (p: Packet) => boolean; resolve: () => void }>();
  const parser = new TcpdumpParser({ captureLimit: SNAPLEN - SLL2_HEADER });
  let idle: ReturnType<typeof setTimeout> | undefined;

  const record = (packets: Packet[]) => {
    for (const p of packets) {
      records.push(p);
      for (const w of waiters) {
        if (w.match(p)) {
          waiters.delete(w);
          w.resolve();
        }
      }
    }
    if (records.length > maxRecords * 1.1) {
      const drop = records.length - maxRecords;
      evicted += drop;
      records = records.slice(drop);
    }
  };

  const stdoutReader = child.stdout.getReader();
  const stderrReader = child.stderr.getReader();
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      while (true) {
        const { value, done } = await stdoutReader.read();
        if (done) break;
        clearTimeout(idle);
        record(parser.push(decoder.decode(value, { stream: true })));
        // a packet whose length is unknown completes after a short silence
        if (parser.pending) idle = setTimeout(() => record(parser.flush()), 30);
      }
    } catch { /* cancelled */ }
    clearTimeout(idle);
    record(parser.flush());
  })();
  let stats: CaptureStats | undefined;
  let statsSeq = 0;
  const statsWaiters = new Set<() => void>();
  const readingErr = (async () => {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      while (true) {
        const { value, done } = await stderrReader.read();
        if (done) break;
        const lines = (partial + decoder.decode(value, { stream: true })).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          const m = STATS_LINE.exec(line);
          if (m) {
            // counters answering SIGUSR1 are kept apart: they would fill the stored text
            stats = { captured: +m[1], receivedByFilter: +m[2], droppedByKernel: +m[3] };
            statsSeq++;
            for (const w of statsWaiters) w();
          } else if (stderrText.length < STDERR_LIMIT) {
            stderrText += `${line}\n`;
          }
        }
      }
    } catch { /* cancelled */ }
    if (partial && stderrText.length < STDERR_LIMIT) stderrText += partial;
  })();
  const status = child.status.then((s) => {
    exited = true;
    for (const w of waiters) w.resolve();
    for (const w of statsWaiters) w();
    return s;
  });

  const captureStats = async (deadlineMs = 1000): Promise<CaptureStats> => {
    const seq = statsSeq;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake = () => {};
    const answered = new Promise<void>((resolve) => {
      wake = () => {
        if (statsSeq > seq || exited) resolve();
      };
      statsWaiters.add(wake);
      timer = setTimeout(resolve, deadlineMs);
    });
    try {
      if (!exited) {
        try {
          // only ever sent once armed: tcpdump handles SIGUSR1 by then
          Deno.kill(child.pid, "SIGUSR1");
        } catch { /* exited meanwhile */ }
      }
      await answered;
    } finally {
      clearTimeout(timer);
      statsWaiters.delete(wake);
    }
    if (statsSeq > seq && stats) return stats;
    throw new Error(
      `witness ${label} in ${ns}: ${exited ? "tcpdump exited" : "no counters within 1 s"}`,
    );
  };

  const oneLine = (text: string) =>
    text.split("\n").map((l) => l.trim()).filter(Boolean).join("; ").slice(0, 600);

  const pings = new Set<Promise<RunOutcome | undefined>>();
  let lastPing: RunOutcome | string | undefined;
  const sendSelfTest = (pattern: string) => {
    const argv = ["ping", "-n", "-q", "-c1", "-W1", "-p", pattern, "127.0.0.1"];
    const run: Promise<RunOutcome | undefined> = runInNs(ns, argv, { deadlineMs: 1500 }).then(
      (out) => {
        lastPing = out;
        return out;
      },
      (e) => {
        lastPing = e instanceof Error ? e.message : String(e);
        return undefined;
      },
    ).finally(() => pings.delete(run));
    pings.add(run);
  };
  const pingReport = () => {
    if (lastPing === undefined) return "no self-test ping ran";
    if (typeof lastPing === "string") return `self-test ping: ${lastPing}`;
    const text = oneLine(lastPing.stderr) || oneLine(lastPing.stdout).slice(-200);
    const hint = /unreachable/i.test(text) ? " (is loopback down in the namespace?)" : "";
    return `self-test ping exit ${lastPing.code}${text ? `: ${text}` : ""}${hint}`;
  };

  /** Sends self-test pings until one is parsed; false on deadline or tcpdump exit. */
  const selfTest = async (deadlineMs: number): Promise<boolean> => {
    const token = newToken("icmp");
    let seen = false;
    const waiter = { match: tokenMatcher(token), resolve: () => {} };
    const done = new Promise<void>((resolve) => {
      waiter.resolve = () => {
        seen = !exited;
        resolve();
      };
    });
    waiters.add(waiter);
    const end = performance.now() + deadlineMs;
    try {
      while (!seen && !exited && performance.now() < end) {
        sendSelfTest(token.pattern);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const left = Math.max(0, Math.min(selfTestInterval, end - performance.now()));
        await Promise.race([done, new Promise((r) => timer = setTimeout(r, left))]);
        clearTimeout(timer);
      }
      return seen && !exited;
    } finally {
      waiters.delete(waiter);
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const left = await killTree(child);
      await status;
      // the pipes close with tcpdump; do not wait forever
      const timer = setTimeout(() => {
        stdoutReader.cancel().catch(() => {});
        stderrReader.cancel().catch(() => {});
      }, 1000);
      await Promise.all([reading, readingErr]);
      clearTimeout(timer);
      await Promise.all([...pings]);
      if (left.length) {
        throw new Error(`witness ${label} in ${ns}: processes ${left.join(", ")} survived SIGKILL`);
      }
    })();
    return stopping;
  };

  const armDeadline = opts.armDeadlineMs ?? 5000;
  let armed: boolean;
  try {
    armed = await selfTest(armDeadline);
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  const armedMs = performance.now() - started;
  if (!armed) {
    await Promise.all([...pings]);
    const why = exited ? "tcpdump exited" : `not armed after ${armDeadline} ms`;
    await stop().catch(() => {});
    throw new Error(
      `witness ${label} in ${ns}: ${why} (${pingReport()}); tcpdump stderr: ${
        oneLine(stderrText) || "(empty)"
      }; command: ${command}`,
    );
  }

  return {
    ns,
    label,
    command,
    pid: child.pid,
    armedMs,
    get evicted() {
      return evicted;
    },
    async sync(deadlineMs = syncDeadline) {
      if (stopping) throw new Error(`witness ${label} in ${ns}: sync after stop`);
      const ok = await selfTest(deadlineMs);
      if (!ok) {
        await Promise.all([...pings]);
        const why = exited ? "tcpdump exited" : `self-test not seen within ${deadlineMs} ms`;
        throw new Error(
          `witness ${label} in ${ns}: sync failed: ${why} (${pingReport()}); tcpdump stderr: ${
            oneLine(stderrText) || "(empty)"
          }`,
        );
      }
      const counters = await captureStats();
      if (counters.droppedByKernel > 0) {
        throw new Error(
          `witness ${label} in ${ns}: the kernel dropped ${counters.droppedByKernel} captured ` +
            `packets (buffer overrun): arrivals may be undercounted`,
        );
      }
    },
    stats() {
      if (stopping) return Promise.reject(new Error(`witness ${label} in ${ns}: stats after stop`));
      return captureStats();
    },
    saw(token: Token) {
      return records.filter(tokenMatcher(token));
    },
    packets() {
      return [...records];
    },
    stderr() {
      return stderrText;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
