/** Unit tests of upstream parsing (no root). */
import assert from "node:assert/strict";
import { Forwarder, parseUpstream } from "./forward.ts";

Deno.test("upstreams: IP, IP:PORT, [IPv6]:PORT, bare IPv6; canonical text", () => {
  assert.deepEqual(parseUpstream("192.0.2.1"), { hostname: "192.0.2.1", port: 53, family: 4 });
  assert.deepEqual(parseUpstream("192.0.2.1:5353"), {
    hostname: "192.0.2.1",
    port: 5353,
    family: 4,
  });
  assert.deepEqual(parseUpstream("[2001:DB8:0::1]:54"), {
    hostname: "2001:db8::1",
    port: 54,
    family: 6,
  });
  assert.deepEqual(parseUpstream("2001:db8::1"), { hostname: "2001:db8::1", port: 53, family: 6 });
  for (const bad of ["", "dns.example", "192.0.2.1:0", "192.0.2.1:70000", "[::1", "1.2.3"]) {
    assert.throws(() => parseUpstream(bad), /Invalid DNS upstream/, bad);
  }
});

Deno.test("at most three upstreams are used (Docker's maxExtDNS)", async () => {
  const f = new Forwarder({ upstreams: ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"] });
  assert.equal(f.upstreams.length, 3);
  await f.close();
});
