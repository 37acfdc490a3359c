/**
 * Unit tests of the wire format (no root): the hand parser against dns-packet on many query
 * shapes, templates decoded by dns-packet, shuffling, truncation and error replies.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { dec, dnsPacket, enc } from "./test_util.ts";
import {
  buildTemplate,
  isFailure,
  type ParsedQuery,
  parseQuery,
  RCODE,
  rcodeReply,
  renderTemplate,
  reverseName,
  TYPE_A,
  TYPE_AAAA,
  TYPE_PTR,
} from "./wire.ts";
import { tryParseIp } from "../model/ip.ts";

type Q = dnsPacket.Packet;

function parsed(b: Uint8Array): ParsedQuery {
  const r = parseQuery(b);
  assert.ok(!isFailure(r), `expected a query, got ${JSON.stringify(r)}`);
  return r;
}

const TYPE_CODES: Record<string, number> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  ANY: 255,
};

Deno.test("hand parser agrees with dns-packet on many query shapes", () => {
  const names = [
    "web",
    "WeB",
    "web.",
    "c1.net1",
    "a.b.c.d.e.f.example.com",
    "x".repeat(63) + "." + "y".repeat(63),
    "under_score-dash.net",
    "2.0.1.10.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
    ".",
  ];
  const types = Object.keys(TYPE_CODES);
  let n = 0;
  for (const name of names) {
    for (const type of types) {
      for (const edns of [undefined, 512, 1232, 4096, 100]) {
        for (const rd of [true, false]) {
          const pkt: Q = {
            type: "query",
            id: (n * 7919) & 0xffff,
            flags: rd ? dnsPacket.RECURSION_DESIRED : 0,
            questions: [{ name, type: type as dnsPacket.RecordType, class: "IN" }],
            additionals: edns === undefined
              ? []
              : [{ type: "OPT", name: ".", udpPayloadSize: edns, options: [] } as never],
          };
          const bytes = enc(pkt);
          const ref = dec(bytes);
          const q = parsed(bytes);
          const refName = ref.questions![0].name.toLowerCase().replace(/\.$/, "");
          assert.equal(q.name, refName === "." ? "" : refName, name);
          assert.equal(q.qtype, TYPE_CODES[ref.questions![0].type]);
          assert.equal(q.qclass, 1);
          assert.equal(q.edns, edns !== undefined);
          assert.equal(q.udpSize, edns === undefined ? 512 : Math.max(512, edns));
          assert.equal(q.plain, true);
          // the question bytes end where dns-packet's question ends
          const qOnly = enc({ ...pkt, additionals: [] });
          assert.equal(q.questionEnd, qOnly.length);
          n++;
        }
      }
    }
  }
  assert.ok(n > 500);
});

Deno.test("hand parser: EDNS options, DO bit, classes and 0x20 case", () => {
  const bytes = enc({
    type: "query",
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: "MiXeD.CaSe.NeT", type: "A", class: "ANY" }],
    additionals: [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 1400,
      flags: dnsPacket.DNSSEC_OK,
      options: [{ code: 10, data: Buffer.from("0123456789abcdef") }, { code: 12, length: 20 }],
    } as never],
  });
  const q = parsed(bytes);
  assert.equal(q.name, "mixed.case.net");
  assert.equal(q.qclass, 255);
  assert.equal(q.udpSize, 1400);
  assert.ok(q.edns);
});

Deno.test("hand parser: odd bytes make a name non-plain", () => {
  // a label holding a dot: "a.b" as ONE label must not match the name a.b
  const raw = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 97, 46, 98, 0, 0, 1, 0, 1]);
  const q = parsed(raw);
  assert.equal(q.plain, false);
  const space = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 97, 32, 0, 0, 1, 0, 1]);
  assert.equal(parsed(space).plain, false);
  const high = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 97, 200, 0, 0, 1, 0, 1]);
  assert.equal(parsed(high).plain, false);
});

Deno.test("hand parser: failures (drop, FORMERR, NOTIMP)", () => {
  const good = enc({ type: "query", id: 1, questions: [{ name: "web", type: "A" }] });
  const cases: [string, Uint8Array, "drop" | number][] = [
    ["empty", new Uint8Array(0), "drop"],
    ["runt header", good.subarray(0, 11), "drop"],
    [
      "a response",
      (() => {
        const b = good.slice();
        b[2] |= 0x80;
        return b;
      })(),
      "drop",
    ],
    [
      "opcode STATUS",
      (() => {
        const b = good.slice();
        b[2] = (b[2] & 0x87) | (2 << 3);
        return b;
      })(),
      RCODE.NOTIMP,
    ],
    [
      "opcode UPDATE",
      (() => {
        const b = good.slice();
        b[2] = (b[2] & 0x87) | (5 << 3);
        return b;
      })(),
      RCODE.NOTIMP,
    ],
    ["no question", good.subarray(0, 12).map((x, i) => (i === 5 ? 0 : x)), RCODE.FORMERR],
    [
      "two questions",
      enc({
        type: "query",
        id: 1,
        questions: [{ name: "a", type: "A" }, { name: "b", type: "A" }],
      }),
      RCODE.FORMERR,
    ],
    ["header only, qdcount 1", good.subarray(0, 12), RCODE.FORMERR],
    ["question cut in the name", good.subarray(0, 14), RCODE.FORMERR],
    ["question cut in the type", good.subarray(0, good.length - 2), RCODE.FORMERR],
    [
      "compression pointer in the question",
      new Uint8Array([
        0,
        1,
        1,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0xc0,
        12,
        0,
        1,
        0,
        1,
      ]),
      RCODE.FORMERR,
    ],
    ["label type 0x40", new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 0]), 1],
    [
      "3 additionals",
      (() => {
        const b = good.slice();
        b[11] = 3;
        return b;
      })(),
      RCODE.FORMERR,
    ],
    [
      "additional promised, missing",
      (() => {
        const b = good.slice();
        b[11] = 1;
        return b;
      })(),
      RCODE.FORMERR,
    ],
    [
      "two OPT records",
      enc({
        type: "query",
        id: 1,
        questions: [{ name: "web", type: "A" }],
        additionals: [
          { type: "OPT", name: ".", udpPayloadSize: 1000 } as never,
          { type: "OPT", name: ".", udpPayloadSize: 1000 } as never,
        ],
      }),
      RCODE.FORMERR,
    ],
  ];
  // a name longer than 255 bytes
  const long = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 5; i++) long.push(60, ...new Array(60).fill(97));
  long.push(0, 0, 1, 0, 1);
  cases.push(["name over 255 bytes", new Uint8Array(long), RCODE.FORMERR]);
  for (const [label, bytes, want] of cases) {
    const r = parseQuery(bytes);
    assert.ok(isFailure(r), label);
    if (want === "drop") assert.equal(r.drop, true, label);
    else assert.deepEqual(r, { drop: false, rcode: want }, label);
  }
});

Deno.test("hand parser: a non-OPT additional (TSIG-like) and an answer record are skipped", () => {
  const bytes = enc({
    type: "query",
    id: 9,
    questions: [{ name: "web", type: "A" }],
    answers: [{ type: "A", name: "web", ttl: 1, data: "10.0.0.1" }],
    additionals: [
      { type: "TXT", name: "key", data: "x" },
      { type: "OPT", name: ".", udpPayloadSize: 2000 } as never,
    ],
  });
  const q = parsed(bytes);
  assert.equal(q.name, "web");
  assert.equal(q.udpSize, 2000);
});

Deno.test("random bytes never throw from the parser", () => {
  for (let i = 0; i < 20000; i++) {
    const b = crypto.getRandomValues(new Uint8Array(Math.floor(Math.random() * 80)));
    if (i % 2 && b.length >= 6) {
      b[2] &= 0x07; // make it look like a query more often
      b[4] = 0;
      b[5] = 1;
    }
    parseQuery(b);
  }
});

Deno.test("templates decode with dns-packet: A, AAAA, PTR, NODATA; ID, flags, question patched", () => {
  const query = enc({
    type: "query",
    id: 0xbeef,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED,
    questions: [{ name: "WeB.NeT", type: "A" }],
  });
  const q = parsed(query);
  const t = buildTemplate(q.name, TYPE_A, { addresses: ["10.0.0.2", "10.0.0.3"] });
  const out = dec(renderTemplate(t, query, q.questionEnd, 512, false));
  assert.equal(out.id, 0xbeef);
  assert.equal(out.type, "response");
  assert.equal(out.rcode, "NOERROR");
  assert.equal(out.flag_rd, true);
  assert.equal(out.flag_ra, true);
  assert.equal(out.flag_cd, true);
  assert.equal(out.flag_aa, false);
  assert.equal(out.flag_tc, false);
  assert.equal(out.questions![0].name, "WeB.NeT");
  assert.deepEqual(out.answers!.map((a) => [a.name, a.type, a.ttl]), [
    ["WeB.NeT", "A", 600],
    ["WeB.NeT", "A", 600],
  ]);
  assert.deepEqual(out.answers!.map((a) => a.data).sort(), ["10.0.0.2", "10.0.0.3"]);

  const q6 = enc({ type: "query", id: 2, questions: [{ name: "web", type: "AAAA" }] });
  const t6 = buildTemplate("web", TYPE_AAAA, { addresses: ["fd00::2"] });
  const o6 = dec(renderTemplate(t6, q6, parsed(q6).questionEnd, 512, false));
  assert.equal(o6.flag_rd, false);
  assert.deepEqual(o6.answers!.map((a) => [a.type, a.data]), [["AAAA", "fd00::2"]]);

  const rev = reverseName(4, tryParseIp("10.0.0.2")!.value);
  assert.equal(rev, "2.0.0.10.in-addr.arpa");
  const qp = enc({ type: "query", id: 3, questions: [{ name: rev, type: "PTR" }] });
  const tp = buildTemplate(rev, TYPE_PTR, { ptrTarget: "c1.net1." });
  const op = dec(renderTemplate(tp, qp, parsed(qp).questionEnd, 512, false));
  assert.deepEqual(op.answers!.map((a) => [a.name, a.type, a.data, a.ttl]), [
    [rev, "PTR", "c1.net1", 600],
  ]);

  const tn = buildTemplate("web", TYPE_AAAA, { addresses: [] });
  const on = dec(renderTemplate(tn, q6, parsed(q6).questionEnd, 512, false));
  assert.equal(on.rcode, "NOERROR");
  assert.equal(on.answers!.length, 0);
});

Deno.test("several addresses come in varying orders; all orders appear over many renders", () => {
  const query = enc({ type: "query", id: 1, questions: [{ name: "svc", type: "A" }] });
  const q = parsed(query);
  const ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
  const t = buildTemplate("svc", TYPE_A, { addresses: ips });
  const seen = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const ans = dec(renderTemplate(t, query, q.questionEnd, 512, false)).answers!.map((a) =>
      a.data as string
    );
    assert.deepEqual([...ans].sort(), ips);
    seen.add(ans.join(","));
  }
  assert.equal(seen.size, 6); // 3! orders
  // the template itself is never changed by a render
  assert.deepEqual(
    dec(t.bytes).answers!.map((a) => a.data),
    ips,
  );
});

Deno.test("UDP truncation at 512 or the EDNS size sets TC; TCP carries everything", () => {
  const ips = Array.from({ length: 100 }, (_, i) => `10.0.${i >> 8}.${(i & 255) + 1}`);
  const t = buildTemplate("many", TYPE_A, { addresses: ips });
  const plain = enc({ type: "query", id: 1, questions: [{ name: "many", type: "A" }] });
  const q = parsed(plain);
  const udp = renderTemplate(t, plain, q.questionEnd, q.udpSize, false);
  assert.ok(udp.length <= 512);
  const du = dec(udp);
  assert.equal(du.flag_tc, true);
  assert.equal(du.answers!.length, Math.floor((512 - 12 - 10) / 16)); // 30
  const edns = enc({
    type: "query",
    id: 1,
    questions: [{ name: "many", type: "A" }],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
  });
  const qe = parsed(edns);
  const de = dec(renderTemplate(t, edns, qe.questionEnd, qe.udpSize, false));
  assert.equal(de.flag_tc, true);
  assert.equal(de.answers!.length, Math.floor((1232 - 22) / 16));
  const dt = dec(renderTemplate(t, plain, q.questionEnd, 65535, true));
  assert.equal(dt.flag_tc, false);
  assert.equal(dt.answers!.length, 100);
  // a small answer under a large EDNS size is not truncated
  const small = buildTemplate("many", TYPE_A, { addresses: ips.slice(0, 2) });
  assert.equal(dec(renderTemplate(small, edns, qe.questionEnd, qe.udpSize, false)).flag_tc, false);
});

Deno.test("rcode replies: header-only FORMERR/NOTIMP, SERVFAIL with the question", () => {
  const query = enc({
    type: "query",
    id: 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: "x.example", type: "A" }],
  });
  const sf = dec(rcodeReply(query, RCODE.SERVFAIL, parsed(query).questionEnd));
  assert.equal(sf.id, 0x1234);
  assert.equal(sf.rcode, "SERVFAIL");
  assert.equal(sf.questions![0].name, "x.example");
  assert.equal(sf.flag_rd, true);
  const fe = dec(rcodeReply(query, RCODE.FORMERR));
  assert.equal(fe.rcode, "FORMERR");
  assert.equal(fe.type, "response");
  assert.equal(fe.questions!.length, 0);
});

Deno.test("reverse names of IPv6 addresses", () => {
  assert.equal(
    reverseName(6, tryParseIp("fd00::2")!.value),
    "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
  );
});
