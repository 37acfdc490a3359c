/**
 * Fuzz tests of the embedded DNS with fast-check (issue 14): malformed messages (cut at every
 * length, compression pointer loops, huge section counts, random bytes, garbage TCP framing,
 * stalled TCP clients) never make the resolver throw or stall, and valid queries sent in
 * between keep their exact answers.
 *
 * The resolver's handler (`Resolver.answer`, what every listener calls) is driven without
 * root, in a worker (fuzz_worker.ts) so that an endless loop fails the test instead of
 * hanging it. The service's UDP loop and TCP framing are driven through a `DnsService`
 * listening on 127.0.0.1 at a free port in this process's own namespace (root: it enters the
 * namespace with setns); no traffic leaves loopback.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { isRoot } from "../../testing/mod.ts";
import type { DnsEndpoint } from "./records.ts";
import type { ResolverStats } from "./resolver.ts";
import { DnsService } from "./service.ts";
import { dec, type Decoded, ep, query } from "./test_util.ts";

/** Most time one message may take in the handler; in all (a forward too); over a socket. */
const HANDLER_MS = 250;
const STALL_MS = 2000;
const SOCKET_MS = 1000;

/** The records every test uses; queries are asked from sandbox c1, or ci (internal only). */
const ENDPOINTS: DnsEndpoint[] = [
  ep({ sandboxId: "c1", networkId: "net1", hostname: "box1", aliases: ["web"], ipv4: "10.0.0.2" }),
  ep({ sandboxId: "c2", networkId: "net1", ipv4: "10.0.0.3", ipv6: "fd00::3" }),
  ep({ sandboxId: "c3", networkId: "net2", ipv4: "10.9.0.3" }),
  ep({ sandboxId: "ci", networkId: "neti", internal: true, ipv4: "10.8.0.2" }),
];

/** A valid query and what it must get: an rcode and the answers' data (any order). */
interface ValidCase {
  sandbox: string;
  name: string;
  type: "A" | "AAAA" | "PTR" | "MX";
  rcode: string;
  data: string[];
  /** Forwarded: the answer when forwarding is possible; SERVFAIL otherwise. */
  forwarded?: boolean;
}

const VALID: ValidCase[] = [
  { sandbox: "c1", name: "c1", type: "A", rcode: "NOERROR", data: ["10.0.0.2"] },
  { sandbox: "c1", name: "box1", type: "A", rcode: "NOERROR", data: ["10.0.0.2"] },
  { sandbox: "c1", name: "web", type: "A", rcode: "NOERROR", data: ["10.0.0.2"] },
  { sandbox: "c1", name: "c2.net1", type: "A", rcode: "NOERROR", data: ["10.0.0.3"] },
  { sandbox: "c1", name: "c2", type: "AAAA", rcode: "NOERROR", data: ["fd00::3"] },
  { sandbox: "c1", name: "c1", type: "AAAA", rcode: "NOERROR", data: [] },
  { sandbox: "c1", name: "web", type: "MX", rcode: "NOERROR", data: [] },
  {
    sandbox: "c1",
    name: "2.0.0.10.in-addr.arpa",
    type: "PTR",
    rcode: "NOERROR",
    data: ["c1.net1"],
  },
  {
    sandbox: "c1",
    name: "example.com",
    type: "A",
    rcode: "NOERROR",
    data: ["192.0.2.10"],
    forwarded: true,
  },
  { sandbox: "c1", name: "c3", type: "A", rcode: "NXDOMAIN", data: [], forwarded: true },
  { sandbox: "ci", name: "ci", type: "A", rcode: "NOERROR", data: ["10.8.0.2"] },
  { sandbox: "ci", name: "example.com", type: "A", rcode: "SERVFAIL", data: [] },
];

/** A valid query as sent: the case, the name in a random 0x20 spelling, ID, EDNS size. */
interface ValidQuery {
  c: ValidCase;
  sent: string;
  id: number;
  bytes: Uint8Array;
}

const validQuery: fc.Arbitrary<ValidQuery> = fc.record({
  c: fc.constantFrom(...VALID),
  upper: fc.array(fc.boolean(), { minLength: 32, maxLength: 32 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  edns: fc.option(fc.constantFrom(512, 1232, 4096), { nil: undefined }),
}).map(({ c, upper, id, edns }) => {
  const sent = [...c.name].map((ch, i) => upper[i % 32] ? ch.toUpperCase() : ch).join("");
  return { c, sent, id, bytes: query(sent, c.type, { id, edns }) };
});

/** Asserts the reply to a valid query: ID, flags, the question as sent, the exact answers. */
function assertValid(v: ValidQuery, reply: Uint8Array | null, forwarding: boolean): void {
  const why = `${v.c.sandbox} asks ${v.sent} ${v.c.type}`;
  assert.ok(reply, `no reply: ${why}`);
  const d = dec(reply);
  const servfail = v.c.forwarded && !forwarding;
  assert.equal(d.id, v.id, why);
  assert.equal(d.type, "response", why);
  assert.equal(d.flag_tc, false, why);
  assert.equal(d.rcode, servfail ? "SERVFAIL" : v.c.rcode, why);
  assert.deepEqual(d.questions.map((q) => [q.name, q.type]), [[v.sent, v.c.type]], why);
  const data = d.answers.map((a) => String(a.data)).sort();
  assert.deepEqual(data, servfail ? [] : [...v.c.data].sort(), why);
  for (const a of d.answers) assert.equal(a.name, v.sent, why);
}

// --- malformed messages ----------------------------------------------------------------------

const HEADER = [0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]; // RD, QDCOUNT 1
const TAIL = [0, 1, 0, 1]; // A IN

const label = fc.string({ unit: fc.constantFrom(..."abcXYZ09-_"), minLength: 1, maxLength: 63 })
  .map((s) => [s.length, ...new TextEncoder().encode(s)]);

/** A name of labels and compression pointers anywhere (itself, forward, past the end). */
const pointer = fc.oneof(fc.integer({ min: 0, max: 48 }), fc.integer({ min: 0, max: 0x3fff }))
  .map((o) => [0xc0 | (o >> 8), o & 0xff]);
const pointerName = fc.array(
  fc.oneof(label, pointer),
  { minLength: 1, maxLength: 6 },
).map((parts) => [...parts.flat(), 0]);

/** A header and a question whose name holds pointers, maybe followed by records that do. */
const pointerLoops = fc.tuple(
  pointerName,
  fc.array(pointerName, { maxLength: 2 }),
  fc.uint8Array({ maxLength: 12 }),
).map(([name, owners, junk]) => {
  const records = owners.flatMap((o) => [...o, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
  const out = new Uint8Array([...HEADER, ...name, ...TAIL, ...records, ...junk]);
  out[11] = owners.length;
  return out;
});

/** A valid query with its four section counts overwritten (up to 0xffff). */
const hugeCounts = fc.tuple(
  validQuery,
  fc.array(fc.oneof(fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 4,
    maxLength: 4,
  }),
).map(([v, counts]) => {
  const b = v.bytes.slice();
  counts.forEach((n, i) => {
    b[4 + 2 * i] = n >> 8;
    b[5 + 2 * i] = n & 0xff;
  });
  return b;
});

/** A valid query cut short. */
const truncated = fc.tuple(validQuery, fc.nat()).map(([v, n]) =>
  v.bytes.slice(0, n % v.bytes.length)
);

/** A valid query with a few bytes overwritten. */
const mutated = fc.tuple(
  validQuery,
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
).map(([v, edits]) => {
  const b = v.bytes.slice();
  for (const [at, value] of edits) b[at % b.length] = value;
  return b;
});

/** A valid question with random additional records (OPT-like, odd lengths). */
const garbageRecords = fc.tuple(
  fc.integer({ min: 1, max: 2 }),
  fc.uint8Array({ minLength: 0, maxLength: 40 }),
  fc.integer({ min: 0, max: 0xffff }),
).map(([n, junk, rdlen]) => {
  const out = new Uint8Array([...HEADER, 1, 97, 0, ...TAIL, 0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
  out[11] = n;
  return new Uint8Array([...out, rdlen >> 8, rdlen & 0xff, ...junk]);
});

/** Random bytes that often look like a query header. */
const headerLike = fc.uint8Array({ minLength: 12, maxLength: 300 }).map((b) => {
  b[2] &= 0x79;
  b[4] = 0;
  b[5] = 1;
  return b;
});

const malformed: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 700 }),
  headerLike,
  truncated,
  mutated,
  hugeCounts,
  pointerLoops,
  garbageRecords,
);

/**
 * Asserts a reply to an arbitrary message: none, or a response with the message's ID and
 * opcode that dns-packet decodes.
 */
function assertSane(msg: Uint8Array, reply: Uint8Array | null): void {
  if (reply === null) return;
  assert.ok(reply.length >= 12);
  assert.equal(reply[0], msg[0]);
  assert.equal(reply[1], msg[1]);
  assert.ok(reply[2] & 0x80, "QR set");
  assert.equal(reply[2] & 0x78, msg[2] & 0x78, "opcode kept");
  dec(reply);
}

/** `p`, or `fallback` when it takes longer than `ms`. */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<F>((r) => timer = setTimeout(() => r(fallback), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const STALLED = Symbol("stalled");
type WorkerReply = {
  reply?: Uint8Array | null;
  took?: number;
  error?: string;
  stats?: ResolverStats;
};

/**
 * The resolver's handler in a worker (fuzz_worker.ts), so that an endless loop on a message
 * is a failure naming it rather than a hung test: each message must be answered within
 * STALL_MS (a forward included) after at most HANDLER_MS in the handler itself. After a
 * stall every later message fails at once, naming the first culprit (Deno cannot stop a
 * worker stuck in a loop, so no new one is started).
 */
class Handler implements Disposable {
  readonly #worker: Worker;
  readonly #ready: Promise<void>;
  readonly #waiting = new Map<number, (r: WorkerReply) => void>();
  #next = 0;
  #hung?: string;

  constructor(forward: boolean) {
    this.#worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url).href, {
      type: "module",
    });
    let ready!: () => void;
    this.#ready = new Promise<void>((r) => ready = r);
    this.#worker.onmessage = (e: MessageEvent) => {
      if (e.data.ready) ready();
      this.#waiting.get(e.data.id)?.(e.data);
      this.#waiting.delete(e.data.id);
    };
    this.#worker.postMessage({ init: ENDPOINTS, forward });
  }

  async #ask(m: Record<string, unknown>, what: string): Promise<WorkerReply> {
    // the worker's start (loading and checking its modules) is not the handler's time
    const started = await within(this.#ready, 30_000, STALLED);
    assert.notEqual(started, STALLED, "the worker did not start");
    assert.ok(this.#hung === undefined, `the handler hung earlier, on ${this.#hung}`);
    const id = this.#next++;
    const got = new Promise<WorkerReply>((r) => this.#waiting.set(id, r));
    this.#worker.postMessage({ id, ...m });
    const r = await within(got, STALL_MS, STALLED);
    if (r !== STALLED) return r;
    this.#hung ??= what;
    throw new assert.AssertionError({ message: `no reply within ${STALL_MS} ms to ${what}` });
  }

  /** The reply to one message (null: silence). */
  async answer(sandbox: string, msg: Uint8Array, tcp: boolean): Promise<Uint8Array | null> {
    const hex = [...msg].map((b) => b.toString(16).padStart(2, "0")).join("");
    const r = await this.#ask({ sandbox, msg, tcp }, hex);
    assert.equal(r.error, undefined, `the handler threw on ${hex}`);
    assert.ok(r.took! < HANDLER_MS, `${r.took!.toFixed(1)} ms in the handler on ${hex}`);
    return r.reply ?? null;
  }

  async stats(): Promise<ResolverStats> {
    return (await this.#ask({ stats: true }, "a stats request")).stats!;
  }

  [Symbol.dispose](): void {
    this.#worker.terminate();
  }
}

// --- the handler, without sockets ------------------------------------------------------------

Deno.test("fuzz: a valid query cut at every length is dropped or FORMERR; answers go on", async () => {
  using r = new Handler(true);
  let n = 0;
  for (const c of VALID) {
    for (const edns of [undefined, 1232]) {
      const full = query(c.name, c.type, { id: 0x4321, edns });
      for (let len = 0; len < full.length; len++) {
        const cut = full.slice(0, len);
        const reply = await r.answer(c.sandbox, cut, len % 2 === 0);
        if (len < 12) assert.equal(reply, null, `cut at ${len}`);
        else {
          assert.ok(reply, `cut at ${len}`);
          const d = dec(reply);
          assert.equal(d.rcode, "FORMERR", `cut at ${len}`);
          assert.equal(d.id, 0x4321);
          assert.equal(reply.length, 12, "a bare header");
        }
        const v = fc.sample(validQuery, { seed: n++, numRuns: 1 })[0];
        assertValid(v, await r.answer(v.c.sandbox, v.bytes, len % 3 === 0), true);
      }
    }
  }
});

Deno.test("fuzz: malformed messages never throw or stall; valid queries between them are exact", async () => {
  using r = new Handler(true);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(malformed, fc.boolean()), { minLength: 1, maxLength: 8 }),
      fc.array(validQuery, { minLength: 1, maxLength: 3 }),
      async (bad, valid) => {
        // the malformed ones and the valid ones interleaved, forwarded ones in flight together
        const pending: Promise<void>[] = [];
        bad.forEach(([msg, tcp], i) => {
          pending.push(r.answer("c1", msg, tcp).then((reply) => assertSane(msg, reply)));
          const v = valid[i % valid.length];
          if (i < valid.length) {
            pending.push(r.answer(v.c.sandbox, v.bytes, tcp).then((x) => assertValid(v, x, true)));
          }
        });
        await Promise.all(pending);
      },
    ),
    { seed: 1414, numRuns: 1500 },
  );
  const s = await r.stats();
  assert.equal(s.queries, s.dropped + s.rejected + s.local + s.forwarded + s.servfail);
  assert.ok(s.dropped > 0 && s.rejected > 0 && s.local > 0 && s.forwarded > 0, JSON.stringify(s));
});

Deno.test("fuzz: compression pointer loops and long names: FORMERR past 255 bytes, as miekg/dns", async () => {
  using r = new Handler(true);
  // names of 4-5 long labels: their wire length is around the 255-byte limit
  const longName = fc.array(fc.integer({ min: 45, max: 63 }), { minLength: 4, maxLength: 5 })
    .map((lens) => ({ lens, wire: lens.reduce((a, l) => a + l + 1, 1) }));
  await fc.assert(
    fc.asyncProperty(longName, fc.boolean(), async ({ lens, wire }, tcp) => {
      const name = lens.flatMap((l, i) => [l, ...new Array(l).fill(97 + (i % 26))]);
      const msg = new Uint8Array([...HEADER, ...name, 0, ...TAIL]);
      const reply = await r.answer("c1", msg, tcp);
      assertSane(msg, reply);
      const d = dec(reply!);
      if (wire > 255) assert.equal(d.rcode, "FORMERR", `a ${wire}-byte name`);
      else assert.notEqual(d.rcode, "FORMERR", `a ${wire}-byte name`);
    }),
    { seed: 255, numRuns: 300 },
  );
  await fc.assert(
    fc.asyncProperty(pointerLoops, fc.boolean(), async (msg, tcp) => {
      const reply = await r.answer("c1", msg, tcp);
      assertSane(msg, reply);
      // a lone question has nothing earlier to point to
      if (msg.subarray(12).some((b) => (b & 0xc0) === 0xc0)) {
        const q = msg.subarray(12);
        let at = 0;
        while (at < q.length && q[at] !== 0 && (q[at] & 0xc0) === 0) at += q[at] + 1;
        if (at < q.length && (q[at] & 0xc0) === 0xc0) assert.equal(dec(reply!).rcode, "FORMERR");
      }
    }),
    { seed: 3, numRuns: 500 },
  );
});

// --- the service on 127.0.0.1 (root) ---------------------------------------------------------

/** A port free for both UDP and TCP on 127.0.0.1. */
function freePort(): number {
  for (;;) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" }).close();
      return port;
    } catch {
      /* taken for UDP */
    } finally {
      tcp.close();
    }
  }
}

/** A service without upstreams listening on 127.0.0.1 for sandboxes c1 and ci. */
async function withService(
  fn: (ports: { c1: number; ci: number }, svc: DnsService) => Promise<void>,
): Promise<void> {
  const logs: string[] = [];
  const services: DnsService[] = [];
  const ports: Record<string, number> = {};
  try {
    for (const sandbox of ["c1", "ci"]) {
      for (let attempt = 0;; attempt++) {
        const port = freePort();
        const svc = new DnsService({
          upstreams: [],
          address: "127.0.0.1",
          port,
          tcpIdleTimeoutMs: 1500,
          maxTcpConnectionsPerSandbox: 8,
          log: (l) => logs.push(l),
        });
        try {
          // this process's own namespace: the sockets stay on its loopback
          await svc.addSandbox(sandbox, "/proc/self/ns/net");
        } catch (err) {
          await svc.close();
          if (attempt < 5) continue; // the free port was taken meanwhile
          throw err;
        }
        for (const e of ENDPOINTS) svc.upsertEndpoint(e);
        services.push(svc);
        ports[sandbox] = port;
        break;
      }
    }
    await fn({ c1: ports.c1, ci: ports.ci }, services[0]);
  } finally {
    for (const s of services) await s.close();
  }
  assert.deepEqual(logs, []);
}

function frame(msg: Uint8Array): Uint8Array {
  return new Uint8Array([msg.length >> 8, msg.length & 0xff, ...msg]);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
}

async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const r = await conn.read(out.subarray(at));
    if (r === null) return null;
    at += r;
  }
  return out;
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* closed */ }
}

/**
 * Sends `before` (datagrams, or bytes on the connection) and then the valid query over one
 * UDP socket or TCP connection; asserts its answer comes within SOCKET_MS and returns the
 * replies that came first (to `before`).
 */
async function thenValid(
  port: number,
  before: Uint8Array[],
  v: ValidQuery,
  tcp: boolean,
): Promise<Decoded[]> {
  const conn = tcp ? await Deno.connect({ hostname: "127.0.0.1", port }) : undefined;
  const udp = tcp
    ? undefined
    : Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const sock = (conn ?? udp)!;
  const timer = setTimeout(() => closeQuietly(sock), SOCKET_MS);
  const replies: Decoded[] = [];
  try {
    if (conn) {
      await writeAll(conn, new Uint8Array([...before.flatMap((b) => [...b]), ...frame(v.bytes)]));
    } else {
      const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
      for (const b of before) await udp!.send(b, to);
      await udp!.send(v.bytes, to);
    }
    for (;;) {
      let msg: Uint8Array | null;
      if (conn) {
        const head = await readExact(conn, 2);
        msg = head && await readExact(conn, (head[0] << 8) | head[1]);
      } else msg = (await udp!.receive())[0];
      assert.ok(msg, "the connection ended before the valid answer");
      const d = dec(msg);
      if (d.id === v.id && d.questions.length === 1 && d.questions[0].name === v.sent) {
        assertValid(v, msg, false);
        return replies;
      }
      replies.push(d);
    }
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    throw new assert.AssertionError({
      message: `no answer to ${v.sent} ${v.c.type} within ${SOCKET_MS} ms (${
        tcp ? "TCP" : "UDP"
      }): ${err}`,
    });
  } finally {
    clearTimeout(timer);
    closeQuietly(sock);
  }
}

/** At most one reply per malformed message, each a response with the ID of one of them. */
function assertRepliesTo(bad: Uint8Array[], replies: Decoded[]): void {
  assert.ok(replies.length <= bad.length, `${replies.length} replies to ${bad.length} messages`);
  const ids = bad.filter((b) => b.length >= 12).map((b) => (b[0] << 8) | b[1]);
  for (const d of replies) {
    assert.equal(d.type, "response");
    assert.ok(ids.includes(d.id), `a reply with ID ${d.id}`);
  }
}

/** A valid query whose ID differs from every malformed message's. */
function distinct(v: ValidQuery, bad: Uint8Array[]): ValidQuery {
  let id = v.id;
  while (bad.some((b) => b.length >= 2 && ((b[0] << 8) | b[1]) === id)) id = (id + 1) & 0xffff;
  const bytes = v.bytes.slice();
  bytes[0] = id >> 8;
  bytes[1] = id & 0xff;
  return { ...v, id, bytes };
}

Deno.test({
  name: "fuzz: the service's UDP and TCP paths on 127.0.0.1 under malformed input (root)",
  ignore: !isRoot,
  async fn(t) {
    await withService(async (ports, svc) => {
      const portOf = (v: ValidQuery) => v.c.sandbox === "ci" ? ports.ci : ports.c1;

      await t.step(
        "UDP: malformed datagrams, then a valid query from the same socket",
        async () => {
          await fc.assert(
            fc.asyncProperty(
              fc.array(malformed, { minLength: 1, maxLength: 4 }),
              validQuery,
              async (bad, v0) => {
                const v = distinct(v0, bad);
                assertRepliesTo(bad, await thenValid(portOf(v), bad, v, false));
              },
            ),
            { seed: 1401, numRuns: 200 },
          );
        },
      );

      await t.step("TCP: malformed frames, then a valid one on the same connection", async () => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(malformed, { minLength: 1, maxLength: 4 }),
            validQuery,
            async (bad, v0) => {
              const v = distinct(v0, bad);
              assertRepliesTo(bad, await thenValid(portOf(v), bad.map(frame), v, true));
            },
          ),
          { seed: 1402, numRuns: 150 },
        );
      });

      await t.step(
        "TCP: garbage and cut length prefixes, then a valid query on a new connection",
        async () => {
          const garbage = fc.oneof(
            fc.uint8Array({ minLength: 1, maxLength: 3000 }), // random framing
            fc.integer({ min: 0, max: 0xff }).map((b) => new Uint8Array([b])), // half a length
            fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.uint8Array({ maxLength: 200 }))
              .map(([len, body]) =>
                new Uint8Array([len >> 8, len & 0xff, ...body.subarray(0, len - 1)])
              ),
          );
          await fc.assert(
            fc.asyncProperty(garbage, validQuery, async (bytes, v) => {
              const c = await Deno.connect({ hostname: "127.0.0.1", port: ports.c1 });
              try {
                await writeAll(c, bytes);
              } catch {
                /* closed by the server */
              } finally {
                closeQuietly(c);
              }
              await thenValid(portOf(v), [], v, true);
            }),
            { seed: 1403, numRuns: 150 },
          );
        },
      );

      await t.step(
        "TCP: clients stalled mid-frame block no one; they are closed when idle",
        async () => {
          const stalled: Deno.Conn[] = [];
          try {
            // more than the 8 connections allowed: the oldest make room
            for (let i = 0; i < 12; i++) {
              const c = await Deno.connect({ hostname: "127.0.0.1", port: ports.c1 });
              stalled.push(c);
              const q = frame(query("c1", "A"));
              await writeAll(c, q.subarray(0, 1 + (i % (q.length - 2))));
            }
            const started = Date.now();
            await fc.assert(
              fc.asyncProperty(
                validQuery,
                fc.boolean(),
                (v, tcp) => thenValid(portOf(v), [], v, tcp).then(() => {}),
              ),
              { seed: 1404, numRuns: 40 },
            );
            assert.ok(Date.now() - started < 1000, `${Date.now() - started} ms for 40 queries`);
            assert.ok(svc.stats().tcpEvicted >= 4, JSON.stringify(svc.stats()));
            // the stalled ones are closed by the server: at once (evicted) or after 1.5 s idle
            const ends = await Promise.all(
              stalled.map((c) =>
                within(
                  c.read(new Uint8Array(512)).catch(() => null),
                  4000,
                  "open",
                )
              ),
            );
            assert.deepEqual(ends, stalled.map(() => null));
          } finally {
            stalled.forEach(closeQuietly);
          }
        },
      );
    });
  },
});
