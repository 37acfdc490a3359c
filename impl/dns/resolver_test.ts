/**
 * Unit tests of the resolver's decisions (no root, no sockets): every semantic of issue 7
 * with a stub in place of the upstreams.
 */
import assert from "node:assert/strict";
import { type ForwardFn, Resolver } from "./resolver.ts";
import { dec, type Decoded, enc, ep, query } from "./test_util.ts";
import { type ParsedQuery, RCODE, rcodeReply } from "./wire.ts";

/** A stub upstream: knows example.com (A 192.0.2.10), NXDOMAIN for everything else. */
function stubForward(calls: { tcp: boolean; name: string }[]): ForwardFn {
  return (msg: Uint8Array, q: ParsedQuery, tcp: boolean) => {
    calls.push({ tcp, name: q.name });
    if (q.name === "fail.example") return Promise.resolve(null);
    const known = q.name === "example.com";
    const reply = enc({
      type: "response",
      id: (msg[0] << 8) | msg[1],
      flags: 0x8180 | (known ? 0 : RCODE.NXDOMAIN),
      questions: [{ name: q.name, type: "A", class: "IN" }],
      answers: known ? [{ type: "A", name: q.name, ttl: 30, data: "192.0.2.10" }] : [],
    });
    return Promise.resolve(reply);
  };
}

async function ask(
  r: Resolver,
  sandbox: string,
  msg: Uint8Array,
  tcp = false,
): Promise<Decoded | null> {
  const out = await r.answer(sandbox, msg, tcp);
  return out === null ? null : dec(out);
}

function setup(forward?: ForwardFn): Resolver {
  const r = new Resolver({ forward });
  r.records.upsert(ep({
    sandboxId: "c1",
    networkId: "net1",
    hostname: "box1",
    aliases: ["web"],
    ipv4: "10.0.0.2",
  }));
  r.records.upsert(ep({ sandboxId: "c2", networkId: "net1", ipv4: "10.0.0.3", ipv6: "fd00::3" }));
  r.records.upsert(ep({ sandboxId: "c3", networkId: "net2", ipv4: "10.9.0.3" }));
  return r;
}

Deno.test("A: sandbox name, hostname, alias, NAME.NETWORK; case-insensitive; trailing dot", async () => {
  const r = setup();
  for (const name of ["c1", "box1", "web", "c1.net1", "web.net1", "C1", "wEb.NET1", "c1."]) {
    const a = (await ask(r, "c2", query(name, "A")))!;
    assert.equal(a.rcode, "NOERROR", name);
    assert.deepEqual(a.answers.map((x) => [x.type, x.data, x.ttl]), [["A", "10.0.0.2", 600]]);
    assert.equal(a.questions[0].name, name.replace(/\.$/, ""));
  }
});

Deno.test("AAAA for IPv6 endpoints; NODATA for a missing family and for MX", async () => {
  const r = setup();
  const six = (await ask(r, "c1", query("c2", "AAAA")))!;
  assert.deepEqual(six.answers.map((x) => x.data), ["fd00::3"]);
  for (const [name, type] of [["c1", "AAAA"], ["c2", "MX"]]) {
    const a = (await ask(r, "c2", query(name, type)))!;
    assert.equal(a.rcode, "NOERROR");
    assert.equal(a.answers.length, 0);
  }
});

Deno.test("PTR answers NAME.NETWORK. for endpoint addresses", async () => {
  const r = setup();
  const a = (await ask(r, "c2", query("2.0.0.10.in-addr.arpa", "PTR")))!;
  assert.deepEqual(a.answers.map((x) => [x.type, x.data]), [["PTR", "c1.net1"]]);
  const six = (await ask(
    r,
    "c1",
    query("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "PTR"),
  ))!;
  assert.deepEqual(six.answers.map((x) => x.data), ["c2.net1"]);
});

Deno.test("other networks' names are invisible; unknown names go upstream", async () => {
  const calls: { tcp: boolean; name: string }[] = [];
  const r = setup(stubForward(calls));
  const a = (await ask(r, "c1", query("c3", "A")))!;
  assert.equal(a.rcode, "NXDOMAIN"); // forwarded, and NXDOMAIN passed through
  const b = (await ask(r, "c1", query("example.com", "A"), true))!;
  assert.deepEqual(b.answers.map((x) => x.data), ["192.0.2.10"]);
  assert.deepEqual(calls, [{ tcp: false, name: "c3" }, { tcp: true, name: "example.com" }]);
  // a local name with a type answered upstream (TXT) is forwarded too, as Docker does
  await ask(r, "c1", query("web", "TXT"));
  assert.equal(calls.at(-1)!.name, "web");
  // no usable upstream answer: SERVFAIL with the question
  const f = (await ask(r, "c1", query("fail.example", "A")))!;
  assert.equal(f.rcode, "SERVFAIL");
  assert.equal(f.questions[0].name, "fail.example");
});

Deno.test("SERVFAIL without upstreams, and for a sandbox on internal networks only", async () => {
  const none = setup();
  assert.equal((await ask(none, "c1", query("example.com", "A")))!.rcode, "SERVFAIL");
  const calls: { tcp: boolean; name: string }[] = [];
  const r = setup(stubForward(calls));
  r.records.upsert(ep({ sandboxId: "i1", networkId: "int", internal: true, ipv4: "10.5.0.2" }));
  r.records.upsert(ep({ sandboxId: "i2", networkId: "int", internal: true, ipv4: "10.5.0.3" }));
  assert.equal((await ask(r, "i1", query("example.com", "A")))!.rcode, "SERVFAIL");
  assert.deepEqual((await ask(r, "i1", query("i2", "A")))!.answers.map((x) => x.data), [
    "10.5.0.3",
  ]);
  assert.equal(calls.length, 0);
  // connected to an external network as well: forwards again (TestInternalNetworkDNS)
  r.records.upsert(ep({ sandboxId: "i1", networkId: "net1", ipv4: "10.0.0.9" }));
  assert.equal((await ask(r, "i1", query("example.com", "A")))!.answers.length, 1);
});

Deno.test("shared alias: every address, order varying over 20 queries", async () => {
  const r = new Resolver();
  for (let i = 0; i < 5; i++) {
    r.records.upsert(ep({
      sandboxId: `s${i}`,
      networkId: "n",
      aliases: ["svc"],
      ipv4: `10.0.0.${i + 2}`,
    }));
  }
  const orders = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const a = (await ask(r, "s0", query("svc", "A")))!;
    const ips = a.answers.map((x) => x.data as string);
    assert.equal(ips.length, 5);
    assert.equal(new Set(ips).size, 5);
    orders.add(ips.join(","));
  }
  assert.ok(orders.size > 1, "the order never changed");
  assert.ok(r.stats.cached >= 19);
});

Deno.test("truncation: UDP at 512 / EDNS size with TC, TCP in full", async () => {
  const r = new Resolver();
  for (let i = 0; i < 60; i++) {
    r.records.upsert(
      ep({ sandboxId: `s${i}`, networkId: "n", aliases: ["many"], ipv4: `10.0.1.${i + 1}` }),
    );
  }
  const udp = (await ask(r, "s0", query("many", "A")))!;
  assert.equal(udp.flag_tc, true);
  assert.ok(udp.answers.length < 60 && udp.answers.length > 0);
  const big = (await ask(r, "s0", query("many", "A", { edns: 4096 })))!;
  assert.equal(big.flag_tc, false);
  assert.equal(big.answers.length, 60);
  const tcp = (await ask(r, "s0", query("many", "A"), true))!;
  assert.equal(tcp.flag_tc, false);
  assert.equal(tcp.answers.length, 60);
});

Deno.test("records change at once: cached answers are dropped on upsert and remove", async () => {
  const r = setup();
  assert.equal((await ask(r, "c1", query("c2", "A")))!.answers[0].data, "10.0.0.3");
  assert.equal((await ask(r, "c1", query("c2", "A")))!.answers[0].data, "10.0.0.3");
  r.records.upsert(ep({ sandboxId: "c2", networkId: "net1", ipv4: "10.0.0.33" }));
  assert.equal((await ask(r, "c1", query("c2", "A")))!.answers[0].data, "10.0.0.33");
  r.records.remove("c2", "net1");
  assert.equal((await ask(r, "c1", query("c2", "A")))!.rcode, "SERVFAIL"); // not local now
  // disconnecting the asking sandbox from the network hides the network's names
  r.records.remove("c1", "net1");
  r.records.upsert(ep({ sandboxId: "c1", networkId: "net2", ipv4: "10.9.0.2" }));
  assert.equal((await ask(r, "c1", query("web", "A")))!.rcode, "SERVFAIL");
  assert.equal((await ask(r, "c1", query("c3", "A")))!.answers[0].data, "10.9.0.3");
});

Deno.test("malformed input: FORMERR, NOTIMP, silence; never a throw", async () => {
  const r = setup();
  const two = enc({
    type: "query",
    id: 5,
    questions: [{ name: "a", type: "A" }, { name: "b", type: "A" }],
  });
  assert.equal((await ask(r, "c1", two))!.rcode, "FORMERR");
  const notify = query("c1", "A", { id: 6 });
  notify[2] = (notify[2] & 0x87) | (4 << 3); // NOTIFY
  const n = (await ask(r, "c1", notify))!;
  assert.equal(n.rcode, "NOTIMP");
  assert.equal(n.id, 6);
  assert.equal(await ask(r, "c1", new Uint8Array(5)), null);
  const resp = query("c1", "A");
  resp[2] |= 0x80;
  assert.equal(await ask(r, "c1", resp), null);
  for (let i = 0; i < 5000; i++) {
    const b = crypto.getRandomValues(new Uint8Array(Math.floor(Math.random() * 600)));
    await r.answer("c1", b, i % 2 === 0);
  }
  // and it still answers
  assert.equal((await ask(r, "c1", query("c2", "A")))!.answers[0].data, "10.0.0.3");
});

Deno.test("non-IN classes and names with odd bytes are not answered locally", async () => {
  const calls: { tcp: boolean; name: string }[] = [];
  const r = setup(stubForward(calls));
  const ch = enc({ type: "query", id: 1, questions: [{ name: "c1", type: "A", class: "CH" }] });
  await ask(r, "c2", ch);
  assert.equal(calls.length, 1);
  // "c1\0" as one label
  const odd = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 99, 49, 0, 0, 0, 1, 0, 1]);
  await r.answer("c2", odd, false);
  assert.equal(calls.length, 2);
});

Deno.test("a rejected forward becomes SERVFAIL; REFUSED from the forwarder passes", async () => {
  const r = setup((msg, q) =>
    q.name === "boom" ? Promise.reject(new Error("x")) : Promise.resolve(
      rcodeReply(msg, RCODE.REFUSED, q.questionEnd),
    )
  );
  assert.equal((await ask(r, "c1", query("boom", "A")))!.rcode, "SERVFAIL");
  assert.equal((await ask(r, "c1", query("busy", "A")))!.rcode, "REFUSED");
});

Deno.test("the answer cache is bounded per view", async () => {
  const r = new Resolver({ maxCacheEntries: 3 });
  for (let i = 0; i < 10; i++) {
    r.records.upsert(ep({ sandboxId: `s${i}`, networkId: "n", ipv4: `10.0.0.${i + 2}` }));
  }
  for (let i = 0; i < 10; i++) await ask(r, "s0", query(`s${i}`, "A"));
  assert.ok(r.records.viewOf("s0").cacheSize <= 3);
});
