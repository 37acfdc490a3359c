/**
 * The overlay driver across real hosts: three host namespaces on an underlay, a real etcd
 * in a store namespace (conformance/harness/underlay.ts), one `cnm daemon --store` per
 * host, run inside its host namespace. Needs root.
 */
import assert from "node:assert/strict";
import { createUnderlay, type Underlay } from "../../../conformance/harness/underlay.ts";
import {
  DaemonProcess,
  throwawayDaemonArgs,
  UnixApi,
  until,
} from "../../../testing/daemon_process.ts";
import {
  NEEDS_ROOT,
  ping,
  prefixResidue,
  sh,
  tcpReach,
  testPrefix,
  udpReach,
} from "../../../testing/mod.ts";

const TTL = 3;

interface Host {
  name: string;
  netns: string;
  address: string;
  socket: string;
  stateDir: string;
  prefix: string;
  api: UnixApi;
  daemon?: DaemonProcess;
}

async function startDaemon(h: Host, storeUrl: string): Promise<void> {
  h.daemon = new DaemonProcess(
    [
      ...throwawayDaemonArgs({
        host: h.netns,
        prefix: h.prefix,
        socket: h.socket,
        stateDir: h.stateDir,
      }),
      "--store",
      storeUrl,
      "--advertise-address",
      h.address,
      "--store-ttl",
      String(TTL),
    ],
    undefined,
    { netns: h.netns },
  );
  await h.daemon.ready(h.api);
}

/** The netns of a sandbox, from the daemon that owns it. */
async function netnsOf(h: Host, sandbox: string): Promise<string> {
  return (await h.api.ok("GET", `/sandboxes/${sandbox}`)).netnsName;
}

async function ipOn(h: Host, sandbox: string, network: string): Promise<string> {
  const sb = await h.api.ok("GET", `/sandboxes/${sandbox}`);
  const ep = sb.endpointDetails.find((e: any) => e.networkName === network);
  if (!ep) throw new Error(`${sandbox} is not on ${network} (${h.name})`);
  return ep.ipv4.split("/")[0];
}

/** The addresses a name resolves to from a namespace ("" when none was answered). */
async function dig(netns: string, name: string): Promise<string> {
  const r = await sh(["ip", "netns", "exec", netns, "dig", "+short", "+time=1", "+tries=1", name]);
  return r.stdout.split("\n").filter((l) => /^\d+\.\d+\.\d+\.\d+$/.test(l)).join(",");
}

Deno.test({
  name: "overlay: three hosts, one etcd: connectivity, isolation, DNS, loss, outage, restart",
  ignore: NEEDS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const prefix = testPrefix();
    const work = await Deno.makeTempDir({ prefix: `${prefix}-` });
    let ul: Underlay | undefined;
    const hosts: Host[] = [];
    try {
      ul = await createUnderlay({ prefix, hosts: 3, withStore: true });
      const storeUrl = ul.storeUrl.replace(/^http:/, "etcd:");
      for (const [i, u] of ul.hosts.entries()) {
        const h: Host = {
          name: `h${i + 1}`,
          netns: u.netns,
          address: u.address,
          socket: `${work}/h${i + 1}.sock`,
          stateDir: `${work}/h${i + 1}`,
          prefix: `${prefix}-d${i + 1}`,
          api: new UnixApi(`${work}/h${i + 1}.sock`),
        };
        hosts.push(h);
        await startDaemon(h, storeUrl);
      }
      const [h1, h2, h3] = hosts;

      await t.step("a network made on one host is seen on every host, once", async () => {
        const made = await h1.api.ok("POST", "/networks", { name: "ov1", driver: "overlay" });
        assert.equal(made.scope, "global");
        const vni = made.options["com.docker.network.driver.overlay.vxlanid_list"];
        assert.match(vni, /^\d+$/);
        for (const h of [h2, h3]) {
          const seen = (await h.api.ok("GET", "/networks")).find((n: any) => n.name === "ov1");
          assert.equal(seen?.id, made.id, `${h.name} sees ov1`);
          assert.equal(seen.options["com.docker.network.driver.overlay.vxlanid_list"], vni);
        }
        const dup = await h2.api.call("POST", "/networks", { name: "ov1", driver: "overlay" });
        assert.equal(dup.status, 409, JSON.stringify(dup.json));
        const overlap = await h3.api.call("POST", "/networks", {
          name: "ov9",
          driver: "overlay",
          subnet: made.ipv4[0].subnet,
        });
        assert.equal(overlap.status, 403, JSON.stringify(overlap.json));
        assert.match(overlap.json.message, /overlaps/);
      });

      for (const [h, sb] of [[h1, "a"], [h2, "b"], [h3, "c"]] as const) {
        await h.api.ok("POST", "/sandboxes", { name: sb });
        await h.api.ok("POST", "/networks/ov1/endpoints", { sandbox: sb });
      }
      const nsA = await netnsOf(h1, "a");
      const nsB = await netnsOf(h2, "b");
      const nsC = await netnsOf(h3, "c");
      const ipB = await ipOn(h2, "b", "ov1");
      const ipC = await ipOn(h3, "c", "ov1");

      await t.step("across hosts: ICMP, TCP and UDP; MTU 1450", async () => {
        assert.ok(await ping(nsA, ipB), "a pings b across the underlay");
        assert.ok(await tcpReach(nsA, nsB, ipB, 7001), "TCP a -> b");
        assert.ok(await udpReach(nsC, nsA, await ipOn(h1, "a", "ov1"), 7002), "UDP c -> a");
        // don't-fragment pings: 1422 bytes of payload + 28 of headers = the overlay MTU
        const df = (size: number) =>
          sh(["ip", "netns", "exec", nsA, "ping", "-c1", "-W1", "-M", "do", "-s", `${size}`, ipB]);
        assert.equal((await df(1422)).code, 0, "1450-byte packets pass with don't-fragment");
        const over = await df(1423);
        assert.notEqual(over.code, 0, "1451 bytes do not fit");
      });

      await t.step("DNS: names of sandboxes on other hosts resolve on the overlay", async () => {
        assert.equal(await dig(nsA, "b"), ipB);
        assert.equal(await dig(nsB, "c.ov1"), ipC);
      });

      await t.step(
        "isolation: another overlay, and a bridge network on the same host",
        async () => {
          await h2.api.ok("POST", "/networks", { name: "ov2", driver: "overlay" });
          await h1.api.ok("POST", "/sandboxes", { name: "x" });
          await h1.api.ok("POST", "/networks/ov2/endpoints", { sandbox: "x" });
          await h2.api.ok("POST", "/sandboxes", { name: "y" });
          await h2.api.ok("POST", "/networks/ov2/endpoints", { sandbox: "y" });
          const nsX = await netnsOf(h1, "x");
          const ipY = await ipOn(h2, "y", "ov2");
          assert.ok(await ping(nsX, ipY), "x reaches y on ov2 (the check can see)");
          assert.ok(!(await ping(nsA, ipY)), "a (ov1) does not reach y (ov2)");
          assert.equal(await dig(nsA, "y"), "", "ov2's names are not on ov1");
          await h2.api.ok("POST", "/networks", { name: "br1", driver: "bridge" });
          await h2.api.ok("POST", "/sandboxes", { name: "z" });
          await h2.api.ok("POST", "/networks/br1/endpoints", { sandbox: "z" });
          const ipZ = await ipOn(h2, "z", "br1");
          assert.ok(await ping(await netnsOf(h2, "z"), ipZ), "z answers on br1");
          assert.ok(!(await ping(nsB, ipZ)), "b (ov1) does not reach z (br1) on its own host");
        },
      );

      await t.step(
        "addresses stay unique when two hosts connect 50 sandboxes each at once",
        async () => {
          const make = async (h: Host, tag: string) => {
            const names = Array.from({ length: 50 }, (_, i) => `${tag}${i}`);
            await Promise.all(names.map((n) => h.api.ok("POST", "/sandboxes", { name: n })));
            await Promise.all(
              names.map((n) => h.api.ok("POST", "/networks/ov1/endpoints", { sandbox: n })),
            );
            return names;
          };
          const [n2, n3] = await Promise.all([make(h2, "p"), make(h3, "q")]);
          const addrs: string[] = [];
          for (const [h, names] of [[h2, n2], [h3, n3]] as const) {
            for (const n of names) addrs.push(await ipOn(h, n, "ov1"));
          }
          assert.equal(addrs.length, 100);
          assert.equal(new Set(addrs).size, 100, "no address given twice");
          await Promise.all([
            ...n2.map((n) => h2.api.ok("DELETE", `/sandboxes/${n}`)),
            ...n3.map((n) => h3.api.ok("DELETE", `/sandboxes/${n}`)),
          ]);
        },
      );

      await t.step(
        "store outage: traffic flows, operations fail naming the store, recovery",
        async () => {
          await ul!.stopStore();
          assert.ok(await ping(nsA, ipB), "existing traffic keeps flowing");
          await h1.api.ok("POST", "/sandboxes", { name: "late" });
          const t0 = performance.now();
          const r = await h1.api.call("POST", "/networks/ov1/endpoints", { sandbox: "late" });
          const took = performance.now() - t0;
          assert.equal(r.status, 503, JSON.stringify(r.json));
          assert.match(r.json.message, /store etcd:\/\//);
          assert.ok(took < 2_500, `failed in ${took.toFixed(0)} ms`);
          await ul!.startStore();
          const back = performance.now();
          await until("connect to work again", async () => {
            const again = await h1.api.call("POST", "/networks/ov1/endpoints", { sandbox: "late" });
            return again.status === 201;
          }, 15_000);
          console.log(`connect works again ${(performance.now() - back).toFixed(0)} ms after etcd`);
          const ipLate = await ipOn(h1, "late", "ov1");
          await until(
            "b to learn late's name",
            async () => await dig(nsB, "late") === ipLate,
            5_000,
          );
        },
      );

      await t.step(
        "node loss: h2 dies; its peers and names go within the TTL plus a second",
        async () => {
          const ov1 = (await h1.api.ok("GET", "/networks/ov1")).id.slice(0, 12);
          const ovNs = (await sh(["ip", "netns", "list"])).stdout.split("\n")
            .map((l) => l.split(" ")[0]).find((n) =>
              n.startsWith(`${h1.prefix}-`) && n.endsWith(`-ov-${ov1}`)
            );
          assert.ok(ovNs, "h1 has ov1's namespace");
          const hasB = async () =>
            (await sh(["ip", "-n", ovNs!, "neigh", "show", ipB])).stdout.includes("PERMANENT");
          // the check below must be able to see the entry it then waits to go
          await until("h1 to have b's peer programmed", hasB, 5_000);
          assert.equal(await dig(nsA, "b"), ipB, "b resolves before h2 dies");
          await h2.daemon!.kill();
          await ul!.setHostLink(h2.netns, false);
          const t0 = performance.now();
          await until("b's neighbour entry to go on h1", async () => {
            const n = await sh(["ip", "-n", ovNs!, "neigh", "show", ipB]);
            return n.stdout.trim() === "";
          }, (TTL + 1) * 1000 + 500);
          const peerGone = performance.now() - t0;
          // a name that is not local is forwarded upstream, and dig waits for it: the query's
          // start is when the name was already gone
          let nameGone = Infinity;
          await until("b's name to go on h1", async () => {
            const asked = performance.now();
            if (await dig(nsA, "b") !== "") return false;
            nameGone = asked - t0;
            return true;
          }, 3_000);
          for (const [what, ms] of [["peer", peerGone], ["name", nameGone]] as const) {
            assert.ok(ms <= (TTL + 1) * 1000, `${what} gone after ${ms.toFixed(0)} ms`);
          }
          assert.ok(await ping(nsA, ipC), "the survivors keep their connectivity");
        },
      );

      await t.step("restart: h2 comes back and publishes its endpoints again", async () => {
        await ul!.setHostLink(h2.netns, true);
        await startDaemon(h2, storeUrl);
        await until("a to reach b again", () => ping(nsA, ipB), 10_000);
        assert.equal(await dig(nsA, "b"), ipB);
      });
    } catch (err) {
      // what the daemons said about the store and the overlay, for the failure's reader
      for (const h of hosts) {
        const lines = (h.daemon?.log ?? "").split("\n").filter((l) =>
          /store|overlay|restore/.test(l)
        );
        console.error(`--- ${h.name}:\n${lines.slice(-30).join("\n")}`);
      }
      throw err;
    } finally {
      // sandboxes on every host first: a global network goes once no host has an endpoint
      for (const kind of ["sandboxes", "networks"]) {
        for (const h of hosts) {
          if (!h.daemon || h.daemon.exited) continue;
          try {
            for (const o of await h.api.ok("GET", `/${kind}`)) {
              await h.api.call("DELETE", `/${kind}/${o.id}`);
            }
          } catch (err) {
            console.error(`cleaning ${kind} of ${h.name}: ${err}`);
          }
        }
      }
      for (const h of hosts) {
        await h.daemon?.stop();
        h.api.close();
      }
      await ul?.[Symbol.asyncDispose]();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
    assert.deepEqual(await prefixResidue(prefix), [], "nothing left behind");
  },
});
