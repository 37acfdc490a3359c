/** Unit tests of the name tables and sandbox views (no root). */
import assert from "node:assert/strict";
import { type DnsEndpoint, DnsRecords } from "./records.ts";

function ep(over: Partial<DnsEndpoint> & { sandboxId: string; networkId: string }): DnsEndpoint {
  return {
    sandboxName: over.sandboxId,
    hostname: `${over.sandboxId}-host`,
    networkName: over.networkId,
    internal: false,
    aliases: [],
    ...over,
  };
}

Deno.test("names on a network: sandbox name, hostname, aliases, lower-cased", () => {
  const r = new DnsRecords();
  r.upsert(
    ep({
      sandboxId: "C1",
      networkId: "net1",
      hostname: "Box1",
      aliases: ["Web", "db."],
      ipv4: "10.0.0.2",
    }),
  );
  assert.deepEqual(r.network("net1")!.names(), ["box1", "c1", "db", "web"]);
  assert.deepEqual(r.viewOf("C1").resolve("web"), { v4: ["10.0.0.2"], v6: [] });
});

Deno.test("a sandbox sees only its networks; NAME.NETWORK qualifies", () => {
  const r = new DnsRecords();
  r.upsert(ep({ sandboxId: "a1", networkId: "A", ipv4: "10.1.0.2", aliases: ["shared"] }));
  r.upsert(ep({ sandboxId: "a2", networkId: "A", ipv4: "10.1.0.3" }));
  r.upsert(ep({ sandboxId: "b1", networkId: "B", ipv4: "10.2.0.2", aliases: ["shared"] }));
  const a2 = r.viewOf("a2");
  assert.deepEqual(a2.resolve("a1")?.v4, ["10.1.0.2"]);
  assert.equal(a2.resolve("b1"), undefined);
  assert.deepEqual(a2.resolve("shared")?.v4, ["10.1.0.2"]); // alias scoped to A
  assert.deepEqual(a2.resolve("a1.a")?.v4, ["10.1.0.2"]);
  assert.deepEqual(a2.resolve("shared.a")?.v4, ["10.1.0.2"]);
  assert.deepEqual(a2.resolve("a1-host.a")?.v4, ["10.1.0.2"]); // hostname.network too
  assert.equal(a2.resolve("b1.b"), undefined);
  assert.equal(a2.resolve("a1.b"), undefined);
  assert.equal(a2.resolve("a1.a.example"), undefined);
  assert.deepEqual(r.viewOf("b1").resolve("shared")?.v4, ["10.2.0.2"]);
});

Deno.test("dotted network names and names: Docker's candidate order", () => {
  const r = new DnsRecords();
  r.upsert(ep({ sandboxId: "c1", networkId: "n1", networkName: "net1.br", ipv4: "10.3.0.2" }));
  const v = r.viewOf("c1");
  assert.deepEqual(v.resolve("c1.net1.br")?.v4, ["10.3.0.2"]);
  assert.equal(v.resolve("c1.net1.br.example.com"), undefined);
});

Deno.test("a shared alias has every address; the first network with the name wins", () => {
  const r = new DnsRecords();
  r.upsert(ep({ sandboxId: "s1", networkId: "A", aliases: ["svc"], ipv4: "10.1.0.2" }));
  r.upsert(ep({ sandboxId: "s2", networkId: "A", aliases: ["svc"], ipv4: "10.1.0.3" }));
  r.upsert(
    ep({ sandboxId: "s3", networkId: "A", aliases: ["svc"], ipv4: "10.1.0.4", ipv6: "fd00::4" }),
  );
  r.upsert(ep({ sandboxId: "x", networkId: "A", ipv4: "10.1.0.9" }));
  r.upsert(ep({ sandboxId: "x", networkId: "B", ipv4: "10.2.0.9" }));
  r.upsert(ep({ sandboxId: "s4", networkId: "B", aliases: ["svc"], ipv4: "10.2.0.4" }));
  assert.deepEqual(r.viewOf("x").resolve("svc"), {
    v4: ["10.1.0.2", "10.1.0.3", "10.1.0.4"],
    v6: ["fd00::4"],
  });
  assert.deepEqual(r.viewOf("x").resolve("svc.b")?.v4, ["10.2.0.4"]);
});

Deno.test("PTR: every address names SANDBOXNAME.NETWORK., scoped to the sandbox's networks", () => {
  const r = new DnsRecords();
  r.upsert(
    ep({
      sandboxId: "id1",
      sandboxName: "Web",
      networkId: "n",
      networkName: "front",
      ipv4: "10.0.0.2/24",
      ipv6: "FD00:0::2",
    }),
  );
  r.upsert(ep({ sandboxId: "id2", networkId: "other", ipv4: "10.9.0.2" }));
  const v = r.viewOf("id1");
  assert.equal(v.resolvePtr("2.0.0.10.in-addr.arpa"), "Web.front.");
  assert.equal(
    v.resolvePtr("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"),
    "Web.front.",
  );
  assert.equal(v.resolvePtr("2.0.9.10.in-addr.arpa"), undefined);
});

Deno.test("upsert replaces, remove forgets, views follow at once and are shared", () => {
  const r = new DnsRecords();
  r.upsert(ep({ sandboxId: "a", networkId: "N", ipv4: "10.0.0.2" }));
  r.upsert(ep({ sandboxId: "b", networkId: "N", ipv4: "10.0.0.3" }));
  assert.equal(r.viewOf("a"), r.viewOf("b"));
  assert.equal(r.viewCount, 1);
  const v = r.viewOf("a");
  v.cache.set(1, new Map([["b", "x"]]));
  r.upsert(ep({ sandboxId: "b", networkId: "N", ipv4: "10.0.0.4" }));
  assert.equal(v.cache.size, 0, "cache dropped on change");
  assert.deepEqual(r.viewOf("a").resolve("b")?.v4, ["10.0.0.4"]);
  r.remove("b", "N");
  assert.equal(r.viewOf("a").resolve("b"), undefined);
  r.remove("b", "N"); // idempotent
  r.removeSandbox("a");
  assert.equal(r.network("N"), undefined);
  assert.equal(r.viewOf("a").networks.length, 0);
  assert.equal(r.viewOf("a").proxy, false);
});

Deno.test("forwarding policy: only with a non-internal network", () => {
  const r = new DnsRecords();
  r.upsert(ep({ sandboxId: "a", networkId: "I", internal: true, ipv4: "10.0.0.2" }));
  assert.equal(r.viewOf("a").proxy, false);
  r.upsert(ep({ sandboxId: "a", networkId: "E", ipv4: "10.1.0.2" }));
  assert.equal(r.viewOf("a").proxy, true);
  r.remove("a", "E");
  assert.equal(r.viewOf("a").proxy, false);
});

Deno.test("bad addresses are refused with a message naming the sandbox and network", () => {
  const r = new DnsRecords();
  assert.throws(
    () => r.upsert(ep({ sandboxId: "a", networkId: "N", ipv4: "fd00::1" })),
    /sandbox "a" on network "N": "fd00::1" is not an IPv4 address/,
  );
  assert.throws(() => r.upsert(ep({ sandboxId: "a", networkId: "N", ipv6: "nope" })), /IPv6/);
});
