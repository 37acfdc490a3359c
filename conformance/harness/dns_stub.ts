/**
 * A tiny authoritative DNS stub for the probe tests (no dependencies): serves the records
 * given as arguments over UDP and TCP and answers NXDOMAIN to anything else.
 *
 * `deno run --unstable-net --allow-net dns_stub.ts LISTEN_IP PORT NAME=A_ADDR... PTR:NAME=TARGET...`
 * @module
 */

type Rec = { type: number; data: Uint8Array };

function encodeName(name: string): Uint8Array {
  const out: number[] = [];
  for (const label of name.replace(/\.$/, "").split(".").filter(Boolean)) {
    out.push(label.length, ...new TextEncoder().encode(label));
  }
  out.push(0);
  return new Uint8Array(out);
}

const records = new Map<string, Rec[]>();
for (const arg of Deno.args.slice(2)) {
  const [lhs, value] = arg.split("=");
  const isPtr = lhs.startsWith("PTR:");
  const name = (isPtr ? lhs.slice(4) : lhs).toLowerCase().replace(/\.$/, "");
  const rec: Rec = isPtr
    ? { type: 12, data: encodeName(value) }
    : { type: 1, data: new Uint8Array(value.split(".").map(Number)) };
  records.set(name, [...(records.get(name) ?? []), rec]);
}

function answer(query: Uint8Array): Uint8Array {
  let at = 12;
  const labels: string[] = [];
  while (query[at] !== 0) {
    labels.push(new TextDecoder().decode(query.subarray(at + 1, at + 1 + query[at])));
    at += query[at] + 1;
  }
  at += 1;
  const qtype = (query[at] << 8) | query[at + 1];
  const questionEnd = at + 4;
  const name = labels.join(".").toLowerCase();
  const known = records.get(name);
  const matching = (known ?? []).filter((r) => r.type === qtype);
  const rcode = known ? 0 : 3;
  const out: number[] = [
    query[0],
    query[1],
    0x84 | (query[2] & 0x01), // QR, AA, RD copied
    0x80 | rcode, // RA
    0,
    1,
    0,
    matching.length,
    0,
    0,
    0,
    0,
    ...query.subarray(12, questionEnd),
  ];
  for (const r of matching) {
    out.push(0xc0, 0x0c, 0, r.type, 0, 1, 0, 0, 0x02, 0x58, 0, r.data.length, ...r.data);
  }
  return new Uint8Array(out);
}

const [ip, portText] = Deno.args;
const port = Number(portText);
const udp = Deno.listenDatagram({ hostname: ip, port, transport: "udp" });
const tcp = Deno.listen({ hostname: ip, port });

(async () => {
  for await (const conn of tcp) {
    (async () => {
      try {
        const buf = new Uint8Array(4096);
        let len = 0;
        while (len < 2 || len < 2 + ((buf[0] << 8) | buf[1])) {
          const n = await conn.read(buf.subarray(len));
          if (n === null) return;
          len += n;
        }
        const reply = answer(buf.subarray(2, 2 + ((buf[0] << 8) | buf[1])));
        await conn.write(new Uint8Array([reply.length >> 8, reply.length & 0xff, ...reply]));
      } catch {
        /* client went away */
      } finally {
        conn.close();
      }
    })();
  }
})();

for await (const [data, addr] of udp) {
  try {
    await udp.send(answer(data), addr);
  } catch { /* ignore malformed */ }
}
