/**
 * Forwarding of names not known locally to the daemon's upstream servers (`--dns`), from
 * sockets opened in the host's network namespace, as Docker dials the host's resolvers
 * (research/libnetwork.md §4.1, `HostLoopback`; §4.4):
 * - at most the first 3 upstreams are tried, in order (Docker's `maxExtDNS`);
 * - SERVFAIL or REFUSED from one means: try the next; any other reply, NXDOMAIN included,
 *   is passed through as it is (`TestProxyNXDOMAIN`);
 * - the whole attempt is bounded (2 s by default, shared among the upstreams; Docker
 *   allows 4 s each, which outlasts a client's own timeout); no reply at all → null, which
 *   the resolver turns into SERVFAIL;
 * - a query that came over TCP is forwarded over TCP (one connection per query, as Docker
 *   dials); UDP queries share one UDP socket per address family, with IDs of our own;
 * - at most 1024 forwards at once, beyond which the reply is REFUSED (Docker's limit).
 *
 * Sockets in the host namespace: the UDP sockets are made with {@linkcode withNetns}
 * around `Deno.listenDatagram`. A TCP connection is started inside `withNetns` too:
 * `Deno.connect` creates its socket synchronously on the first poll of its operation, which
 * Deno 2 runs eagerly when the call is made (checked by the forwarding-over-TCP test, whose
 * upstream is reachable only from the host namespace).
 * @module
 */
import { formatIp, tryParseIp } from "../model/ip.ts";
import { InvalidArgumentError } from "../model/errors.ts";
import { withNetns } from "../kernel/setns.ts";
import { type ParsedQuery, RCODE, rcodeOf, rcodeReply } from "./wire.ts";

/** One upstream server. */
export interface Upstream {
  /** Canonical address text. */
  hostname: string;
  port: number;
  family: 4 | 6;
}

/**
 * Parses an upstream as the daemon's `--dns` takes it: `IP`, `IPv4:PORT`, `[IPv6]:PORT` or
 * a bare IPv6 address; the port defaults to 53.
 */
export function parseUpstream(text: string): Upstream {
  const bad = () =>
    new InvalidArgumentError(`Invalid DNS upstream "${text}": expected IP, IP:PORT or [IPv6]:PORT`);
  let host = text.trim();
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracket) {
    host = bracket[1];
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (/^[^:]+:\d+$/.test(host)) {
    port = Number(host.slice(host.indexOf(":") + 1));
    host = host.slice(0, host.indexOf(":"));
  }
  const ip = tryParseIp(host);
  if (!ip || !Number.isInteger(port) || port < 1 || port > 65535) throw bad();
  return { hostname: formatIp(ip.family, ip.value), port, family: ip.family };
}

/** Options of a {@linkcode Forwarder}. */
export interface ForwarderOptions {
  /** Upstream servers (`IP[:PORT]`); only the first 3 are used. */
  upstreams: string[];
  /** Namespace the sockets are opened in; absent: the process's own. */
  netnsPath?: string;
  /** Bound on one forward, over all upstreams, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** Most forwards in flight before REFUSED (default 1024). */
  maxInFlight?: number;
  /** Where failures to open sockets are reported. */
  log?: (line: string) => void;
}

interface Pending {
  upstream: Upstream;
  question: Uint8Array;
  clientId0: number;
  clientId1: number;
  resolve: (reply: Uint8Array | null) => void;
}

const MAX_UPSTREAMS = 3;

/** ASCII case-insensitive equality of two byte ranges (questions are echoed, maybe 0x20). */
function sameQuestion(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    let x = a[i], y = b[i];
    if (x >= 65 && x <= 90) x += 32;
    if (y >= 65 && y <= 90) y += 32;
    if (x !== y) return false;
  }
  return true;
}

/** Sends queries to the upstream servers and brings their replies back. */
export class Forwarder {
  readonly upstreams: Upstream[];
  readonly #netnsPath?: string;
  readonly #timeoutMs: number;
  readonly #maxInFlight: number;
  readonly #log: (line: string) => void;
  readonly #udp = new Map<4 | 6, Deno.DatagramConn>();
  readonly #pending = new Map<number, Pending>();
  readonly #tcpConns = new Set<Deno.Conn>();
  readonly #loops: Promise<void>[] = [];
  #inFlight = 0;
  #closed = false;

  constructor(opts: ForwarderOptions) {
    this.upstreams = opts.upstreams.map(parseUpstream).slice(0, MAX_UPSTREAMS);
    this.#netnsPath = opts.netnsPath;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#maxInFlight = opts.maxInFlight ?? 1024;
    this.#log = opts.log ?? (() => {});
  }

  /**
   * Forwards `msg` (a parsed query) upstream over UDP or TCP; resolves to the reply with the
   * client's ID, REFUSED when too many forwards are in flight, or null when no upstream gave
   * a usable reply in time.
   */
  async forward(msg: Uint8Array, q: ParsedQuery, tcp: boolean): Promise<Uint8Array | null> {
    if (this.#closed || this.upstreams.length === 0) return null;
    if (this.#inFlight >= this.#maxInFlight) return rcodeReply(msg, RCODE.REFUSED, q.questionEnd);
    this.#inFlight++;
    try {
      const deadline = Date.now() + this.#timeoutMs;
      const share = Math.floor(this.#timeoutMs / this.upstreams.length);
      for (const up of this.upstreams) {
        const left = deadline - Date.now();
        if (left <= 0 || this.#closed) break;
        const wait = Math.min(left, Math.max(share, 200));
        const reply = tcp
          ? await this.#viaTcp(up, msg, wait)
          : await this.#viaUdp(up, msg, q, wait);
        if (!reply) continue;
        const rc = rcodeOf(reply);
        if (rc === RCODE.SERVFAIL || rc === RCODE.REFUSED) continue;
        return reply;
      }
      return null;
    } finally {
      this.#inFlight--;
    }
  }

  /** The shared UDP socket of a family, opened in the host namespace on first use. */
  #socket(family: 4 | 6): Deno.DatagramConn | undefined {
    let sock = this.#udp.get(family);
    if (sock) return sock;
    const open = () =>
      Deno.listenDatagram({ hostname: family === 4 ? "0.0.0.0" : "::", port: 0, transport: "udp" });
    try {
      sock = this.#netnsPath ? withNetns(this.#netnsPath, open) : open();
    } catch (err) {
      this.#log(`dns: cannot open an IPv${family} upstream socket: ${(err as Error).message}`);
      return undefined;
    }
    this.#udp.set(family, sock);
    this.#loops.push(this.#receiveLoop(sock));
    return sock;
  }

  async #receiveLoop(sock: Deno.DatagramConn): Promise<void> {
    const buf = new Uint8Array(MAX_UDP_REPLY);
    for (;;) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await sock.receive(buf);
      } catch (err) {
        if (this.#closed || err instanceof Deno.errors.BadResource) return;
        continue;
      }
      try {
        if (data.length < 12) continue;
        const id = (data[0] << 8) | data[1];
        const p = this.#pending.get(id);
        if (!p) continue;
        const from = addr as Deno.NetAddr;
        if (from.hostname !== p.upstream.hostname || from.port !== p.upstream.port) continue;
        if (!sameQuestion(data.subarray(12, 12 + p.question.length), p.question)) continue;
        const reply = data.slice();
        reply[0] = p.clientId0;
        reply[1] = p.clientId1;
        this.#pending.delete(id);
        p.resolve(reply);
      } catch { /* a bad reply is ignored */ }
    }
  }

  #viaUdp(up: Upstream, msg: Uint8Array, q: ParsedQuery, wait: number): Promise<Uint8Array | null> {
    const sock = this.#socket(up.family);
    if (!sock) return Promise.resolve(null);
    let id = Math.floor(Math.random() * 65536);
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    const out = msg.slice();
    out[0] = id >> 8;
    out[1] = id & 0xff;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(null);
      }, wait);
      this.#pending.set(id, {
        upstream: up,
        question: msg.slice(12, q.questionEnd),
        clientId0: msg[0],
        clientId1: msg[1],
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      sock.send(out, { transport: "udp", hostname: up.hostname, port: up.port }).catch(() => {
        // unreachable upstream: let the timer (or the next upstream) decide
      });
    });
  }

  async #viaTcp(up: Upstream, msg: Uint8Array, wait: number): Promise<Uint8Array | null> {
    let conn: Deno.Conn | undefined;
    let expire!: () => void;
    const expired = new Promise<null>((resolve) => expire = () => resolve(null));
    const timer = setTimeout(() => {
      expire();
      try {
        conn?.close(); // a read or write under way fails, and the attempt gives up
      } catch { /* closed */ }
    }, wait);
    try {
      const dial = () => Deno.connect({ hostname: up.hostname, port: up.port });
      const pending = this.#netnsPath ? withNetns(this.#netnsPath, dial) : dial();
      const first = await Promise.race([pending, expired]);
      if (first === null) {
        pending.then((c) => c.close(), () => {});
        return null;
      }
      conn = first;
      this.#tcpConns.add(conn);
      const framed = new Uint8Array(msg.length + 2);
      framed[0] = msg.length >> 8;
      framed[1] = msg.length & 0xff;
      framed.set(msg, 2);
      await writeAll(conn, framed);
      const head = await readExact(conn, 2);
      if (!head) return null;
      const reply = await readExact(conn, (head[0] << 8) | head[1]);
      if (!reply || reply.length < 12 || reply[0] !== msg[0] || reply[1] !== msg[1]) return null;
      return reply;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
      if (conn) {
        this.#tcpConns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  }

  /** Closes the sockets; forwards under way resolve to null. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#udp.values()) {
      try {
        s.close();
      } catch { /* closed */ }
    }
    this.#udp.clear();
    for (const c of this.#tcpConns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const p of this.#pending.values()) p.resolve(null);
    this.#pending.clear();
    await Promise.allSettled(this.#loops);
  }
}

const MAX_UDP_REPLY = 65535;

/** Writes all of `data` to `conn`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await conn.write(data.subarray(at));
}

/** Reads exactly `n` bytes, or null at end of stream. */
export async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const r = await conn.read(out.subarray(at));
    if (r === null) return null;
    at += r;
  }
  return out;
}
