import assert from "node:assert/strict";
import { parseDig } from "./dns.ts";

function fixture(name: string): string {
  return Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));
}

Deno.test("parseDig: NOERROR with answers of the asked type only", () => {
  const r = parseDig(fixture("dig_noerror.txt"), "A");
  assert.equal(r.rcode, "NOERROR");
  assert.deepEqual(r.answers, ["10.201.0.2", "10.201.0.3"]);
  assert.deepEqual(parseDig(fixture("dig_noerror.txt"), "AAAA").answers, []);
});

Deno.test("parseDig: NXDOMAIN and SERVFAIL", () => {
  assert.deepEqual(parseDig(fixture("dig_nxdomain.txt"), "A"), { rcode: "NXDOMAIN", answers: [] });
  assert.deepEqual(parseDig(fixture("dig_servfail.txt"), "A"), { rcode: "SERVFAIL", answers: [] });
});

Deno.test("parseDig: PTR names and SRV data", () => {
  assert.deepEqual(parseDig(fixture("dig_ptr_srv.txt"), "PTR").answers, ["c1.red."]);
  assert.deepEqual(parseDig(fixture("dig_ptr_srv.txt"), "SRV").answers, ["0 5 80 web-1.red."]);
});

Deno.test("parseDig: timeouts over UDP and TCP", () => {
  const udp = parseDig(fixture("dig_timeout.txt"), "A");
  assert.equal(udp.rcode, "timeout");
  assert.deepEqual(udp.answers, []);
  assert.match(udp.problem ?? "", /timed out/);
  assert.equal(parseDig(fixture("dig_tcp_timeout.txt"), "PTR").rcode, "timeout");
  assert.equal(parseDig("", "A").rcode, "error");
});

Deno.test("parseDig: connection refused is an error, not a timeout", () => {
  const r = parseDig(fixture("dig_refused.txt"), "A");
  assert.equal(r.rcode, "error");
  assert.match(r.problem ?? "", /connection refused/);
});
