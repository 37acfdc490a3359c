/**
 * Ports published on 127.0.0.1 stay on the host (needs root). The driver sets
 * `route_localnet=1` in the host namespace so that the host's own connections to
 * 127.0.0.1:PORT can be DNATed out a bridge; without a guard, a neighbour that sends a
 * packet with destination 127.0.0.1 to the host's MAC reaches the sandbox too (Docker's
 * raw `PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP` is the guard).
 *
 * The neighbour here is the "outside" namespace (198.51.100.0/24, a documentation range):
 * it routes 198.51.100.254 via the host and rewrites the destination of those packets to
 * 127.0.0.1 after routing (nft updates the IP checksum and the TCP pseudo-header sum), so
 * the frame goes to the host's MAC with destination 127.0.0.1. Counters in the host
 * namespace (before any guard) prove the crafted SYNs arrive there; counters in the sandbox
 * and in the host's input hook show whether they got in.
 * Everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import type { Controller } from "../../controller/mod.ts";
import { openController } from "../../open.ts";
import {
  addHostWithOutside,
  isRoot,
  must,
  prefixResidue,
  removeNetnsByPrefix,
  sh,
  tcpReach,
  testPrefix,
} from "../../../testing/mod.ts";

const HOST_IP = "198.51.100.1";
/** A second address of the host on the same link. */
const HOST_IP2 = "198.51.100.3";
/** Routed by the outside via the host, then rewritten to 127.0.0.1. */
const CRAFTED = "198.51.100.254";
const OUTSIDE_IP = "198.51.100.2";
const LO_PORT = 18091; // published on 127.0.0.1
const ANY_PORT = 18092; // published on 0.0.0.0
const X_PORT = 18093; // published on HOST_IP only
const LOCAL_PORT = 18094; // not published: the host's own (loopback) services
const CRAFTED_PORTS = [LO_PORT, ANY_PORT, LOCAL_PORT];

/** Packets counted by the named counter of table `ip cnmt_watch` in `netns`. */
async function counted(netns: string, name: string): Promise<number> {
  const out = await must([
    "ip",
    "netns",
    "exec",
    netns,
    "nft",
    "-j",
    "list",
    "counter",
    "ip",
    "cnmt_watch",
    name,
  ]);
  const parsed = JSON.parse(out) as { nftables: { counter?: { packets: number } }[] };
  const c = parsed.nftables.find((e) => e.counter)?.counter;
  if (!c) throw new Error(`no counter ${name} in ${netns}: ${out}`);
  return c.packets;
}

/**
 * Table `ip cnmt_watch`: counters `<hook><port>` of the SYNs matching `match` for each port,
 * in the hooks given (prerouting at -350 sees a packet before any guard at raw, -300).
 */
function watchScript(match: string, hooks: ("prerouting" | "input")[]): string {
  const syn = "tcp flags & (syn | ack) == syn";
  return [
    "table ip cnmt_watch {",
    ...hooks.flatMap((h) => CRAFTED_PORTS.map((p) => `  counter ${h}${p} {}`)),
    ...hooks.flatMap((h) => [
      `  chain ${h} {`,
      `    type filter hook ${h} priority -350; policy accept;`,
      ...CRAFTED_PORTS.map((p) => `    ${match} tcp dport ${p} ${syn} counter name "${h}${p}"`),
      "  }",
    ]),
    "}",
    "",
  ].join("\n");
}

Deno.test({
  name: "bridge ports: 127.0.0.1 from the neighbouring segment never reaches a sandbox (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`, out = `${prefix}-out`;
    let ctl: Controller | undefined;
    try {
      await addHostWithOutside(host, out);
      await must(["ip", "-n", out, "link", "set", "lo", "up"]);
      await must(["ip", "-n", host, "addr", "add", `${HOST_IP2}/24`, "dev", "out0"]);
      ctl = await openController({ hostNetns: host, prefix, stateDir: ":memory:" });
      await ctl.createNetwork({ name: "pub", subnet: "10.234.0.0/24" });
      const sb = await ctl.createSandbox({ name: "web" });
      const ns = sb.netnsName;
      await ctl.connect("pub", "web", {
        publish: [
          { hostIp: "127.0.0.1", hostPort: LO_PORT, containerPort: LO_PORT },
          { hostPort: ANY_PORT, containerPort: ANY_PORT },
          { hostIp: HOST_IP, hostPort: X_PORT, containerPort: X_PORT },
        ],
      });
      const localnet = await must([
        "ip",
        "netns",
        "exec",
        host,
        "cat",
        "/proc/sys/net/ipv4/conf/all/route_localnet",
      ]);
      assert.equal(localnet.trim(), "1", "the driver sets route_localnet (what makes this matter)");

      // the legitimate uses keep working
      assert.ok(await tcpReach(host, ns, "127.0.0.1", LO_PORT), "host -> 127.0.0.1 (127 binding)");
      assert.ok(await tcpReach(host, ns, "127.0.0.1", ANY_PORT), "host -> 127.0.0.1 (0.0.0.0)");
      assert.ok(await tcpReach(out, ns, HOST_IP, ANY_PORT), "outside -> host (0.0.0.0 binding)");
      assert.ok(await tcpReach(host, ns, HOST_IP, ANY_PORT), "host -> its address (0.0.0.0)");
      assert.ok(await tcpReach(ns, ns, HOST_IP, ANY_PORT), "hairpin (0.0.0.0 binding)");
      assert.ok(await tcpReach(out, ns, HOST_IP, X_PORT), "outside -> X (binding on X)");
      // a binding answers only at its address
      assert.ok(!(await tcpReach(out, ns, HOST_IP, LO_PORT)), "127 binding at the host's address");
      assert.ok(!(await tcpReach(out, ns, HOST_IP2, X_PORT)), "binding on X at another address");
      assert.ok(!(await tcpReach(host, ns, "127.0.0.1", X_PORT)), "binding on X at 127.0.0.1");

      // the neighbour crafts SYNs to 127.0.0.1 and sends them to the host's MAC
      await must(["ip", "-n", out, "route", "add", `${CRAFTED}/32`, "via", HOST_IP]);
      await must(
        ["ip", "netns", "exec", out, "nft", "-f", "-"],
        [
          "table ip cnmt_craft {",
          "  chain post {",
          "    type filter hook postrouting priority 0; policy accept;",
          `    ip daddr ${CRAFTED} tcp dport { ${
            CRAFTED_PORTS.join(", ")
          } } ip daddr set 127.0.0.1`,
          "  }",
          "}",
          "",
        ].join("\n"),
      );
      await must(
        ["ip", "netns", "exec", host, "nft", "-f", "-"],
        watchScript(`iifname "out0" ip saddr ${OUTSIDE_IP}`, ["prerouting", "input"]),
      );
      await must(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        watchScript(`ip saddr ${OUTSIDE_IP}`, ["prerouting"]),
      );
      // each attempt sends a SYN (and retransmits it) for about 1.5 s; it cannot complete
      await Promise.all(CRAFTED_PORTS.map((port) =>
        sh([
          "ip",
          "netns",
          "exec",
          out,
          "socat",
          "-T",
          "2",
          "-",
          `TCP:${CRAFTED}:${port},connect-timeout=1.5`,
        ], { stdin: "" })
      ));
      const seen: Record<string, { arrived: number; toHost: number; toSandbox: number }> = {};
      for (const port of CRAFTED_PORTS) {
        seen[port] = {
          arrived: await counted(host, `prerouting${port}`),
          toHost: await counted(host, `input${port}`),
          toSandbox: await counted(ns, `prerouting${port}`),
        };
      }
      for (const port of CRAFTED_PORTS) {
        assert.ok(seen[port].arrived > 0, `crafted SYNs to 127.0.0.1:${port} arrive at the host`);
      }
      assert.deepEqual(
        CRAFTED_PORTS.map((p) => [seen[p].toSandbox, seen[p].toHost]),
        [[0, 0], [0, 0], [0, 0]],
        `crafted SYNs from the outside to 127.0.0.1 got in (toSandbox, toHost per port: ` +
          `${LO_PORT} published on 127.0.0.1, ${ANY_PORT} on 0.0.0.0, ${LOCAL_PORT} not ` +
          `published): ${JSON.stringify(seen)}`,
      );
      // and the host itself still gets there
      assert.ok(await tcpReach(host, ns, "127.0.0.1", LO_PORT), "host -> 127.0.0.1 afterwards");

      await ctl.removeSandbox("web");
      await ctl.removeNetwork("pub");
    } finally {
      await ctl?.close();
      await removeNetnsByPrefix(prefix);
    }
    assert.deepEqual(await prefixResidue(prefix), [], "nothing of the test is left");
  },
});
