/**
 * Integration tests of the embedded DNS (needs root): real listeners at 127.0.0.11:53 in
 * throwaway namespaces (`cnmt-<6 hex>-...`, removed in `finally`), queried with `dig` run
 * inside them (`nsenter --net=PATH dig @127.0.0.11 ...`).
 *
 * Topology: a "host" namespace joined by a veth pair to an "upstream" namespace where stub
 * DNS servers (dns-packet, made by this process with withNetns) listen on 10.53.0.2:53 (it
 * answers) and 10.53.0.2:5353 (it answers SERVFAIL to everything). The service's
 * `hostNetnsPath` is the host namespace; the sandboxes have only loopback, so a forwarded
 * answer proves the upstream sockets live in the host namespace. Nothing touches the root
 * namespace's networking.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { addNetns, isRoot, must, removeNetnsByPrefix, sh, testPrefix } from "../../testing/mod.ts";
import { withNetns } from "../kernel/setns.ts";
import { DnsService } from "./service.ts";
import { dec, dnsPacket, enc, ep, query } from "./test_util.ts";

interface DigResult {
  code: number;
  status: string;
  flags: string[];
  answers: { name: string; ttl: number; type: string; data: string }[];
  out: string;
}

/** `dig @127.0.0.11 ARGS` inside a namespace, parsed. */
async function dig(nsPath: string, ...args: string[]): Promise<DigResult> {
  const r = await sh([
    "nsenter",
    `--net=${nsPath}`,
    "dig",
    "@127.0.0.11",
    "+tries=1",
    "+time=2",
    "+noall",
    "+comments",
    "+answer",
    ...args,
  ]);
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? "NONE";
  const flags = (/;; flags: ([a-z ]*);/.exec(r.stdout)?.[1] ?? "").trim().split(/\s+/);
  const answers = r.stdout.split("\n").filter((l) => l.trim() && !l.startsWith(";")).map((l) => {
    const [name, ttl, _cls, type, ...data] = l.trim().split(/\s+/);
    return { name, ttl: Number(ttl), type, data: data.join(" ") };
  });
  return { code: r.code, status, flags, answers, out: r.stdout + r.stderr };
}

/** A stub upstream DNS server (UDP and TCP) inside a namespace. */
class StubUpstream {
  readonly seen: { name: string; tcp: boolean }[] = [];
  readonly #udp: Deno.DatagramConn;
  readonly #tcp: Deno.Listener;
  readonly #loops: Promise<void>[] = [];
  readonly #conns = new Set<Deno.Conn>();

  constructor(nsPath: string, ip: string, port: number, readonly servfail: boolean) {
    [this.#udp, this.#tcp] = withNetns(nsPath, () => [
      Deno.listenDatagram({ hostname: ip, port, transport: "udp" }),
      Deno.listen({ hostname: ip, port }),
    ]);
    this.#loops.push(this.#serveUdp(), this.#serveTcp());
  }

  #answer(msg: Uint8Array, tcp: boolean): Uint8Array {
    const q = dnsPacket.decode(Buffer.from(msg));
    const name = q.questions![0].name.toLowerCase();
    this.seen.push({ name, tcp });
    const answers = name === "external.test"
      ? [{ type: "A" as const, name, ttl: 30, data: "192.0.2.10" }]
      : name === "big.test"
      ? Array.from({ length: 100 }, (_, i) => ({
        type: "A" as const,
        name,
        ttl: 30,
        data: `192.0.2.${i + 1}`,
      }))
      : [];
    const rcode = this.servfail ? 2 : answers.length ? 0 : 3;
    const reply = enc({
      type: "response",
      id: q.id,
      flags: 0x8180 | rcode,
      questions: q.questions,
      answers: tcp || answers.length < 20 ? answers : [],
    });
    if (!tcp && answers.length >= 20) reply[2] |= 0x02; // TC: ask again over TCP
    return reply;
  }

  async #serveUdp(): Promise<void> {
    try {
      for await (const [data, addr] of this.#udp) {
        try {
          await this.#udp.send(this.#answer(data, false), addr);
        } catch { /* ignore */ }
      }
    } catch { /* closed */ }
  }

  async #serveTcp(): Promise<void> {
    try {
      for await (const conn of this.#tcp) {
        this.#conns.add(conn);
        (async () => {
          try {
            const head = await readN(conn, 2);
            const msg = await readN(conn, (head[0] << 8) | head[1]);
            const reply = this.#answer(msg, true);
            await conn.write(new Uint8Array([reply.length >> 8, reply.length & 255, ...reply]));
          } catch {
            /* gone */
          } finally {
            this.#conns.delete(conn);
            try {
              conn.close();
            } catch { /* closed */ }
          }
        })();
      }
    } catch { /* closed */ }
  }

  async close(): Promise<void> {
    this.#udp.close();
    this.#tcp.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.allSettled(this.#loops);
  }
}

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const r = await conn.read(out.subarray(at));
    if (r === null) throw new Error("closed");
    at += r;
  }
  return out;
}

/** Sends datagrams from inside a namespace and collects replies for a while. */
async function udpExchange(
  nsPath: string,
  packets: Uint8Array[],
  waitMs: number,
): Promise<Uint8Array[]> {
  const sock = withNetns(
    nsPath,
    () => Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" }),
  );
  const replies: Uint8Array[] = [];
  const loop = (async () => {
    try {
      for await (const [data] of sock) replies.push(data.slice());
    } catch { /* closed */ }
  })();
  try {
    for (const p of packets) {
      await sock.send(p, { transport: "udp", hostname: "127.0.0.11", port: 53 });
    }
    await new Promise((r) => setTimeout(r, waitMs));
  } finally {
    sock.close();
    await loop;
  }
  return replies;
}

Deno.test({
  name: "embedded DNS at 127.0.0.11 in throwaway namespaces, asked with dig (root)",
  ignore: !isRoot,
  async fn(t) {
    const prefix = testPrefix();
    const ns = (n: string) => `${prefix}-${n}`;
    const path = (n: string) => `/run/netns/${ns(n)}`;
    const stubs: StubUpstream[] = [];
    const services: DnsService[] = [];
    try {
      for (const n of ["host", "up", "s1", "s2", "s3", "si", "sn", "su"]) await addNetns(ns(n));
      await must([
        "ip",
        "-n",
        ns("host"),
        "link",
        "add",
        "vh0",
        "type",
        "veth",
        "peer",
        "name",
        "vu0",
        "netns",
        ns("up"),
      ]);
      await must(["ip", "-n", ns("host"), "addr", "add", "10.53.0.1/24", "dev", "vh0"]);
      await must(["ip", "-n", ns("host"), "link", "set", "vh0", "up"]);
      await must(["ip", "-n", ns("up"), "addr", "add", "10.53.0.2/24", "dev", "vu0"]);
      await must(["ip", "-n", ns("up"), "link", "set", "vu0", "up"]);
      const good = new StubUpstream(path("up"), "10.53.0.2", 53, false);
      const bad = new StubUpstream(path("up"), "10.53.0.2", 5353, true);
      stubs.push(good, bad);

      const logs: string[] = [];
      const svc = new DnsService({
        upstreams: ["10.53.0.2:5353", "10.53.0.2"], // the first SERVFAILs: the second is tried
        hostNetnsPath: path("host"),
        forwardTimeoutMs: 1500,
        tcpIdleTimeoutMs: 1000,
        maxTcpConnectionsPerSandbox: 8,
        log: (l) => logs.push(l),
      });
      services.push(svc);
      const none = new DnsService({ upstreams: [] });
      const dead = new DnsService({
        upstreams: ["10.53.0.99"],
        hostNetnsPath: path("host"),
        forwardTimeoutMs: 500,
      });
      services.push(none, dead);

      for (const s of ["s1", "s2", "s3", "si"]) await svc.addSandbox(s, path(s));
      await none.addSandbox("sn", path("sn"));
      await dead.addSandbox("su", path("su"));
      svc.upsertEndpoint(ep({
        sandboxId: "s1",
        networkId: "net1",
        hostname: "box1",
        aliases: ["web", "svc"],
        ipv4: "10.0.0.2",
      }));
      svc.upsertEndpoint(ep({
        sandboxId: "s2",
        networkId: "net1",
        aliases: ["svc"],
        ipv4: "10.0.0.3",
        ipv6: "fd00::3",
      }));
      for (let i = 0; i < 3; i++) {
        svc.upsertEndpoint(ep({
          sandboxId: `f${i}`,
          networkId: "net1",
          aliases: ["svc"],
          ipv4: `10.0.0.${10 + i}`,
        }));
      }
      for (let i = 0; i < 100; i++) {
        svc.upsertEndpoint(ep({
          sandboxId: `m${i}`,
          networkId: "net1",
          aliases: ["many"],
          ipv4: `10.0.1.${i + 1}`,
        }));
      }
      svc.upsertEndpoint(ep({ sandboxId: "s3", networkId: "net2", ipv4: "10.9.0.3" }));
      svc.upsertEndpoint(ep({
        sandboxId: "si",
        networkId: "netint",
        internal: true,
        ipv4: "10.5.0.2",
      }));
      svc.upsertEndpoint(ep({
        sandboxId: "si2",
        networkId: "netint",
        internal: true,
        ipv4: "10.5.0.3",
      }));
      none.upsertEndpoint(ep({ sandboxId: "sn", networkId: "netx", ipv4: "10.7.0.2" }));
      dead.upsertEndpoint(ep({ sandboxId: "su", networkId: "nety", ipv4: "10.8.0.2" }));

      await t.step("A over UDP and TCP: sandbox name, hostname, alias, NAME.NETWORK", async () => {
        for (const name of ["s1", "box1", "web", "s1.net1", "web.net1", "box1.net1"]) {
          for (const proto of ["+notcp", "+tcp"]) {
            const r = await dig(path("s2"), proto, name, "A");
            assert.equal(r.status, "NOERROR", `${name} ${proto}: ${r.out}`);
            assert.deepEqual(r.answers.map((a) => [a.type, a.data, a.ttl]), [
              ["A", "10.0.0.2", 600],
            ]);
          }
        }
      });

      await t.step("case-insensitive, trailing dot accepted, question echoed as sent", async () => {
        for (const name of ["S1", "WeB.NeT1", "s1.", "BOX1."]) {
          const r = await dig(path("s2"), name, "A");
          assert.deepEqual(r.answers.map((a) => a.data), ["10.0.0.2"], r.out);
          assert.equal(r.answers[0].name, name.endsWith(".") ? name : `${name}.`);
        }
      });

      await t.step("a sandbox resolves only names on its networks", async () => {
        const r = await dig(path("s1"), "s3", "A");
        assert.equal(r.status, "NXDOMAIN", r.out); // not local: forwarded, NXDOMAIN upstream
        assert.equal(r.answers.length, 0);
        const back = await dig(path("s3"), "s1", "A");
        assert.equal(back.status, "NXDOMAIN", back.out);
        assert.deepEqual((await dig(path("s3"), "s3.net2", "A")).answers.map((a) => a.data), [
          "10.9.0.3",
        ]);
      });

      await t.step("a shared alias: all addresses, order varying over 20 queries", async () => {
        const want = ["10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.2", "10.0.0.3"];
        const orders = new Set<string>();
        for (let i = 0; i < 20; i++) {
          const r = await dig(path("s1"), "svc", "A");
          const ips = r.answers.map((a) => a.data);
          assert.deepEqual([...ips].sort(), want, r.out);
          orders.add(ips.join(","));
        }
        assert.ok(orders.size > 1, "20 queries gave the same order");
      });

      await t.step("PTR, AAAA and NODATA", async () => {
        const ptr = await dig(path("s1"), "-x", "10.0.0.3");
        assert.deepEqual(ptr.answers.map((a) => [a.type, a.data]), [["PTR", "s2.net1."]], ptr.out);
        const ptr6 = await dig(path("s1"), "-x", "fd00::3");
        assert.deepEqual(ptr6.answers.map((a) => a.data), ["s2.net1."], ptr6.out);
        const six = await dig(path("s1"), "s2", "AAAA");
        assert.deepEqual(six.answers.map((a) => [a.type, a.data]), [["AAAA", "fd00::3"]]);
        const nodata = await dig(path("s2"), "s1", "AAAA");
        assert.equal(nodata.status, "NOERROR", nodata.out);
        assert.equal(nodata.answers.length, 0);
        const mx = await dig(path("s2"), "s1", "MX");
        assert.equal(mx.status, "NOERROR");
        assert.equal(mx.answers.length, 0);
      });

      await t.step(
        "forwarding from the host namespace: answers, NXDOMAIN, TCP over TCP",
        async () => {
          good.seen.length = 0;
          bad.seen.length = 0;
          const r = await dig(path("s1"), "external.test", "A");
          assert.equal(r.status, "NOERROR", r.out);
          assert.deepEqual(r.answers.map((a) => [a.data, a.ttl]), [["192.0.2.10", 30]]);
          assert.deepEqual(bad.seen, [{ name: "external.test", tcp: false }]); // SERVFAIL: next
          const nx = await dig(path("s1"), "nowhere.test", "A");
          assert.equal(nx.status, "NXDOMAIN", nx.out);
          good.seen.length = 0;
          const tcp = await dig(path("s1"), "+tcp", "external.test", "A");
          assert.deepEqual(tcp.answers.map((a) => a.data), ["192.0.2.10"], tcp.out);
          assert.deepEqual(good.seen, [{ name: "external.test", tcp: true }]);
          // a truncated upstream answer: dig retries over TCP, which is forwarded over TCP
          const big = await dig(path("s1"), "big.test", "A");
          assert.equal(big.answers.length, 100, big.out);
        },
      );

      await t.step(
        "SERVFAIL: internal-only sandbox, no upstream, unreachable upstream",
        async () => {
          good.seen.length = 0;
          const internal = await dig(path("si"), "external.test", "A");
          assert.equal(internal.status, "SERVFAIL", internal.out);
          assert.equal(good.seen.length, 0);
          assert.deepEqual((await dig(path("si"), "si2", "A")).answers.map((a) => a.data), [
            "10.5.0.3",
          ]);
          assert.equal((await dig(path("sn"), "external.test", "A")).status, "SERVFAIL");
          assert.deepEqual((await dig(path("sn"), "sn", "A")).answers.map((a) => a.data), [
            "10.7.0.2",
          ]);
          const started = Date.now();
          const d = await dig(path("su"), "external.test", "A");
          assert.equal(d.status, "SERVFAIL", d.out);
          assert.ok(Date.now() - started < 1900, "the forward was not bounded");
        },
      );

      await t.step("truncation: UDP answers set TC, TCP answers carry all records", async () => {
        const noedns = await dig(path("s1"), "+ignore", "+noedns", "many", "A");
        assert.ok(noedns.flags.includes("tc"), noedns.out);
        assert.ok(noedns.answers.length > 0 && noedns.answers.length < 100);
        const edns = await dig(path("s1"), "+ignore", "+bufsize=1232", "many", "A");
        assert.ok(edns.flags.includes("tc"), edns.out);
        assert.ok(edns.answers.length > noedns.answers.length);
        const tcp = await dig(path("s1"), "+tcp", "many", "A");
        assert.ok(!tcp.flags.includes("tc"), tcp.out);
        assert.equal(tcp.answers.length, 100);
        const retried = await dig(path("s1"), "many", "A"); // dig retries over TCP itself
        assert.equal(retried.answers.length, 100);
      });

      await t.step("records change at once: a removed endpoint's names disappear", async () => {
        assert.equal((await dig(path("s1"), "web", "A")).answers.length, 1);
        svc.removeEndpoint("s1", "net1");
        assert.equal((await dig(path("s2"), "web", "A")).status, "NXDOMAIN");
        assert.equal((await dig(path("s2"), "s1", "A")).status, "NXDOMAIN");
        assert.equal((await dig(path("s2"), "-x", "10.0.0.2")).answers.length, 0);
        svc.upsertEndpoint(ep({
          sandboxId: "s1",
          networkId: "net1",
          hostname: "box1",
          aliases: ["web", "svc"],
          ipv4: "10.0.0.2",
        }));
        assert.deepEqual((await dig(path("s2"), "web", "A")).answers.map((a) => a.data), [
          "10.0.0.2",
        ]);
      });

      await t.step(
        "garbage, runts, huge packets and a flood; then queries still work",
        async () => {
          const packets: Uint8Array[] = [];
          for (let i = 0; i < 2000; i++) {
            packets.push(
              crypto.getRandomValues(new Uint8Array(1 + Math.floor(Math.random() * 600))),
            );
          }
          packets.push(new Uint8Array(5)); // a truncated header
          const huge = new Uint8Array(60000);
          for (let i = 0; i < 60000; i += 65536) {
            crypto.getRandomValues(huge.subarray(i, i + 65536));
          }
          packets.push(huge);
          await udpExchange(path("s2"), packets, 200);
          // a header that promises a question it does not carry: FORMERR with its ID
          const noQuestion = query("s1", "A", { id: 0x4242 }).slice(0, 12);
          const replies = await udpExchange(path("s2"), [noQuestion], 300);
          assert.deepEqual(replies.map((r) => [dec(r).id, dec(r).rcode]), [[0x4242, "FORMERR"]]);
          // TCP garbage: a huge frame of noise, a cut frame, a zero-length frame
          for (
            const bytes of [
              new Uint8Array([0xff, 0xff, ...crypto.getRandomValues(new Uint8Array(65535))]),
              new Uint8Array([0x00, 0x40, 1, 2, 3]),
              new Uint8Array([0, 0, 0, 0]),
            ]
          ) {
            const c = await withNetns(
              path("s2"),
              () => Deno.connect({ hostname: "127.0.0.11", port: 53 }),
            );
            try {
              let at = 0;
              while (at < bytes.length) at += await c.write(bytes.subarray(at));
            } catch {
              /* closed by the server */
            } finally {
              c.close();
            }
          }
          const a = await dig(path("s2"), "s1", "A");
          assert.deepEqual(a.answers.map((x) => x.data), ["10.0.0.2"], a.out);
          const b = await dig(path("s2"), "+tcp", "s1", "A");
          assert.deepEqual(b.answers.map((x) => x.data), ["10.0.0.2"], b.out);
        },
      );

      await t.step(
        "TCP: several queries per connection; idle timeout; bounded connections",
        async () => {
          const conn = await withNetns(
            path("s2"),
            () => Deno.connect({ hostname: "127.0.0.11", port: 53 }),
          );
          try {
            const frames = ["s1", "web", "svc"].map((n, i) => {
              const q = query(n, "A", { id: 100 + i });
              return new Uint8Array([q.length >> 8, q.length & 255, ...q]);
            });
            await conn.write(new Uint8Array(frames.flatMap((f) => [...f])));
            const ids: number[] = [];
            for (let i = 0; i < 3; i++) {
              const head = await readN(conn, 2);
              const d = dec(await readN(conn, (head[0] << 8) | head[1]));
              ids.push(d.id);
              assert.ok(d.answers.length >= 1);
            }
            assert.deepEqual(ids, [100, 101, 102]);
            // idle: the server closes the connection after tcpIdleTimeoutMs (1 s here)
            const started = Date.now();
            const end = await conn.read(new Uint8Array(10)).catch(() => null);
            assert.equal(end, null);
            assert.ok(Date.now() - started < 3000);
          } finally {
            try {
              conn.close();
            } catch { /* closed */ }
          }
          const idle: Deno.Conn[] = [];
          try {
            for (let i = 0; i < 20; i++) {
              idle.push(
                await withNetns(
                  path("s2"),
                  () => Deno.connect({ hostname: "127.0.0.11", port: 53 }),
                ),
              );
            }
            await new Promise((r) => setTimeout(r, 100));
            assert.ok(svc.stats().tcpConnections <= 8, JSON.stringify(svc.stats()));
            const r = await dig(path("s2"), "+tcp", "s1", "A");
            assert.deepEqual(r.answers.map((a) => a.data), ["10.0.0.2"], r.out);
            assert.ok(svc.stats().tcpEvicted > 0);
          } finally {
            for (const c of idle) {
              try {
                c.close();
              } catch { /* closed */ }
            }
          }
        },
      );

      await t.step("removeSandbox closes its listeners; addSandbox is idempotent", async () => {
        await svc.addSandbox("s3", path("s3")); // again: nothing changes
        assert.equal((await dig(path("s3"), "s3", "A")).answers.length, 1);
        await svc.removeSandbox("s3");
        assert.equal(svc.hasSandbox("s3"), false);
        const r = await dig(path("s3"), "s3", "A");
        assert.notEqual(r.code, 0, r.out);
        const ss = await must(["ip", "netns", "exec", ns("s3"), "ss", "-Hlnu", "sport = :53"]);
        assert.equal(ss.trim(), "");
        const st = await must(["ip", "netns", "exec", ns("s3"), "ss", "-Hlnt", "sport = :53"]);
        assert.equal(st.trim(), "");
        await svc.removeSandbox("s3"); // idempotent
        await svc.addSandbox("s3", path("s3")); // and back
        assert.equal((await dig(path("s3"), "s3", "A")).answers.length, 1);
        // a new namespace at the same path (a recreated sandbox): the listeners follow it
        await must(["ip", "netns", "del", ns("s3")]);
        await addNetns(ns("s3"));
        assert.notEqual((await dig(path("s3"), "s3", "A")).code, 0);
        await svc.addSandbox("s3", path("s3"));
        assert.equal((await dig(path("s3"), "s3", "A")).answers.length, 1);
      });

      await t.step("addSandbox names the sandbox and path when it cannot listen", async () => {
        await assert.rejects(
          () => svc.addSandbox("ghost", `/run/netns/${prefix}-missing`),
          /embedded DNS of sandbox ghost .* in "\/run\/netns\/cnmt-.*-missing"/,
        );
        // port 53 taken there (by another service's listener)
        await assert.rejects(
          () => none.addSandbox("s2", path("s2")),
          new RegExp(`sandbox s2 on 127.0.0.11:53 in "${path("s2")}": .*[Aa]ddress.*in use`),
        );
        assert.equal(none.hasSandbox("s2"), false);
      });
      assert.deepEqual(logs.filter((l) => l.includes("internal error")), []);
    } finally {
      for (const s of services) await s.close();
      for (const s of stubs) await s.close();
      await removeNetnsByPrefix(prefix);
    }
  },
});
