/**
 * Published ports on real kernel objects (needs root): a throwaway host namespace with an
 * "outside" namespace on 198.51.100.0/24 (a documentation range), as the conformance
 * harness builds it. Everything is removed in `finally`.
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
  tcpReach,
  testPrefix,
  udpReach,
} from "../../../testing/mod.ts";

const HOST_IP = "198.51.100.1";

Deno.test({
  name:
    "bridge ports: published from outside, host, 127.0.0.1 and hairpin; restored; removed (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`, out = `${prefix}-out`;
    const stateDir = await Deno.makeTempDir({ prefix: "cnm-ports-" });
    let ctl: Controller | undefined;
    try {
      // the outside routes the subnet via the host: direct routing must still be refused
      await addHostWithOutside(host, out, ["10.231.0.0/24"]);
      await must(["ip", "-n", out, "link", "set", "lo", "up"]);
      const open = () => openController({ hostNetns: host, prefix, stateDir });
      ctl = await open();
      await ctl.createNetwork({ name: "pub", subnet: "10.231.0.0/24" });
      const sb = await ctl.createSandbox({ name: "web" });
      const ns = sb.netnsName;
      const ep = await ctl.connect("pub", "web", {
        publish: [
          // the responders of testing/mod.ts listen on the port they are probed on
          { hostPort: 18090, containerPort: 18090 },
          { hostPort: 15353, containerPort: 15353, protocol: "udp" },
          { containerPort: 8000 },
        ],
      });
      const eph = ep.published?.[2].hostPort ?? 0;
      const range = await must([
        "ip",
        "netns",
        "exec",
        host,
        "cat",
        "/proc/sys/net/ipv4/ip_local_port_range",
      ]);
      const [lo, hi] = range.trim().split(/\s+/).map(Number);
      assert.ok(eph >= lo && eph <= hi, `ephemeral port ${eph} in ${lo}-${hi}`);

      assert.ok(await tcpReach(out, ns, HOST_IP, 18090), "outside -> host:18090");
      assert.ok(await udpReach(out, ns, HOST_IP, 15353), "outside -> host:15353/udp");
      assert.ok(await tcpReach(host, ns, HOST_IP, 18090), "host -> host address:18090");
      assert.ok(await tcpReach(host, ns, "127.0.0.1", 18090), "host -> 127.0.0.1:18090");
      assert.ok(await tcpReach(ns, ns, HOST_IP, 18090), "hairpin: sandbox -> host:18090");
      assert.ok(!(await tcpReach(out, ns, "10.231.0.2", 81)), "unpublished port, routed directly");
      assert.ok(
        !(await tcpReach(out, ns, "10.231.0.2", 18090)),
        "published container port, routed directly",
      );

      // a restart whose nft table is gone: reconcile puts the ports back
      await ctl.close();
      ctl = undefined;
      await must([
        "ip",
        "netns",
        "exec",
        host,
        "nft",
        "delete",
        "table",
        "inet",
        `${prefix.replaceAll("-", "_")}_bridge`,
      ]).catch(() => {});
      await must(["ip", "netns", "exec", host, "nft", "flush", "ruleset"]);
      ctl = await open();
      await ctl.reconcile();
      assert.ok(await tcpReach(out, ns, HOST_IP, 18090), "outside -> host:18090 after restart");
      assert.ok(await tcpReach(ns, ns, HOST_IP, 18090), "hairpin after restart");

      await ctl.disconnect("pub", "web");
      assert.ok(!(await tcpReach(out, ns, HOST_IP, 18090)), "gone after disconnect");
      const rules = await must(["ip", "netns", "exec", host, "nft", "list", "ruleset"]);
      assert.ok(!/dnat ip to/.test(rules), rules);
      await ctl.removeSandbox("web");
      await ctl.removeNetwork("pub");
    } finally {
      await ctl?.close();
      await removeNetnsByPrefix(prefix);
      await Deno.remove(stateDir, { recursive: true });
    }
    assert.deepEqual(await prefixResidue(prefix), [], "nothing of the test is left");
  },
});
