/**
 * The controller on real kernel objects, in a throwaway host namespace (needs root).
 * Everything is removed in `finally`, even on failure.
 */
import assert from "node:assert/strict";
import type { Controller } from "./controller.ts";
import { openController } from "../open.ts";
import { createProcessRunner, FaultyRunner } from "../kernel/mod.ts";
import {
  addNetns,
  hostResidue,
  isRoot,
  must,
  ping,
  prefixResidue,
  removeNetnsByPrefix,
  settledHostResidue,
  sh,
  tcpReach,
  testPrefix,
  udpReach,
} from "../../testing/mod.ts";

const ignore = !isRoot;

/** Runs `fn` with a controller on a fresh host namespace; removes everything afterwards. */
async function withHost(
  fn: (ctl: Controller, ctx: { prefix: string; host: string }) => Promise<void>,
  runner?: (real: ReturnType<typeof createProcessRunner>) => ReturnType<typeof createProcessRunner>,
) {
  const prefix = testPrefix();
  const host = `${prefix}-host`;
  await addNetns(host);
  let ctl: Controller | undefined;
  try {
    ctl = await openController({
      hostNetns: host,
      prefix,
      stateDir: ":memory:",
      runner: runner?.(createProcessRunner()),
    });
    await fn(ctl, { prefix, host });
  } finally {
    await ctl?.close();
    await removeNetnsByPrefix(prefix);
  }
  assert.deepEqual(await prefixResidue(prefix), [], "nothing of the test is left");
}

const ip = (cidr?: string) => cidr!.split("/")[0];

Deno.test({
  name: "bridge networks: traffic flows within a network and is dropped across (root)",
  ignore,
  fn: () =>
    withHost(async (ctl, { prefix, host }) => {
      await ctl.createNetwork({ name: "red", subnet: "10.201.0.0/24" });
      await ctl.createNetwork({ name: "blue", subnet: "10.202.0.0/24" });
      const sb: Record<string, { ns: string; ip: string }> = {};
      for (const [name, net] of [["r1", "red"], ["r2", "red"], ["b1", "blue"], ["b2", "blue"]]) {
        const s = await ctl.createSandbox({ name });
        const ep = await ctl.connect(net, name);
        sb[name] = { ns: s.netnsName, ip: ip(ep.ipv4) };
      }
      // within a network: ICMP, TCP and UDP, both ways
      assert.ok(await ping(sb.r1.ns, sb.r2.ip), "r1 -> r2 ping");
      assert.ok(await ping(sb.b2.ns, sb.b1.ip), "b2 -> b1 ping");
      assert.ok(await tcpReach(sb.r2.ns, sb.r1.ns, sb.r1.ip, 8080), "r2 -> r1 tcp");
      assert.ok(await udpReach(sb.b1.ns, sb.b2.ns, sb.b2.ip, 5353), "b1 -> b2 udp");
      // each sandbox has its default route via the gateway and reaches it
      assert.ok(await ping(sb.r1.ns, "10.201.0.1"), "r1 -> gateway");
      const routes = await must(["ip", "-n", sb.b1.ns, "route", "show", "default"]);
      assert.match(routes, /default via 10\.202\.0\.1 dev eth0/);
      // across networks: nothing, in both directions, for all three protocols
      const across = await Promise.all([
        ping(sb.r1.ns, sb.b1.ip),
        ping(sb.b1.ns, sb.r1.ip),
        tcpReach(sb.r1.ns, sb.b1.ns, sb.b1.ip, 8081),
        tcpReach(sb.b2.ns, sb.r2.ns, sb.r2.ip, 8082),
        udpReach(sb.r2.ns, sb.b2.ns, sb.b2.ip, 5354),
        udpReach(sb.b1.ns, sb.r1.ns, sb.r1.ip, 5355),
      ]);
      assert.deepEqual(across, [false, false, false, false, false, false], "isolated");
      // The check can fail: without the driver's table, the host routes between the two
      // networks, so the drop above is what isolates them.
      const table = `inet ${prefix.replace(/-/g, "_")}_bridge`;
      await must(["ip", "netns", "exec", host, "nft", "delete", "table", ...table.split(" ")]);
      assert.ok(await ping(sb.r1.ns, sb.b1.ip), "without isolation rules r1 reaches b1");
    }),
});

Deno.test({
  name: "removing sandboxes and networks leaves nothing in the host namespace (root)",
  ignore,
  fn: () =>
    withHost(async (ctl, { prefix, host }) => {
      await ctl.createNetwork({ name: "red", subnet: "10.201.0.0/24" });
      await ctl.createNetwork({ name: "blue" });
      for (const n of ["a", "b", "c"]) await ctl.createSandbox({ name: n });
      await ctl.connect("red", "a");
      await ctl.connect("red", "b");
      await ctl.connect("blue", "b");
      await ctl.connect("blue", "c");
      const b = ctl.inspectSandbox("b");
      assert.deepEqual(b.endpointDetails.map((e) => e.ifname), ["eth0", "eth1"]);
      assert.ok((await hostResidue(host)).length > 0);
      await ctl.disconnect("red", "b");
      const links = await must(["ip", "-n", b.netnsName, "-br", "link"]);
      assert.ok(!/\beth0\b/.test(links) && /\beth1\b/.test(links), `eth0 gone: ${links}`);
      for (const n of ["a", "b", "c"]) await ctl.removeSandbox(n);
      await ctl.removeNetwork("red");
      await ctl.removeNetwork("blue");
      assert.deepEqual(await settledHostResidue(host), []);
      assert.deepEqual(await prefixResidue(prefix, [host]), []);
    }),
});

Deno.test({
  name: "a kernel failure halfway through an operation leaves nothing behind (root)",
  ignore,
  fn: async (t) => {
    for (
      const [label, match] of [
        ["connect: addressing inside the sandbox", /addr (add|replace) 10\.201\.0\.2/],
        ["connect: creating the interface in the sandbox", / netns \S+ name eth0/],
        ["network create: the nft transaction", /inet \S+_bridge/],
        ["sandbox create: loopback up", /link set dev lo up/],
      ] as const
    ) {
      await t.step(label, async () => {
        let armed = false;
        let faulty: FaultyRunner | undefined;
        await withHost(async (ctl, { prefix, host }) => {
          await ctl.createNetwork({ name: "base", subnet: "10.209.0.0/24" });
          if (!label.startsWith("network")) {
            await ctl.createNetwork({ name: "red", subnet: "10.201.0.0/24" });
          }
          if (label.startsWith("connect")) await ctl.createSandbox({ name: "a" });
          const before = await hostResidue(host);
          armed = true;
          const op = label.startsWith("connect")
            ? ctl.connect("red", "a")
            : label.startsWith("network")
            ? ctl.createNetwork({ name: "red", subnet: "10.201.0.0/24" })
            : ctl.createSandbox({ name: "a" });
          await assert.rejects(op, /injected fault/);
          armed = false;
          // the nft change is tried as one small transaction, then as a whole rewrite
          assert.ok(faulty!.injected >= 1, "the fault was injected");
          assert.deepEqual(await hostResidue(host), before, "host namespace as before");
          if (label.startsWith("sandbox")) {
            assert.deepEqual(await prefixResidue(prefix, [host]), [], "no sandbox namespace");
          } else if (label.startsWith("connect")) {
            const sb = ctl.inspectSandbox("a");
            const links = await must(["ip", "-n", sb.netnsName, "-br", "link"]);
            assert.deepEqual(links.trim().split("\n").map((l) => l.split(/\s+/)[0]), ["lo"]);
            assert.equal(sb.endpointDetails.length, 0);
          } else {
            assert.deepEqual(ctl.listNetworks().map((n) => n.name), ["base"]);
          }
        }, (real) => (faulty = new FaultyRunner(real, (c) => armed && match.test(c.stdin ?? ""))));
      });
    }
  },
});

Deno.test({
  name: "bridge options: internal has no route out, enable_icc=false isolates peers, mtu (root)",
  ignore,
  fn: () =>
    withHost(async (ctl, { host }) => {
      await ctl.createNetwork({ name: "int", subnet: "10.203.0.0/24", internal: true });
      await ctl.createNetwork({
        name: "noicc",
        subnet: "10.204.0.0/24",
        options: {
          "com.docker.network.bridge.enable_icc": "false",
          "com.docker.network.driver.mtu": "1400",
        },
      });
      for (const n of ["i1", "i2", "n1", "n2"]) await ctl.createSandbox({ name: n });
      const i1 = await ctl.connect("int", "i1");
      const i2 = await ctl.connect("int", "i2");
      const n1 = await ctl.connect("noicc", "n1");
      const n2 = await ctl.connect("noicc", "n2");
      const ns = (s: string) => ctl.inspectSandbox(s).netnsName;
      assert.equal(i1.gateway, undefined);
      assert.equal((await must(["ip", "-n", ns("i1"), "route", "show", "default"])).trim(), "");
      assert.ok(await ping(ns("i1"), ip(i2.ipv4)), "internal: within the network still flows");
      // the host namespace has an address in another subnet: internal cannot reach it
      await must(["ip", "-n", host, "link", "add", "probe0", "type", "bridge"]);
      await must(["ip", "-n", host, "addr", "add", "10.205.0.1/24", "dev", "probe0"]);
      await must(["ip", "-n", host, "link", "set", "probe0", "up"]);
      const r = await sh(["ip", "netns", "exec", ns("i1"), "ping", "-c1", "-W1", "10.205.0.1"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr + r.stdout, /unreachable/i);
      // noicc: peers cannot talk, each reaches its gateway
      assert.equal(await ping(ns("n1"), ip(n2.ipv4)), false, "icc off: n1 -/-> n2");
      assert.ok(await ping(ns("n1"), n1.gateway!), "icc off: n1 -> gateway");
      assert.ok(await ping(ns("n2"), n2.gateway!), "icc off: n2 -> gateway");
      const eth0 = JSON.parse(await must(["ip", "-n", ns("n1"), "-j", "link", "show", "eth0"]));
      assert.equal(eth0[0].mtu, 1400);
      await must(["ip", "-n", host, "link", "del", "probe0"]);
    }),
});
