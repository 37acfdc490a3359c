import assert from "node:assert/strict";
import { formatIp, Prefix, tryParseIp } from "./ip.ts";

Deno.test("tryParseIp() reads IPv4 and IPv6, and refuses malformed text", () => {
  assert.deepEqual(tryParseIp("10.1.2.3"), { family: 4, value: 0x0a010203n });
  assert.deepEqual(tryParseIp("fd00::1"), { family: 6, value: 0xfd00n << 112n | 1n });
  assert.deepEqual(tryParseIp("::ffff:10.0.0.1"), {
    family: 6,
    value: 0xffffn << 32n | 0x0a000001n,
  });
  for (const bad of ["1:2:3:4:5:6:7:8:9", "fd00:::1", "010.1.0.0", "10.1.0.256", "10.1.0", ""]) {
    assert.equal(tryParseIp(bad), undefined, bad);
  }
});

Deno.test("formatIp() writes RFC 5952 IPv6 and dotted IPv4", () => {
  assert.equal(formatIp(6, 0xfd00n << 112n | 1n), "fd00::1");
  assert.equal(formatIp(6, 0x20010db8n << 96n | 1n << 64n | 1n), "2001:db8:0:1::1");
  assert.equal(formatIp(4, 0xc0000201n), "192.0.2.1");
});

Deno.test("Prefix.parse() checks CIDRs; contains, within and overlaps", () => {
  const p = Prefix.parse("10.1.0.0/16");
  assert.equal(String(p), "10.1.0.0/16");
  assert.throws(
    () => Prefix.parse("10.1.0.1/16"),
    /host bits are set \(did you mean 10\.1\.0\.0\/16\?\)/,
  );
  assert.throws(() => Prefix.parse("10.1.0.0/33"), /prefix length 33 is too long for IPv4/);
  assert.throws(() => Prefix.parse("10.1.0.0"), /expected CIDR notation/);
  assert.ok(p.contains(tryParseIp("10.1.255.255")!));
  assert.ok(!p.contains(tryParseIp("10.2.0.0")!));
  assert.ok(Prefix.parse("10.1.5.0/24").within(p));
  assert.ok(Prefix.parse("10.0.0.0/8").overlaps(p));
  assert.ok(!Prefix.parse("10.2.0.0/16").overlaps(p));
  assert.equal(Prefix.parse("fd00::/64").size, 1n << 64n);
});
