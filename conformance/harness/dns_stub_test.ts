/**
 * Tests of the stub upstream DNS server (dns_stub.ts), run as the harness runs it (a
 * subprocess, `--no-config`) on 127.0.0.1 at a free port: malformed datagrams and TCP frames
 * (issue 14: a 5-byte datagram made the old stub loop forever) are dropped or answered
 * FORMERR, and valid queries are still answered after each of them.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import fc from "fast-check";

const STUB = new URL("./dns_stub.ts", import.meta.url).pathname;
const RECORDS = ["www.example.test=192.0.2.10", "PTR:10.2.0.192.in-addr.arpa=www.example.test"];

/** A port free for both UDP and TCP on 127.0.0.1. */
function freePort(): number {
  for (;;) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" }).close();
      return port;
    } catch {
      /* taken for UDP: try another */
    } finally {
      tcp.close();
    }
  }
}

function query(name: string, type: dnsPacket.RecordType = "A", id = 0x1234): Uint8Array {
  return new Uint8Array(dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
  }));
}

/** A decoded message, loosely typed (the @types package types answers too narrowly). */
interface Decoded {
  id: number;
  type: "query" | "response";
  rcode: string;
  questions: { name: string; type: string; class: string }[];
  answers: { name: string; type: string; data: unknown }[];
}

function decode(b: Uint8Array): Decoded {
  return dnsPacket.decode(Buffer.from(b)) as unknown as Decoded;
}

/** Sends one datagram from a fresh socket; the reply, or null after `ms`. */
async function udpAsk(port: number, msg: Uint8Array, ms: number): Promise<Uint8Array | null> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(msg, { transport: "udp", hostname: "127.0.0.1", port });
    return await Promise.race([
      sock.receive().then(([d]) => d),
      new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
    ]);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
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

function frame(msg: Uint8Array): Uint8Array {
  return new Uint8Array([msg.length >> 8, msg.length & 0xff, ...msg]);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed */ }
}

/** The valid query sent after each malformed one, and the check of its answer. */
const VALID_NAME = "WWW.example.test";

function assertValidAnswer(d: Decoded, id: number, why: string): void {
  assert.equal(d.id, id, why);
  assert.equal(d.rcode, "NOERROR", why);
  assert.deepEqual(d.questions, [{ name: VALID_NAME, type: "A", class: "IN" }], why);
  assert.deepEqual(d.answers.map((a) => [a.type, a.data]), [["A", "192.0.2.10"]], why);
}

/** An ID for the valid query that differs from the one of `before`. */
function otherId(before: Uint8Array): number {
  return before.length >= 2 ? (((before[0] << 8) | before[1]) + 1) & 0xffff : 7;
}

/**
 * Sends `before` (if any) and then a valid query, in order, over one UDP socket or one TCP
 * connection (`before` already framed); asserts the valid query is answered within 2 s and
 * returns the replies that came before its answer (the ones to `before`).
 */
async function thenValid(
  port: number,
  before: Uint8Array | undefined,
  why: string,
  tcp = false,
): Promise<Decoded[]> {
  const id = before ? otherId(tcp ? before.subarray(2) : before) : 7;
  const valid = query(VALID_NAME, "A", id);
  const replies: Decoded[] = [];
  const conn = tcp ? await Deno.connect({ hostname: "127.0.0.1", port }) : undefined;
  const udp = tcp
    ? undefined
    : Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const close = () => {
    try {
      (conn ?? udp)!.close();
    } catch { /* closed */ }
  };
  const timer = setTimeout(close, 2000);
  try {
    if (conn) await writeAll(conn, new Uint8Array([...before ?? [], ...frame(valid)]));
    else {
      const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
      if (before) await udp!.send(before, to);
      await udp!.send(valid, to);
    }
    for (;;) {
      let msg: Uint8Array | null;
      if (conn) {
        const head = await readExact(conn, 2);
        msg = head && await readExact(conn, (head[0] << 8) | head[1]);
      } else msg = (await udp!.receive())[0];
      assert.ok(msg, `the connection ended before the valid query's answer (${why})`);
      const d = decode(msg);
      if (d.id === id && d.questions.length === 1 && d.questions[0].name === VALID_NAME) {
        assertValidAnswer(d, id, why);
        return replies;
      }
      replies.push(d);
    }
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    throw new assert.AssertionError({ message: `no answer to a valid query after ${why}: ${err}` });
  } finally {
    clearTimeout(timer);
    close();
  }
}

/** Asserts the replies to a malformed message: none, or one FORMERR/NOTIMP with its ID. */
function assertRejected(msg: Uint8Array, replies: Decoded[], why: string): void {
  assert.ok(replies.length <= 1, `${why}: ${replies.length} replies`);
  for (const d of replies) {
    assert.equal(d.type, "response", why);
    assert.ok(d.rcode === "FORMERR" || d.rcode === "NOTIMP", `${why}: ${d.rcode}`);
    assert.equal(d.id, (msg[0] << 8) | msg[1], why);
  }
}

/** Runs the stub as the harness does and waits until it answers. */
async function withStub(fn: (port: number) => Promise<void>): Promise<void> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-config", "--unstable-net", "--allow-net", STUB]
      .concat(["127.0.0.1", String(port), ...RECORDS]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    const deadline = Date.now() + 10_000;
    while (!await udpAsk(port, query("www.example.test"), 100)) {
      assert.ok(Date.now() < deadline, "the stub did not start");
    }
    await fn(port);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    const err = await stderr;
    assert.equal(err, "", "the stub wrote to stderr");
  }
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(b.subarray(at, at + 65536));
  return b;
}

const HEADER = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]; // ID 0x1234, RD, QDCOUNT 1
const TAIL = [0, 1, 0, 1]; // A IN

/** Malformed messages, by name. */
function malformed(): [string, Uint8Array][] {
  const q = query("www.example.test");
  const bad: [string, number[]][] = [
    ["5 bytes (issue 14)", [0x12, 0x34, 0x01, 0x00, 0x00]],
    ["empty", []],
    ["11 bytes", HEADER.slice(0, 11)],
    ["a header promising a question", HEADER],
    ["QDCOUNT 0", [...HEADER.slice(0, 5), 0]],
    ["QDCOUNT 65535", [...HEADER.slice(0, 4), 0xff, 0xff, ...HEADER.slice(6), 1, 97, 0, ...TAIL]],
    ["ANCOUNT 65535", [...HEADER.slice(0, 6), 0xff, 0xff, ...HEADER.slice(8), 1, 97, 0, ...TAIL]],
    ["ARCOUNT 65535", [...HEADER.slice(0, 10), 0xff, 0xff, 1, 97, 0, ...TAIL]],
    ["a label past the end", [...HEADER, 3, 97]],
    ["a name without type and class", [...HEADER, 1, 97, 0]],
    ["a pointer to itself", [...HEADER, 0xc0, 12, ...TAIL]],
    ["two pointers at each other", [...HEADER, 1, 97, 0xc0, 16, 0xc0, 12, ...TAIL]],
    ["a pointer forward", [...HEADER, 0xc0, 40, ...TAIL]],
    ["a pointer cut in half", [...HEADER, 0xc0]],
    ["an extended label type", [...HEADER, 0x41, 97, 0, ...TAIL]],
    ["a name longer than 255 bytes", [
      ...HEADER,
      ...Array(5).fill([63, ...Array(63).fill(97)]).flat(),
      0,
      ...TAIL,
    ]],
    ["a non-ASCII label", [...HEADER, 3, 0xff, 0xfe, 0xfd, 0, ...TAIL]],
    ["opcode NOTIFY", [0x12, 0x34, 0x21, 0x00, ...HEADER.slice(4), 1, 97, 0, ...TAIL]],
  ];
  const out: [string, Uint8Array][] = bad.map(([n, b]) => [n, new Uint8Array(b)]);
  for (let len = 0; len < q.length; len++) out.push([`a query cut at ${len}`, q.slice(0, len)]);
  return out;
}

Deno.test("dns stub: malformed datagrams are dropped or FORMERR; valid queries still answered", async () => {
  await withStub(async (port) => {
    for (const [name, msg] of malformed()) {
      assertRejected(msg, await thenValid(port, msg, name), name);
    }
    // responses are never answered (no loops between servers)
    const resp = query("www.example.test");
    resp[2] |= 0x80;
    assert.deepEqual(await thenValid(port, resp, "a response"), []);
    const huge = randomBytes(60000);
    huge[2] &= 0x7f;
    assertRejected(huge, await thenValid(port, huge, "60000 random bytes"), "60000 random bytes");
  });
});

Deno.test("dns stub: A, PTR, NXDOMAIN, NODATA answers over UDP and TCP", async () => {
  await withStub(async (port) => {
    await thenValid(port, undefined, "start");
    await thenValid(port, undefined, "start", true);
    const ptr = decode((await udpAsk(port, query("10.2.0.192.in-addr.arpa", "PTR"), 2000))!);
    assert.deepEqual(ptr.answers.map((a) => [a.type, a.data]), [["PTR", "www.example.test"]]);
    const nx = decode((await udpAsk(port, query("nope.example.test"), 2000))!);
    assert.equal(nx.rcode, "NXDOMAIN");
    const nodata = decode((await udpAsk(port, query("www.example.test", "AAAA"), 2000))!);
    assert.equal(nodata.rcode, "NOERROR");
    assert.deepEqual(nodata.answers, []);
  });
});

Deno.test("dns stub: TCP garbage, long frames and a stalled client do not stop it", async () => {
  await withStub(async (port) => {
    // a half frame, then silence: other clients are answered meanwhile
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(stalled, new Uint8Array([0x00, 0x40, 1, 2, 3]));
      await thenValid(port, undefined, "a stalled TCP client", true);
      await thenValid(port, undefined, "a stalled TCP client");
    } finally {
      closeQuietly(stalled);
    }
    // bytes that are no frame, each on a connection of its own, then closed
    for (
      const [name, bytes] of [
        ["65537 random bytes", randomBytes(65537)],
        ["one length byte", new Uint8Array([0x12])],
        ["a length with less data", new Uint8Array([0xff, 0xff, 1, 2, 3])],
      ] as const
    ) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(c, bytes);
      } catch {
        /* closed by the stub */
      } finally {
        closeQuietly(c);
      }
      await thenValid(port, undefined, name, true);
    }
    // malformed messages in frames, a valid query after each on the same connection
    const frames: [string, Uint8Array][] = [
      ["a zero-length frame", new Uint8Array(0)],
      ["a 65535-byte frame", randomBytes(65535)],
      ...malformed(),
    ];
    for (const [name, m] of frames) {
      if (m.length > 2) m[2] &= 0x7f;
      assertRejected(m, await thenValid(port, frame(m), `TCP ${name}`, true), `TCP ${name}`);
    }
  });
});

Deno.test("dns stub: random datagrams, each followed by a valid query (fast-check)", async () => {
  await withStub(async (port) => {
    const nearQuery = fc.tuple(fc.nat(40), fc.uint8Array({ maxLength: 40 })).map(([at, junk]) => {
      const q = query("www.example.test");
      return new Uint8Array([...q.subarray(0, Math.min(at, q.length)), ...junk]);
    });
    const headerLike = fc.uint8Array({ minLength: 12, maxLength: 80 }).map((b) => {
      b[2] &= 0x79; // a query, opcode QUERY mostly
      return b;
    });
    const message = fc.oneof(fc.uint8Array({ maxLength: 600 }), nearQuery, headerLike);
    await fc.assert(
      fc.asyncProperty(message, fc.boolean(), async (msg, tcp) => {
        const replies = await thenValid(port, tcp ? frame(msg) : msg, "a random message", tcp);
        // a random message may be a valid query: any reply must carry its ID
        assert.ok(replies.length <= 1);
        for (const d of replies) {
          assert.equal(d.type, "response");
          assert.equal(d.id, (msg[0] << 8) | msg[1]);
        }
      }),
      { seed: 14, numRuns: 400 },
    );
  });
});
