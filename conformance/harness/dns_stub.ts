/**
 * A tiny authoritative DNS stub for the probe tests: serves the records given as arguments
 * over UDP and TCP and answers NXDOMAIN to anything else.
 *
 * `deno run --unstable-net --allow-net dns_stub.ts LISTEN_IP PORT NAME=A_ADDR... PTR:NAME=TARGET...`
 *
 * Messages are decoded and encoded with dns-packet, named by its npm specifier since the
 * harness runs the stub with `--no-config`. A message shorter than a header, or a response,
 * is dropped; one that does not decode, or has other than one question, gets FORMERR; an
 * opcode other than QUERY gets NOTIMP (issue 14: a 5-byte datagram made the old hand parser
 * loop forever). TCP carries several framed queries per connection; an idle one is closed.
 * @module
 */
// deno-lint-ignore-file no-import-prefix -- the harness runs the stub with --no-config
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "npm:dns-packet@5.6.1";

/** A record the stub serves. */
export type StubRecord = { type: "A" | "PTR"; data: string };

const RCODE_FORMERR = 1;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;
const TTL = 600;
const TCP_IDLE_MS = 10_000;

/** Parses the `NAME=A_ADDR` and `PTR:NAME=TARGET` arguments. */
export function parseRecords(args: string[]): Map<string, StubRecord[]> {
  const records = new Map<string, StubRecord[]>();
  for (const arg of args) {
    const [lhs, value] = arg.split("=");
    const isPtr = lhs.startsWith("PTR:");
    const name = (isPtr ? lhs.slice(4) : lhs).toLowerCase().replace(/\.$/, "");
    const rec: StubRecord = { type: isPtr ? "PTR" : "A", data: value.replace(/\.$/, "") };
    records.set(name, [...(records.get(name) ?? []), rec]);
  }
  return records;
}

/** A header-only reply with `rcode`: the query's ID, opcode and RD, QR set. */
function rcodeOnly(msg: Uint8Array, rcode: number): Uint8Array {
  return new Uint8Array(dnsPacket.encode({
    type: "response",
    id: (msg[0] << 8) | msg[1],
    flags: ((msg[2] & 0x79) << 8) | rcode,
  }));
}

/** The reply to one message, or null to stay silent. Never throws. */
export function answer(msg: Uint8Array, records: Map<string, StubRecord[]>): Uint8Array | null {
  if (msg.length < 12 || msg[2] & 0x80) return null; // a runt or a response: no loops
  if ((msg[2] & 0x78) !== 0) return rcodeOnly(msg, RCODE_NOTIMP);
  try {
    const q = dnsPacket.decode(Buffer.from(msg));
    const question = q.questions?.length === 1 ? q.questions[0] : undefined;
    // a label dns-packet cannot give back byte for byte (not ASCII) is refused too
    if (!question || !/^[\x20-\x7e]+$/.test(question.name)) {
      return rcodeOnly(msg, RCODE_FORMERR);
    }
    const known = records.get(question.name.toLowerCase().replace(/\.$/, ""));
    const answers = (known ?? []).filter((r) => r.type === question.type).map((r) => ({
      type: r.type,
      name: question.name,
      ttl: TTL,
      data: r.data,
    }));
    return new Uint8Array(dnsPacket.encode({
      type: "response",
      id: q.id,
      // AA, RD copied, RA
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (msg[2] & 0x01) << 8 |
        dnsPacket.RECURSION_AVAILABLE | (known ? 0 : RCODE_NXDOMAIN),
      questions: [question],
      answers,
    }));
  } catch {
    return rcodeOnly(msg, RCODE_FORMERR);
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
}

/** Serves one TCP connection: 2-byte length framing, queries in turn, closed when idle. */
async function serveTcp(conn: Deno.Conn, records: Map<string, StubRecord[]>): Promise<void> {
  const buf = new Uint8Array(2 + 65535);
  let have = 0;
  let timer = setTimeout(() => conn.close(), TCP_IDLE_MS);
  try {
    for (;;) {
      while (have >= 2 && have >= 2 + ((buf[0] << 8) | buf[1])) {
        const len = (buf[0] << 8) | buf[1];
        const reply = answer(buf.slice(2, 2 + len), records);
        buf.copyWithin(0, 2 + len, have);
        have -= 2 + len;
        if (reply) {
          await writeAll(conn, new Uint8Array([reply.length >> 8, reply.length & 0xff, ...reply]));
        }
      }
      const n = await conn.read(buf.subarray(have));
      if (n === null) return;
      have += n;
      clearTimeout(timer);
      timer = setTimeout(() => conn.close(), TCP_IDLE_MS);
    }
  } catch {
    /* client went away, or idle */
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

if (import.meta.main) {
  const [ip, portText, ...rest] = Deno.args;
  const port = Number(portText);
  const records = parseRecords(rest);
  const udp = Deno.listenDatagram({ hostname: ip, port, transport: "udp" });
  const tcp = Deno.listen({ hostname: ip, port });

  (async () => {
    for (;;) {
      try {
        serveTcp(await tcp.accept(), records);
      } catch {
        await new Promise((r) => setTimeout(r, 10)); // a failed accept: go on
      }
    }
  })();

  const buf = new Uint8Array(65536);
  for (;;) {
    try {
      const [data, addr] = await udp.receive(buf);
      const reply = answer(data, records);
      if (reply) await udp.send(reply, addr);
    } catch { /* a failed receive or send: go on */ }
  }
}
