import assert from "node:assert/strict";
import {
  debugState,
  pollUntil,
  probeDns,
  probeHttp,
  probeIcmp,
  probeTcp,
  probeUdp,
  reachMatrix,
  startResponders,
} from "./mod.ts";
import { descendants } from "./run.ts";
import { hex6, makePair, netnsList, pidsIn, removeByPrefix } from "./test_namespaces.ts";

const isRoot = Deno.uid() === 0;

async function comm(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "")).trim();
}

Deno.test({
  name: "probes: ICMP/TCP/UDP/HTTP/DNS between two namespaces",
  ignore: !isRoot,
  async fn(t) {
    const prefix = `cnmt-${hex6()}`;
    let stub: Deno.ChildProcess | undefined;
    try {
      const { a, pa, pb } = await makePair(prefix);
      const responders = await startResponders(pb, "b", {
        tcp: [7000],
        udp: [7001],
        http: [8080],
      });
      try {
        await t.step("ICMP reaches v4 and v6", async () => {
          for (const ip of ["10.250.0.2", "fd00:250::2"]) {
            const r = await probeIcmp(pa, ip);
            assert.ok(r.ok, `${ip}: ${r.detail}`);
            assert.match(r.command, new RegExp(`^nsenter --net=${pa} ping .*${ip}$`));
          }
          const big = await probeIcmp(pa, "10.250.0.2", { size: 1472, dontFragment: true });
          assert.ok(big.ok, big.detail);
          const tooBig = await probeIcmp(pa, "10.250.0.2", { size: 1473, dontFragment: true });
          assert.equal(tooBig.ok, false);
          assert.match(tooBig.command, /-s 1473 -M do/);
        });

        await t.step("TCP, UDP and HTTP answer with the identity (v4 and v6)", async () => {
          for (const ip of ["10.250.0.2", "fd00:250::2"]) {
            const tcp = await probeTcp(pa, ip, 7000);
            assert.ok(tcp.ok, `tcp ${ip}: ${tcp.detail}`);
            assert.equal(tcp.identity, "b");
            const udp = await probeUdp(pa, ip, 7001);
            assert.ok(udp.ok, `udp ${ip}: ${udp.detail}`);
            assert.equal(udp.identity, "b");
            const url = ip.includes(":") ? `http://[${ip}]:8080/any/path` : `http://${ip}:8080/`;
            const http = await probeHttp(pa, url);
            assert.ok(http.ok, `http ${ip}: ${http.detail}`);
            assert.equal(http.identity, "b");
            assert.equal(http.status, 200);
          }
          const tcp6 = await probeTcp(pa, "fd00:250::2", 7000);
          assert.match(tcp6.command, /TCP6:\[fd00:250::2\]:7000/);
        });

        await t.step("repeated UDP probes all answer", async () => {
          const results = await Promise.all(
            Array.from({ length: 10 }, () => probeUdp(pa, "10.250.0.2", 7001)),
          );
          assert.deepEqual(results.map((r) => r.identity), Array(10).fill("b"));
        });

        await t.step("closed ports and unused addresses fail fast", async () => {
          let t0 = performance.now();
          const closed = await probeTcp(pa, "10.250.0.2", 7999);
          assert.equal(closed.ok, false);
          assert.equal(closed.failure, "refused");
          assert.ok(performance.now() - t0 < 1000);

          t0 = performance.now();
          const udpClosed = await probeUdp(pa, "10.250.0.2", 7998);
          assert.equal(udpClosed.ok, false);
          assert.ok(performance.now() - t0 < 1200, `${performance.now() - t0} ms`);

          const negatives = await Promise.all([
            timed(() => probeTcp(pa, "10.250.0.77", 7000)),
            timed(() => probeIcmp(pa, "10.250.0.77")),
            timed(() => probeUdp(pa, "10.250.0.77", 7001)),
            timed(() => probeHttp(pa, "http://10.250.0.77:8080/")),
            timed(() => probeTcp(pa, "fd00:250::77", 7000)),
          ]);
          for (const [r, ms] of negatives) {
            assert.equal(r.ok, false, r.command);
            assert.ok(ms < 1600, `${r.command} took ${ms.toFixed(0)} ms`);
          }
          const short = await timed(() => probeTcp(pa, "10.250.0.77", 7000, { timeoutMs: 300 }));
          assert.ok(short[1] < 800, `short timeout took ${short[1]} ms`);
        });

        await t.step("reachMatrix", async () => {
          const m = await reachMatrix(
            [{ label: "a", ns: pa }, { label: "b", ns: pb }],
            [
              { label: "a", ip: "10.250.0.1" },
              { label: "b6", ip: "fd00:250::2" },
              { label: "none", ip: "10.250.0.99" },
            ],
            { timeoutMs: 500 },
          );
          assert.deepEqual(m, [[true, true, false], [true, true, false]]);
        });

        await t.step("a second responder on a busy port fails and leaves nothing", async () => {
          const before = (await pidsIn(`${prefix}-b`)).length;
          await assert.rejects(
            () => startResponders(pb, "again", { tcp: [7000] }),
            /Cannot start tcp responder "again" on port 7000/,
          );
          assert.equal((await pidsIn(`${prefix}-b`)).length, before);
        });

        await t.step("await using stops responders", async () => {
          let pids: number[];
          {
            await using r = await startResponders(pa, "a.1", { tcp: [7100], udp: [7101] });
            pids = r.pids;
            const got = await probeTcp(pb, "10.250.0.1", 7100);
            assert.equal(got.identity, "a.1");
          }
          const left = await pidsIn(a);
          assert.deepEqual(left.filter((p) => pids.includes(p)), []);
        });

        await t.step("DNS against a stub", async () => {
          const stubPath = new URL("../harness/dns_stub.ts", import.meta.url).pathname;
          stub = new Deno.Command("nsenter", {
            args: [
              `--net=${pb}`,
              Deno.execPath(),
              "run",
              "--quiet",
              "--no-config",
              "--unstable-net",
              "--allow-net",
              stubPath,
              "10.250.0.2",
              "53",
              "b.test=10.250.0.2",
              "b.test=10.250.0.3",
              "PTR:2.0.250.10.in-addr.arpa=b.test",
            ],
            stdout: "null",
            stderr: "null",
          }).spawn();
          const up = await pollUntil(
            () => probeDns(pa, "10.250.0.2", "b.test", { tcp: true }),
            (r) => r.rcode !== "timeout" && r.rcode !== "error",
            { deadlineMs: 10_000, intervalMs: 100 },
          );
          assert.ok(up.ok, up.value.detail);
          const a4 = await probeDns(pa, "10.250.0.2", "b.test");
          assert.equal(a4.rcode, "NOERROR");
          assert.ok(a4.ok);
          assert.deepEqual(a4.answers.sort(), ["10.250.0.2", "10.250.0.3"]);
          assert.match(
            a4.command,
            /^nsenter --net=\S+ dig \+tries=1 \+time=1 @10\.250\.0\.2 b\.test A/,
          );
          const nx = await probeDns(pa, "10.250.0.2", "nope.test");
          assert.equal(nx.rcode, "NXDOMAIN");
          assert.equal(nx.ok, false);
          const ptr = await probeDns(pa, "10.250.0.2", "10.250.0.2", { type: "PTR" });
          assert.deepEqual(ptr.answers, ["b.test."]);
          const tcp = await probeDns(pa, "10.250.0.2", "b.test", { tcp: true });
          assert.ok(tcp.ok, tcp.detail);
          const [dead, ms] = await timed(() => probeDns(pa, "10.250.0.77", "b.test"));
          assert.equal(dead.rcode, "timeout");
          assert.equal(dead.ok, false);
          assert.ok(ms < 2500, `${ms} ms`);
          const refused = await probeDns(pa, "10.250.0.1", "b.test", { tcp: true });
          assert.equal(refused.rcode, "error");
          assert.match(refused.detail, /refused/);
        });

        await t.step("debugState shows addresses, routes and rules", async () => {
          const s = await debugState(pa);
          for (
            const h of ["## ip -br addr", "## ip route", "## ip -6 route", "## nft list ruleset"]
          ) {
            assert.ok(s.includes(h), h);
          }
          assert.match(s, /10\.250\.0\.1\/24/);
          const missing = await debugState("/run/netns/cnmt-does-not-exist");
          assert.match(missing, /## ip route\n\(exit/);
        });
      } finally {
        const pids = responders.pids;
        const below = (await Promise.all(pids.map(descendants))).flat();
        await responders.stop();
        await responders.stop(); // idempotent
        const left = await pidsIn(`${prefix}-b`);
        const socats = [];
        for (const pid of left) if ((await comm(pid)) === "socat") socats.push(pid);
        assert.deepEqual(socats, [], "socat processes left in the namespace");
        for (const pid of [...pids, ...below]) {
          assert.equal(await Deno.stat(`/proc/${pid}`).then(() => true, () => false), false);
        }
      }
    } finally {
      if (stub) {
        try {
          stub.kill("SIGKILL");
        } catch { /* gone */ }
        await stub.status;
      }
      await removeByPrefix(prefix);
      assert.deepEqual((await netnsList()).filter((n) => n.startsWith(prefix)), []);
    }
  },
});

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}
