import assert from "node:assert/strict";
import {
  allocSourcePort,
  asciiHex,
  containsAligned,
  decodePacket,
  ipv6,
  matchesToken,
  newToken,
  type Packet,
  parseTcpdump,
  SOURCE_PORT_MAX,
  SOURCE_PORT_MIN,
  startWitness,
  tcpdumpArgv,
  TcpdumpParser,
  type Token,
  tokenMatcher,
  type Witness,
} from "./witness.ts";
import { burstUdp, probeIcmp, type ProbeResult, probeTcp, probeUdp } from "./probes.ts";
import { classifyProbe } from "./outcome.ts";
import { startResponders } from "./responders.ts";
import { hex6, makePair, must, netnsList, removeByPrefix } from "./test_namespaces.ts";

function fixture(name: string): string {
  return Deno.readTextFileSync(new URL(`./testdata/${name}`, import.meta.url));
}

/** 256-byte snap length minus the 20-byte LINUX_SLL2 header. */
const LIMIT = 236;

Deno.test("parser: a real capture of ICMP/TCP/UDP probes (v4 and v6), from the hex", () => {
  const packets = parseTcpdump(fixture("tcpdump_probes.txt"), { captureLimit: LIMIT });
  assert.equal(packets.length, 23);
  const brief = (p: Packet) =>
    [p.iface, p.direction, p.family, p.proto, p.src, p.dst, p.sport, p.dport, p.tcpFlags]
      .filter((x) => x !== undefined).join(" ");
  assert.equal(brief(packets[0]), "lo In 4 icmp 127.0.0.1 127.0.0.1");
  assert.equal(packets[0].icmpType, 8);
  assert.equal(packets[1].icmpType, 0);
  assert.equal(brief(packets[3]), "vb In 6 icmp fd99::1 fd99::2");
  assert.equal(packets[3].icmpType, 128);
  assert.equal(packets[3].hex.length / 2, 104);
  assert.equal(packets[3].length, 104);
  // TCP: flags as tcpdump writes them; the data segment holds the text sent
  assert.deepEqual(
    packets.filter((p) => p.sport === 20123).map((p) => p.tcpFlags),
    ["S", ".", "P.", "F.", ".", "."],
  );
  assert.equal(brief(packets[8]), "vb In 4 tcp 10.99.0.1 10.99.0.2 20123 7000 S");
  assert.ok(containsAligned(packets[10].hex, asciiHex("cnmtok-tcpdata01")));
  assert.equal(brief(packets[14]), "vb In 6 tcp fd99::1 fd99::2 20124 7000 S");
  assert.equal(brief(packets[19]), "vb In 4 tcp 10.99.0.1 10.99.0.2 20125 7999 S");
  // UDP to port 7001 is printed by tcpdump as AFS "[|rx]": the hex is what counts
  assert.equal(brief(packets[20]), "vb In 4 udp 10.99.0.1 10.99.0.2 45829 7001");
  assert.equal(brief(packets[21]), "vb In 6 udp fd99::1 fd99::2 20126 7001");
  assert.ok(containsAligned(packets[21].hex, asciiHex("cnmtok-ba9876543210")));
  // every packet's hex starts at the IP header
  for (const p of packets) assert.match(p.hex, /^(4|6)[0-9a-f]+$/);
});

Deno.test("parser: truncated packets and fragments", () => {
  const packets = parseTcpdump(fixture("tcpdump_probes.txt"), { captureLimit: LIMIT });
  const big = packets[4]; // ping -s 400: 428 bytes on the wire, 236 captured
  assert.equal(big.length, 428);
  assert.equal(big.hex.length / 2, LIMIT);
  // ping -s 3000: a first fragment with the ICMP header, then two without
  assert.deepEqual(
    packets.slice(5, 8).map((p) => [p.length, p.fragment ?? false, p.icmpType]),
    [[1500, false, 8], [1500, true, undefined], [68, true, undefined]],
  );
  const token: Token = { proto: "icmp", pattern: "0f0f0f0f0f0f0f0f" };
  assert.equal(packets.filter(tokenMatcher(token)).length, 1, "one echo request, not 3");
});

Deno.test("parser: multicast packets keep their type; link-local addresses", () => {
  const packets = parseTcpdump(fixture("tcpdump_multicast.txt"));
  assert.equal(packets.length, 6);
  assert.deepEqual(
    [packets[0].direction, packets[0].src, packets[0].dst, packets[0].icmpType],
    ["M", "fe80::54e0:6cff:fe7a:5aed", "ff02::2", 133],
  );
  assert.equal(packets[4].dst, "ff02::1:ff00:2");
});

Deno.test("parser: incremental chunks of any size give the same packets", () => {
  const text = fixture("tcpdump_probes.txt");
  const whole = parseTcpdump(text, { captureLimit: LIMIT });
  for (const size of [1, 7, 64, 333, 4096]) {
    const parser = new TcpdumpParser({ captureLimit: LIMIT });
    const got: Packet[] = [];
    for (let i = 0; i < text.length; i += size) got.push(...parser.push(text.slice(i, i + size)));
    got.push(...parser.flush());
    assert.deepEqual(got, whole, `chunks of ${size}`);
    assert.equal(parser.orphanLines, 0);
  }
});

Deno.test("parser: a packet completes at its IP length, before the next header", () => {
  const text = fixture("tcpdump_probes.txt");
  const firstPacket = text.split(/\n(?=\d\d:)/)[0] + "\n";
  const parser = new TcpdumpParser({ captureLimit: LIMIT });
  const got = parser.push(firstPacket);
  assert.equal(got.length, 1, "complete without waiting for the next packet");
  assert.equal(parser.pending, false);
  // without a known length or limit, the next header or flush completes it
  const lines = firstPacket.split("\n");
  const cut = lines.slice(0, 3).join("\n") + "\n"; // header + 2 hex lines of 6
  const p2 = new TcpdumpParser();
  assert.deepEqual(p2.push(cut), []);
  assert.equal(p2.pending, true);
  const flushed = p2.flush();
  assert.equal(flushed.length, 1);
  assert.equal(flushed[0].hex.length / 2, 32);
});

Deno.test("parser: junk lines, out-of-order hex and non-IP packets are ignored", () => {
  const text = [
    "tcpdump: verbose output suppressed",
    "\t0x0010:  0a63 0002 0800 dd4a 2ea0 0001 5c9d 0f6b", // no header before it
    "04:23:56.964148 vb    In  ARP, Request who-has 10.99.0.2 tell 10.99.0.1, length 28",
    "\t0x0000:  0001 0800 0604 0001 56e0 6c7a 5aed 0a63",
    "",
  ].join("\n");
  const parser = new TcpdumpParser();
  assert.deepEqual([...parser.push(text), ...parser.flush()], []);
  assert.equal(parser.orphanLines, 1);
});

Deno.test("decodePacket: IPv6 extension headers are walked to the transport header", () => {
  const hex = "6000000000101140" + // v6, payload 16, next header 0 (hop-by-hop), hop limit 64
    "fd990000000000000000000000000001" + "fd990000000000000000000000000002";
  const withHbh = hex.slice(0, 12) + "00" + hex.slice(14) + // next header: hop-by-hop
    "1100" + "010400000000" + // hop-by-hop: next UDP, len 0, PadN
    "4e201b5900080000"; // UDP 20000 -> 7001
  const p = decodePacket(withHbh, { time: "t", iface: "x", direction: "In" })!;
  assert.deepEqual([p.proto, p.sport, p.dport, p.length], ["udp", 20000, 7001, 56]);
  const frag = hex.slice(0, 12) + "2c" + hex.slice(14) + "1100000800000001"; // offset 1
  const f = decodePacket(frag, { time: "t", iface: "x", direction: "In" })!;
  assert.deepEqual([f.proto, f.fragment, f.sport], ["udp", true, undefined]);
  assert.equal(
    decodePacket("0001080006040001", { time: "t", iface: "x", direction: "In" }),
    undefined,
  );
});

Deno.test("ipv6: RFC 5952 text", () => {
  const h = (groups: string) => groups.split(":").map((g) => g.padStart(4, "0")).join("");
  assert.equal(ipv6(h("fd99:0:0:0:0:0:0:1")), "fd99::1");
  assert.equal(ipv6(h("0:0:0:0:0:0:0:0")), "::");
  assert.equal(ipv6(h("0:0:0:0:0:0:0:1")), "::1");
  assert.equal(ipv6(h("2001:db8:0:1:1:1:1:1")), "2001:db8:0:1:1:1:1:1");
  assert.equal(ipv6(h("2001:0:0:1:0:0:0:1")), "2001:0:0:1::1");
  assert.equal(ipv6(h("fe80:0:0:0:0:0:0:0")), "fe80::");
});

Deno.test("tokens: ICMP matches echo requests only, at byte-aligned positions", () => {
  const packets = parseTcpdump(fixture("tcpdump_probes.txt"), { captureLimit: LIMIT });
  const lo: Token = { proto: "icmp", pattern: "a1b2c3d4e5f60718" };
  // the loopback request and reply both hold it; only the request counts
  assert.deepEqual(packets.filter(tokenMatcher(lo)).map((p) => p.icmpType), [8]);
  const v6: Token = { proto: "icmp", pattern: "5555666677778888" };
  assert.equal(packets.filter(tokenMatcher(v6)).length, 1);
  assert.equal(
    matchesToken(packets[3], { proto: "icmp", pattern: "5555666677778888".toUpperCase() }),
    true,
  );
  // shifted by one nibble: not byte-aligned
  assert.equal(
    packets.filter(tokenMatcher({ proto: "icmp", pattern: "5556666777788885" })).length,
    0,
  );
  assert.equal(containsAligned("0abc", "ab"), false);
  assert.equal(containsAligned("0abcab", "ab"), true);
  assert.equal(containsAligned("abc", ""), false);
});

Deno.test("tokens: UDP by payload, TCP by source port (any flags) or payload", () => {
  const packets = parseTcpdump(fixture("tcpdump_probes.txt"), { captureLimit: LIMIT });
  const count = (t: Token) => packets.filter(tokenMatcher(t)).length;
  assert.equal(count({ proto: "udp", payload: "cnmtok-0123456789ab" }), 1);
  assert.equal(count({ proto: "udp", payload: "cnmtok-ba9876543210" }), 1);
  assert.equal(count({ proto: "udp", payload: "cnmtok-closedport01" }), 1);
  assert.equal(count({ proto: "udp", payload: "cnmtok-000000000000" }), 0);
  // a TCP payload is not a UDP token
  assert.equal(count({ proto: "udp", payload: "cnmtok-tcpdata01" }), 0);
  assert.equal(count({ proto: "tcp", sport: 20123 }), 6);
  assert.equal(count({ proto: "tcp", sport: 20125 }), 1); // the SYN to a closed port
  assert.equal(count({ proto: "tcp", sport: 20126 }), 0); // a UDP port
  // a proxy reconnecting from another port still carries the data
  assert.equal(count({ proto: "tcp", sport: 1, payload: "cnmtok-tcpdata01" }), 1);
});

Deno.test("tokens: malformed ones are refused", () => {
  const p = parseTcpdump(fixture("tcpdump_probes.txt"))[0];
  for (
    const bad of [
      { proto: "icmp", pattern: "abc" },
      { proto: "icmp", pattern: "zz".repeat(8) },
      { proto: "udp", payload: "" },
      { proto: "udp", payload: "x\n" },
      { proto: "tcp", sport: 0 },
      { proto: "tcp", sport: 70000 },
      { proto: "dccp" },
    ]
  ) {
    assert.throws(() => matchesToken(p, bad as Token), TypeError, JSON.stringify(bad));
  }
});

Deno.test("newToken: fresh tokens of each kind; source ports never repeat within 10k", () => {
  const i = newToken("icmp");
  assert.match(i.pattern, /^[0-9a-f]{16}$/);
  assert.notEqual(newToken("icmp").pattern, i.pattern);
  assert.match(newToken("udp").payload, /^cnmtok-[0-9a-f]{12}$/);
  const seen = new Set<number>();
  for (let n = 0; n < 12000; n++) {
    const port = n % 2 ? allocSourcePort() : newToken("tcp").sport;
    assert.ok(port >= SOURCE_PORT_MIN && port <= SOURCE_PORT_MAX, `${port}`);
    assert.equal(seen.has(port), false, `port ${port} handed out twice in ${n + 1}`);
    seen.add(port);
  }
  assert.ok(SOURCE_PORT_MAX < 32768, "below the kernel's ephemeral range");
});

Deno.test("tcpdumpArgv: only arriving packets, immediate, hex, SLL2", () => {
  const argv = tcpdumpArgv();
  const joined = argv.join(" ");
  assert.match(joined, /^tcpdump --immediate-mode -i any -y LINUX_SLL2 -Q in -n -l -U -x -s 256/);
  assert.equal(argv.at(-1), "icmp or icmp6 or tcp or udp");
});

// ---------------------------------------------------------------------------------------
// integration (root)

async function alive(pid: number): Promise<boolean> {
  return await Deno.stat(`/proc/${pid}`).then(() => true, () => false);
}

async function verdict(w: Witness, probe: ProbeResult, token: Token, expectIdentity?: string) {
  await w.sync();
  const arrivals = w.saw(token).length;
  return { ...classifyProbe({ probe, arrivals, expectIdentity }), arrivals };
}

Deno.test({
  name: "witness: token probes seen by the target, blocked, refused, harness errors " +
    "(needs root: builds namespaces, runs tcpdump)",
  ignore: Deno.uid() !== 0,
  async fn(t) {
    const prefix = `cnmt-wt${hex6()}`;
    const witnesses: Witness[] = [];
    let responders: Awaited<ReturnType<typeof startResponders>> | undefined;
    try {
      const { pa, pb } = await makePair(prefix, "10.99.0", "fd00:99:");
      responders = await startResponders(pb, "b", { tcp: [7000], udp: [7001] });
      const w = await startWitness(pb, "b");
      witnesses.push(w);
      assert.ok(w.armedMs < 5000);
      assert.match(w.command, new RegExp(`^nsenter --net=${pb} tcpdump --immediate-mode -i any`));

      await t.step(
        "ICMP, TCP and UDP token probes a→b arrive and are reached (v4, v6)",
        async () => {
          for (const ip of ["10.99.0.2", "fd00:99::2"]) {
            const ti = newToken("icmp");
            const icmp = await probeIcmp(pa, ip, { pattern: ti.pattern });
            assert.match(icmp.command, new RegExp(`-p ${ti.pattern} ${ip}$`));
            const vi = await verdict(w, icmp, ti);
            assert.deepEqual([vi.outcome, vi.arrivals], ["reached", 1], `${ip} icmp: ${vi.why}`);

            const tt = newToken("tcp");
            const tcp = await probeTcp(pa, ip, 7000, { sourcePort: tt.sport });
            assert.match(tcp.command, new RegExp(`sourceport=${tt.sport},reuseaddr`));
            const vt = await verdict(w, tcp, tt, "b");
            assert.equal(vt.outcome, "reached", `${ip} tcp: ${vt.why}`);
            assert.equal(w.saw(tt)[0].tcpFlags, "S");
            assert.equal(w.saw(tt)[0].dport, 7000);

            const tu = newToken("udp");
            const udp = await probeUdp(pa, ip, 7001, { payload: tu.payload });
            assert.equal(udp.identity, "b", udp.detail);
            const vu = await verdict(w, udp, tu, "b");
            assert.deepEqual([vu.outcome, vu.arrivals], ["reached", 1], `${ip} udp: ${vu.why}`);

            // TCP with a payload and a fixed UDP source port
            const tp = { proto: "tcp" as const, sport: 1, payload: newToken("udp").payload };
            const withData = await probeTcp(pa, ip, 7000, { payload: tp.payload });
            assert.equal((await verdict(w, withData, tp, "b")).outcome, "reached");
            const tus = newToken("udp");
            const sport = newToken("tcp").sport;
            const udpPort = await probeUdp(pa, ip, 7001, {
              payload: tus.payload,
              sourcePort: sport,
            });
            assert.equal(udpPort.identity, "b", udpPort.detail);
            await w.sync();
            assert.deepEqual(w.saw(tus).map((p) => p.sport), [sport]);
          }
        },
      );

      await t.step("ICMP bursts count replies; burstUdp sends one datagram each", async () => {
        const ti = newToken("icmp");
        const burst = await probeIcmp(pa, "10.99.0.2", {
          pattern: ti.pattern,
          count: 20,
          intervalMs: 2,
        });
        assert.equal(burst.ok, true, burst.detail);
        assert.equal(burst.replies, 20);
        assert.match(burst.command, /-c20 -i 0\.002 /);
        assert.equal((await verdict(w, burst, ti)).arrivals, 20);

        for (const ip of ["10.99.0.2", "fd00:99::2"]) {
          const payloads = Array.from({ length: 50 }, () => newToken("udp").payload);
          const sent = await burstUdp(pa, ip, 7001, payloads);
          assert.equal(sent.ok, true, sent.detail);
          assert.equal(sent.sent, 50);
          await w.sync();
          const missing = payloads.filter((p) => w.saw({ proto: "udp", payload: p }).length !== 1);
          assert.deepEqual(missing, [], `${ip}: datagrams not seen exactly once`);
          assert.equal(
            classifyProbe({ probe: sent, arrivals: payloads.length - missing.length }).outcome,
            "reached",
          );
        }
      });

      await t.step("10 parallel TCP probes with distinct source ports are all seen", async () => {
        const tokens = Array.from({ length: 10 }, () => newToken("tcp"));
        const results = await Promise.all(
          tokens.map((tk) => probeTcp(pa, "10.99.0.2", 7000, { sourcePort: tk.sport })),
        );
        await w.sync();
        for (const [i, tk] of tokens.entries()) {
          assert.equal(results[i].identity, "b", results[i].detail);
          assert.ok(w.saw(tk).some((p) => p.tcpFlags === "S"), `sport ${tk.sport} SYN not seen`);
        }
      });

      await t.step("dropped on a's output: nothing arrives, blocked", async () => {
        const nft = (...args: string[]) => must(["nsenter", `--net=${pa}`, "nft", ...args]);
        await nft("add", "table", "inet", "t");
        await nft("add", "chain", "inet", "t", "o", "{ type filter hook output priority 0; }");
        await nft("add", "rule", "inet", "t", "o", "ip", "daddr", "10.99.0.2", "drop");
        try {
          const ti = newToken("icmp");
          const tt = newToken("tcp");
          const tu = newToken("udp");
          const [icmp, tcp, udp] = await Promise.all([
            probeIcmp(pa, "10.99.0.2", { pattern: ti.pattern, timeoutMs: 500 }),
            probeTcp(pa, "10.99.0.2", 7000, { sourcePort: tt.sport, timeoutMs: 500 }),
            probeUdp(pa, "10.99.0.2", 7001, { payload: tu.payload, timeoutMs: 500 }),
          ]);
          for (const [probe, token] of [[icmp, ti], [tcp, tt], [udp, tu]] as const) {
            const v = await verdict(w, probe, token, "b");
            assert.deepEqual([v.outcome, v.arrivals], ["blocked", 0], `${probe.command}: ${v.why}`);
            assert.notEqual(probe.failure, "error", probe.detail);
          }
          const payloads = [newToken("udp").payload, newToken("udp").payload];
          const burst = await burstUdp(pa, "10.99.0.2", 7001, payloads);
          assert.equal(burst.sent, 0, burst.detail);
          assert.equal(burst.failure, "unreachable", burst.detail);
          await w.sync();
          const seen = payloads.filter((p) => w.saw({ proto: "udp", payload: p }).length).length;
          assert.equal(classifyProbe({ probe: burst, arrivals: seen }).outcome, "blocked");
          // IPv6 is not covered by the rule: still reached
          const t6 = newToken("icmp");
          const v6 = await probeIcmp(pa, "fd00:99::2", { pattern: t6.pattern });
          assert.equal((await verdict(w, v6, t6)).outcome, "reached");
        } finally {
          await nft("delete", "table", "inet", "t");
        }
      });

      await t.step(
        "a closed port: the SYN arrived, a reset came back: target-refused",
        async () => {
          const tt = newToken("tcp");
          const probe = await probeTcp(pa, "10.99.0.2", 7999, { sourcePort: tt.sport });
          assert.equal(probe.failure, "refused", probe.detail);
          const v = await verdict(w, probe, tt);
          assert.equal(v.outcome, "target-refused", v.why);
          assert.deepEqual(w.saw(tt).map((p) => p.tcpFlags), ["S"]);
          const tu = newToken("udp");
          const udp = await probeUdp(pa, "10.99.0.2", 7999, { payload: tu.payload });
          assert.equal((await verdict(w, udp, tu)).outcome, "target-refused");
        },
      );

      await t.step("probes that cannot run are harness errors", async () => {
        const missing = `/run/netns/${prefix}-missing`;
        const probes: ProbeResult[] = await Promise.all([
          probeTcp(missing, "10.99.0.2", 7000),
          probeUdp(missing, "10.99.0.2", 7001, { payload: "cnmtok-x" }),
          probeIcmp(missing, "10.99.0.2", { pattern: newToken("icmp").pattern }),
          burstUdp(missing, "10.99.0.2", 7001, ["cnmtok-x"]),
        ]);
        {
          // a source port the prober's namespace already listens on cannot be bound
          await using _busy = await startResponders(pa, "a", { tcp: [7100] });
          probes.push(await probeTcp(pa, "10.99.0.2", 7000, { sourcePort: 7100 }));
        }
        assert.match(probes.at(-1)!.detail, /Address already in use/);
        for (const probe of probes) {
          assert.equal(probe.failure, "error", `${probe.command}: ${probe.detail}`);
          const v = classifyProbe({ probe, arrivals: 0 });
          assert.equal(v.outcome, "harness-error", v.why);
        }
        assert.match(probes[0].detail, /nsenter: cannot open .*-missing/);
        await assert.rejects(
          () => startWitness(missing, "ghost", { armDeadlineMs: 2000 }),
          (e: Error) => {
            assert.match(e.message, new RegExp(`^witness ghost in ${missing}: tcpdump exited`));
            assert.match(e.message, /nsenter: cannot open/);
            assert.equal(e.message.includes("\n"), false, "one line");
            return true;
          },
        );
      });

      await t.step("a witness in the wrong namespace contradicts the prober", async () => {
        // a's witness sees the echo replies come back, never the requests
        const wa = await startWitness(pa, "a");
        witnesses.push(wa);
        const ti = newToken("icmp");
        const probe = await probeIcmp(pa, "10.99.0.2", { pattern: ti.pattern });
        const v = await verdict(wa, probe, ti);
        assert.equal(v.outcome, "harness-error", v.why);
        assert.ok(wa.packets().some((p) => p.icmpType === 0 && p.iface === "va"));
        await wa.stop();
        assert.equal(await alive(wa.pid), false);
        await assert.rejects(() => wa.sync(), /sync after stop/);
      });

      await t.step("stop kills tcpdump, idempotent", async () => {
        assert.ok(await alive(w.pid));
        assert.match(w.stderr(), /listening on any, link-type LINUX_SLL2/);
        const counters = await w.stats();
        assert.equal(counters.droppedByKernel, 0);
        assert.ok(counters.captured >= w.packets().length, JSON.stringify(counters));
        assert.doesNotMatch(w.stderr(), /packets captured, /, "counters kept out of stderr()");
        await w.stop();
        await w.stop();
        assert.equal(await alive(w.pid), false);
      });
    } finally {
      for (const w of witnesses) await w.stop().catch(() => {});
      await responders?.stop().catch(() => {});
      await removeByPrefix(prefix);
      assert.deepEqual((await netnsList()).filter((n) => n.startsWith(prefix)), []);
      for (const w of witnesses) assert.equal(await alive(w.pid), false, `tcpdump ${w.pid} left`);
    }
  },
});
