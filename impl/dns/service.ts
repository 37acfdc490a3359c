/**
 * The embedded DNS service: one resolver at 127.0.0.11:53 (UDP and TCP) inside every
 * sandbox's network namespace, all served by this process (research/libnetwork.md §4.1).
 *
 * The sockets are made inside the sandbox's namespace with {@linkcode withNetns} (the main
 * thread enters it, creates them synchronously, comes back) and stay there; the loops that
 * serve them run here like any other socket. Docker binds a random port and DNATs 53 to it;
 * we bind port 53 directly, which needs no NAT rules inside the sandbox.
 *
 * Robustness: every datagram and TCP message is handled inside its own try/catch; one
 * receive loop per UDP socket; TCP connections are bounded per sandbox (64 by default; a new
 * one beyond that closes the oldest), closed after an idle time (10 s) and limited to 65535-byte messages
 * by their framing; replies waiting for the kernel are bounded; forwards are bounded by the
 * forwarder (REFUSED beyond 1024).
 *
 * Note for callers: a socket keeps its namespace alive. Call {@linkcode DnsService.removeSandbox}
 * when a sandbox goes away, or its namespace lingers (unnamed) until the service closes.
 * @module
 */
import { withAction } from "../model/errors.ts";
import { netnsInode, withNetns } from "../kernel/setns.ts";
import { Forwarder, writeAll } from "./forward.ts";
import type { DnsEndpoint, DnsRecords } from "./records.ts";
import { Resolver, type ResolverStats } from "./resolver.ts";

/** Options of a {@linkcode DnsService}. */
export interface DnsServiceOptions {
  /** The daemon's `--dns` list (`IP`, `IP:PORT`, `[IPv6]:PORT`); may be empty. */
  upstreams: string[];
  /**
   * The namespace upstream sockets are opened in (Docker: the host's); absent: the
   * process's own.
   */
  hostNetnsPath?: string;
  /** Where listener-level problems are reported (never one line per bad packet). */
  log?: (line: string) => void;
  /** Address the resolver listens on in each sandbox (default `127.0.0.11`). */
  address?: string;
  /** Port it listens on (default 53). */
  port?: number;
  /** Bound on one forwarded query over all upstreams, in ms (default 2000). */
  forwardTimeoutMs?: number;
  /** A TCP connection with nothing to read for this long is closed (default 10000 ms). */
  tcpIdleTimeoutMs?: number;
  /** Most TCP connections per sandbox; a new one beyond closes the oldest (default 64). */
  maxTcpConnectionsPerSandbox?: number;
}

/** What the service did, for logs and tests. */
export interface DnsServiceStats extends ResolverStats {
  /** Sandboxes with listeners. */
  sandboxes: number;
  /** TCP connections open now. */
  tcpConnections: number;
  /** TCP connections closed to make room because a sandbox had too many. */
  tcpEvicted: number;
  /** Replies not sent because too many sends were waiting for the kernel. */
  sendDropped: number;
}

/** The listeners of one sandbox. */
interface SandboxListeners {
  id: string;
  netnsPath: string;
  /** Inode of the namespace the sockets live in (a path can be reused by a new namespace). */
  inode: number;
  udp: Deno.DatagramConn;
  tcp: Deno.Listener;
  conns: Set<Deno.Conn>;
  closed: boolean;
  loops: Promise<void>[];
}

const UDP_BUFFER = 4096;
const MAX_PENDING_SENDS = 4096;
const MAX_TCP_BUFFER = 65537;

/** The inode of a namespace file, or -1 when it is gone. */
function inodeOf(path: string): number {
  try {
    return netnsInode(path);
  } catch {
    return -1;
  }
}

/** The embedded DNS server of every sandbox this process serves. */
export class DnsService implements AsyncDisposable {
  readonly #resolver: Resolver;
  readonly #forwarder?: Forwarder;
  readonly #sandboxes = new Map<string, SandboxListeners>();
  readonly #log: (line: string) => void;
  readonly #address: string;
  readonly #port: number;
  readonly #idleMs: number;
  readonly #maxTcp: number;
  #pendingSends = 0;
  #tcpEvicted = 0;
  #sendDropped = 0;
  #closed = false;
  readonly #sent = () => {
    this.#pendingSends--;
  };

  /** Creates the service; no socket is opened until a sandbox is added or a query forwarded. */
  constructor(opts: DnsServiceOptions) {
    this.#log = opts.log ?? (() => {});
    this.#address = opts.address ?? "127.0.0.11";
    this.#port = opts.port ?? 53;
    this.#idleMs = opts.tcpIdleTimeoutMs ?? 10_000;
    this.#maxTcp = opts.maxTcpConnectionsPerSandbox ?? 64;
    if (opts.upstreams.length > 0) {
      this.#forwarder = new Forwarder({
        upstreams: opts.upstreams,
        netnsPath: opts.hostNetnsPath,
        timeoutMs: opts.forwardTimeoutMs,
        log: this.#log,
      });
    }
    const fwd = this.#forwarder;
    this.#resolver = new Resolver({
      forward: fwd ? (m, q, tcp) => fwd.forward(m, q, tcp) : undefined,
    });
  }

  /** The records the service answers from (read them; change them through this class). */
  get records(): DnsRecords {
    return this.#resolver.records;
  }

  /**
   * Starts UDP and TCP listeners on 127.0.0.11:53 inside the namespace at `netnsPath`
   * (setns on the main thread, sockets created synchronously with `Deno.listenDatagram` and
   * `Deno.listen`, setns back). Idempotent: a second call for the same namespace does
   * nothing; with another path, or a new namespace at the same path (a recreated sandbox),
   * the listeners move there. Throws an error naming the sandbox and the path when the
   * namespace cannot be entered or the address is taken there. Queries reach the listeners
   * only once the sandbox's loopback is up.
   */
  async addSandbox(sandboxId: string, netnsPath: string): Promise<void> {
    if (this.#closed) throw new Error("Cannot add a sandbox to the DNS service: it is closed");
    const existing = this.#sandboxes.get(sandboxId);
    if (existing?.netnsPath === netnsPath && existing.inode === inodeOf(netnsPath)) return;
    if (existing) await this.removeSandbox(sandboxId);
    if (this.#sandboxes.has(sandboxId)) return; // a concurrent call got there first
    let sockets: [Deno.DatagramConn, Deno.Listener];
    let inode = -1;
    try {
      inode = netnsInode(netnsPath);
      sockets = withNetns(netnsPath, () => {
        const udp = Deno.listenDatagram({
          hostname: this.#address,
          port: this.#port,
          transport: "udp",
        });
        try {
          return [udp, Deno.listen({ hostname: this.#address, port: this.#port })];
        } catch (err) {
          udp.close();
          throw err;
        }
      });
    } catch (err) {
      throw withAction(
        `Cannot start the embedded DNS of sandbox ${sandboxId} on ${this.#address}:${this.#port} in "${netnsPath}"`,
        err,
      );
    }
    const l: SandboxListeners = {
      id: sandboxId,
      netnsPath,
      inode,
      udp: sockets[0],
      tcp: sockets[1],
      conns: new Set(),
      closed: false,
      loops: [],
    };
    this.#sandboxes.set(sandboxId, l);
    l.loops.push(this.#udpLoop(l), this.#tcpLoop(l));
  }

  /** Closes a sandbox's listeners and connections; unknown ids are ignored. */
  async removeSandbox(sandboxId: string): Promise<void> {
    const l = this.#sandboxes.get(sandboxId);
    if (!l) return;
    this.#sandboxes.delete(sandboxId);
    l.closed = true;
    for (const c of [l.udp, l.tcp, ...l.conns]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await Promise.allSettled(l.loops);
  }

  /** True when the sandbox has listeners. */
  hasSandbox(sandboxId: string): boolean {
    return this.#sandboxes.has(sandboxId);
  }

  /**
   * Records (or replaces) an endpoint's names and addresses. Takes effect at once: the
   * next query sees it. Throws InvalidArgumentError for an address of the wrong family.
   */
  upsertEndpoint(ep: DnsEndpoint): void {
    this.#resolver.records.upsert(ep);
  }

  /** Forgets a sandbox's endpoint on a network, at once; unknown pairs are ignored. */
  removeEndpoint(sandboxId: string, networkId: string): void {
    this.#resolver.records.remove(sandboxId, networkId);
  }

  /** Counters since the service started. */
  stats(): DnsServiceStats {
    let tcp = 0;
    for (const l of this.#sandboxes.values()) tcp += l.conns.size;
    return {
      ...this.#resolver.stats,
      sandboxes: this.#sandboxes.size,
      tcpConnections: tcp,
      tcpEvicted: this.#tcpEvicted,
      sendDropped: this.#sendDropped,
    };
  }

  /** Closes every listener and the upstream sockets. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#sandboxes.keys()].map((id) => this.removeSandbox(id)));
    await this.#forwarder?.close();
  }

  /** Same as {@linkcode close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #send(l: SandboxListeners, reply: Uint8Array, addr: Deno.Addr): void {
    if (l.closed) return;
    if (this.#pendingSends >= MAX_PENDING_SENDS) {
      this.#sendDropped++;
      return;
    }
    this.#pendingSends++;
    l.udp.send(reply, addr).then(this.#sent, this.#sent);
  }

  async #udpLoop(l: SandboxListeners): Promise<void> {
    const buf = new Uint8Array(UDP_BUFFER);
    const udp = l.udp;
    let failures = 0;
    while (!l.closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await udp.receive(buf);
        failures = 0;
      } catch (err) {
        if (l.closed || err instanceof Deno.errors.BadResource) return;
        if (++failures === 1) this.#log(`dns: sandbox ${l.id}: UDP receive failed: ${err}`);
        if (failures > 100) await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      try {
        const reply = this.#resolver.answer(l.id, data, false);
        if (reply === null) continue;
        if (reply instanceof Uint8Array) this.#send(l, reply, addr);
        else {
          const to = addr;
          reply.then((r) => r && this.#send(l, r, to), () => {});
        }
      } catch (err) {
        this.#log(`dns: sandbox ${l.id}: internal error on a query: ${err}`);
      }
    }
  }

  async #tcpLoop(l: SandboxListeners): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await l.tcp.accept();
      } catch (err) {
        if (l.closed || err instanceof Deno.errors.BadResource) return;
        this.#log(`dns: sandbox ${l.id}: TCP accept failed: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (l.closed) {
        try {
          conn.close();
        } catch { /* closed */ }
        continue;
      }
      if (l.conns.size >= this.#maxTcp) {
        // Full: the oldest connection makes room, so idle connections cannot lock new
        // clients out (its loop sees the close and ends).
        const oldest = l.conns.values().next().value!;
        l.conns.delete(oldest);
        this.#tcpEvicted++;
        try {
          oldest.close();
        } catch { /* closed */ }
      }
      l.conns.add(conn);
      this.#serveTcp(l, conn).finally(() => l.conns.delete(conn));
    }
  }

  /** Serves one TCP connection: 2-byte length framing, several queries in turn. */
  async #serveTcp(l: SandboxListeners, conn: Deno.Conn): Promise<void> {
    let buf = new Uint8Array(1024);
    let have = 0;
    const close = () => {
      try {
        conn.close();
      } catch { /* closed */ }
    };
    let timer = setTimeout(close, this.#idleMs);
    try {
      for (;;) {
        while (have >= 2) {
          const len = (buf[0] << 8) | buf[1];
          if (have < 2 + len) break;
          const msg = buf.slice(2, 2 + len);
          buf.copyWithin(0, 2 + len, have);
          have -= 2 + len;
          let reply: Uint8Array | null;
          try {
            const r = this.#resolver.answer(l.id, msg, true);
            reply = r instanceof Promise ? await r : r;
          } catch (err) {
            this.#log(`dns: sandbox ${l.id}: internal error on a TCP query: ${err}`);
            reply = null;
          }
          if (reply && !l.closed) {
            const framed = new Uint8Array(reply.length + 2);
            framed[0] = reply.length >> 8;
            framed[1] = reply.length & 0xff;
            framed.set(reply, 2);
            await writeAll(conn, framed);
          }
        }
        if (have === buf.length) {
          if (buf.length >= MAX_TCP_BUFFER) return; // cannot happen with 2-byte lengths
          const bigger = new Uint8Array(Math.min(buf.length * 4, MAX_TCP_BUFFER));
          bigger.set(buf.subarray(0, have));
          buf = bigger;
        }
        const n = await conn.read(buf.subarray(have));
        if (n === null) return;
        have += n;
        clearTimeout(timer);
        timer = setTimeout(close, this.#idleMs);
      }
    } catch {
      // the client went away, or the idle timer closed the connection
    } finally {
      clearTimeout(timer);
      close();
    }
  }
}
