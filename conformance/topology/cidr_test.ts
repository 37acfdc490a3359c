import assert from "node:assert/strict";
import { contains, overlaps, parseAddr, parseCidr, parseIp, within } from "./cidr.ts";

// The expected values are those of the project's former shared parser (impl/model/ip.ts
// `tryParseIp` and `Prefix`), written out by hand: the suite must not import impl/.

function cidr(s: string) {
  const c = parseCidr(s);
  assert.ok(typeof c !== "string", `${s}: ${c}`);
  return c;
}

Deno.test("parseIp: valid IPv4, four strict decimal parts", () => {
  assert.deepEqual(parseIp("10.0.0.1"), { family: 4, value: 0x0a000001n });
  assert.deepEqual(parseIp("0.0.0.0"), { family: 4, value: 0n });
  assert.deepEqual(parseIp("255.255.255.255"), { family: 4, value: 0xffffffffn });
  assert.deepEqual(parseIp("198.51.100.2"), { family: 4, value: 0xc6336402n });
});

Deno.test("parseIp: rejects what ipaddr.js alone would take or mangle (IPv4)", () => {
  for (
    const s of [
      "10.1", // two parts (ipaddr.js: 10.0.0.1)
      "10.1.2", // three parts
      "167772161", // one 32-bit number
      "010.0.0.1", // leading zero (ipaddr.js: octal 8.0.0.1)
      "10.0.0.01",
      "0x0a.0.0.1", // hex
      "256.0.0.1",
      "1.2.3.4.5",
      "1.2.3.",
      " 1.2.3.4",
      "1.2.3.4 ",
      "1.2.3.4/32", // a prefix is not an address
      "",
    ]
  ) {
    assert.equal(parseIp(s), undefined, s);
  }
});

Deno.test("parseIp: valid IPv6", () => {
  const v6 = (s: string) => parseIp(s)?.value;
  assert.equal(v6("::"), 0n);
  assert.equal(v6("::1"), 1n);
  assert.equal(v6("1::"), 1n << 112n);
  assert.equal(v6("1:2:3:4:5:6:7:8"), 0x00010002000300040005000600070008n);
  assert.equal(v6("1:2:3:4:5:6:7::"), 0x00010002000300040005000600070000n);
  assert.equal(v6("::2:3:4:5:6:7:8"), 0x00000002000300040005000600070008n);
  assert.equal(v6("FD00::ABCD"), (0xfd00n << 112n) | 0xabcdn);
  assert.equal(v6("0001:0002::"), (1n << 112n) | (2n << 96n));
  assert.equal(v6("::ffff:1.2.3.4"), 0xffff01020304n, "IPv4-mapped stays IPv6");
  assert.equal(parseIp("::ffff:1.2.3.4")?.family, 6);
  assert.equal(v6("::1.2.3.4"), 0x01020304n, "a dotted tail is read literally, not as ::ffff:");
  assert.equal(v6("1:2:3:4:5:6:1.2.3.4"), 0x00010002000300040005000601020304n);
  assert.equal(v6("64:ff9b::192.0.2.33"), (0x64ff9bn << 96n) | 0xc0000221n);
});

Deno.test("parseIp: rejects bad IPv6, zone ids and sloppy embedded IPv4", () => {
  for (
    const s of [
      ":",
      "1:2:3:4:5:6:7", // seven groups
      "1:2:3:4:5:6:7:8:9",
      "::1:2:3:4:5:6:7:8", // "::" must stand for at least one group
      "1:2:3:4::5:6:7:8",
      "1:2:3:4:5::6:7:8:9",
      "1::2::3",
      ":1::2",
      "1:::2",
      "12345::",
      "g::1",
      "fe80::1%eth0", // zone ids
      "fe80::1%1",
      "[::1]",
      "::ffff:01.2.3.4",
      "::ffff:1.2.3",
      "::256.1.1.1",
      "1:2:3:4:5:6:7:1.2.3.4", // nine groups' worth
      "1.2.3.4::",
      "::1.2.3.4:5",
      ":1.2.3.4",
    ]
  ) {
    assert.equal(parseIp(s), undefined, s);
  }
});

Deno.test("parseAddr gives ipaddr.js objects of the right kind", () => {
  assert.equal(parseAddr("10.0.0.1")?.kind(), "ipv4");
  assert.equal(parseAddr("::ffff:10.0.0.1")?.kind(), "ipv6");
  assert.equal(parseAddr("fd00::1")?.toString(), "fd00::1");
  assert.equal(parseAddr("10.1"), undefined);
});

Deno.test("parseCidr: valid prefixes", () => {
  const c = cidr("10.200.1.0/24");
  assert.equal(c.family, 4);
  assert.equal(c.bits, 24);
  assert.equal(c.text, "10.200.1.0/24");
  assert.equal(c.network, 0x0ac80100n);
  assert.equal(cidr("0.0.0.0/0").network, 0n);
  assert.equal(cidr("10.0.0.1/32").bits, 32);
  const v6 = cidr("fd00:200:1::/64");
  assert.equal(v6.family, 6);
  assert.equal(v6.network, 0xfd000200000100000000000000000000n);
  assert.equal(cidr("::/0").bits, 0);
  assert.equal(cidr("::1/128").network, 1n);
  assert.equal(typeof parseCidr("10.0.0.0/8", 4), "object");
  assert.equal(typeof parseCidr("fd00::/8", 6), "object");
});

Deno.test("parseCidr: error texts", () => {
  const cases: [string, string][] = [
    ["10.0.0.0", `bad CIDR "10.0.0.0" (want ADDRESS/BITS)`],
    ["10.0.0.0/", `bad CIDR "10.0.0.0/" (want ADDRESS/BITS)`],
    ["10.0.0.0/1234", `bad CIDR "10.0.0.0/1234" (want ADDRESS/BITS)`],
    ["10.0.0.0/-1", `bad CIDR "10.0.0.0/-1" (want ADDRESS/BITS)`],
    ["10.0.0.0/8/8", `bad CIDR "10.0.0.0/8/8" (want ADDRESS/BITS)`],
    ["10.0/16", `bad CIDR "10.0/16": "10.0" is not an IP address`],
    ["010.0.0.0/8", `bad CIDR "010.0.0.0/8": "010.0.0.0" is not an IP address`],
    ["fe80::%eth0/64", `bad CIDR "fe80::%eth0/64": "fe80::%eth0" is not an IP address`],
    ["10.0.0.0/33", `bad CIDR "10.0.0.0/33": prefix length 33 > 32`],
    ["fd00::/129", `bad CIDR "fd00::/129": prefix length 129 > 128`],
    ["10.0.0.0/08", `bad CIDR "10.0.0.0/08": prefix length "08" has a leading zero`],
    ["10.0.0.1/24", `bad CIDR "10.0.0.1/24": host bits set (the network is 10.0.0.0/24)`],
    ["10.128.0.0/8", `bad CIDR "10.128.0.0/8": host bits set (the network is 10.0.0.0/8)`],
    ["fd00::1/64", `bad CIDR "fd00::1/64": host bits set (the network is fd00::/64)`],
    ["10.0.0.0/8", ""],
  ];
  for (const [s, want] of cases) {
    const got = parseCidr(s);
    assert.equal(typeof got === "string" ? got : "", want, s);
  }
  assert.equal(parseCidr("10.1.0.0/16", 6), `bad CIDR "10.1.0.0/16": not IPv6`);
  assert.equal(parseCidr("fd00::/64", 4), `bad CIDR "fd00::/64": not IPv4`);
});

Deno.test("contains: the network, the last address, and one past each end", () => {
  const c = cidr("10.0.1.0/24");
  assert.ok(contains(c, 0x0a000100n));
  assert.ok(contains(c, 0x0a0001ffn));
  assert.ok(!contains(c, 0x0a0000ffn));
  assert.ok(!contains(c, 0x0a000200n));
  assert.ok(!contains(c, -1n), "out of range is not contained");
  assert.ok(!contains(c, 1n << 32n));
  assert.ok(contains(cidr("0.0.0.0/0"), 0xffffffffn));
  const v6 = cidr("fd00:1::/32");
  assert.ok(contains(v6, parseIp("fd00:1:ffff::1")!.value));
  assert.ok(!contains(v6, parseIp("fd00:2::")!.value));
  assert.ok(contains(cidr("::/0"), (1n << 128n) - 1n));
  assert.ok(!contains(cidr("::/0"), 1n << 128n));
});

Deno.test("overlaps and within: nested, equal, adjacent, disjoint, across families", () => {
  const big = cidr("10.0.0.0/16");
  const small = cidr("10.0.3.0/24");
  const next = cidr("10.1.0.0/16");
  assert.ok(overlaps(big, small));
  assert.ok(overlaps(small, big));
  assert.ok(overlaps(big, big));
  assert.ok(!overlaps(big, next), "adjacent prefixes share nothing");
  assert.ok(!overlaps(small, next));
  assert.ok(overlaps(cidr("0.0.0.0/0"), next));
  assert.ok(within(big, small));
  assert.ok(!within(small, big));
  assert.ok(within(big, big));
  assert.ok(!within(big, next));
  assert.ok(within(cidr("10.0.0.0/8"), next));

  const v6a = cidr("fd00::/16");
  const v6b = cidr("fd00:1::/32");
  const v6c = cidr("fd01::/16");
  assert.ok(overlaps(v6a, v6b) && within(v6a, v6b) && !within(v6b, v6a));
  assert.ok(!overlaps(v6a, v6c) && !within(v6a, v6c));

  // ::/0 and 0.0.0.0/0 hold the same integers but are different families
  assert.ok(!overlaps(cidr("0.0.0.0/0"), cidr("::/0")));
  assert.ok(!within(cidr("::/0"), cidr("10.0.0.0/8")));
  assert.ok(!overlaps(cidr("10.0.0.0/8"), cidr("::a00:0/104")));
});
