/**
 * gateway_mode_ipv4 on real kernel objects (needs root): `nat` (the default) hides the subnet
 * behind the host's address and drops direct routing from outside; `routed` does neither, so
 * an outside machine with a route to the subnet reaches sandboxes by their own addresses and
 * sees their own addresses as sources. Everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import type { Controller } from "../../controller/mod.ts";
import { openController } from "../../open.ts";
import {
  addHostWithOutside,
  isRoot,
  prefixResidue,
  removeNetnsByPrefix,
  sh,
  tcpReach,
  testPrefix,
} from "../../../testing/mod.ts";

Deno.test({
  name: "bridge gateway_mode_ipv4: nat masquerades and isolates, routed routes both ways (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`, out = `${prefix}-out`;
    let ctl: Controller | undefined;
    try {
      // the outside machine routes both subnets through the host
      await addHostWithOutside(host, out, ["10.232.0.0/24", "10.233.0.0/24"]);
      ctl = await openController({ hostNetns: host, prefix, stateDir: ":memory:" });
      await ctl.createNetwork({ name: "natted", subnet: "10.232.0.0/24" });
      await ctl.createNetwork({
        name: "routed",
        subnet: "10.233.0.0/24",
        options: { "com.docker.network.bridge.gateway_mode_ipv4": "routed" },
      });
      const n = await ctl.createSandbox({ name: "n" });
      const r = await ctl.createSandbox({ name: "r" });
      const en = await ctl.connect("natted", "n");
      const er = await ctl.connect("routed", "r");
      const ip = (c?: string) => c!.split("/")[0];
      const outNs = out;

      // from outside, straight to the sandbox's own address
      assert.equal(
        await tcpReach(outNs, n.netnsName, ip(en.ipv4), 8080),
        false,
        "nat: no direct routing in",
      );
      assert.ok(
        await tcpReach(outNs, r.netnsName, ip(er.ipv4), 8081),
        "routed: reachable directly",
      );

      // from the sandbox out: which source does the outside machine see?
      const seen = async (sbNs: string) => {
        const cap = new Deno.Command("ip", {
          args: [
            "netns",
            "exec",
            outNs,
            "socat",
            "-T",
            "3",
            "TCP-LISTEN:9090,reuseaddr",
            "SYSTEM:echo $SOCAT_PEERADDR",
          ],
          stdout: "null",
          stderr: "null",
        }).spawn();
        try {
          for (let i = 0; i < 50; i++) {
            if (
              (await sh(["ip", "netns", "exec", outNs, "ss", "-Hltn", "sport = :9090"])).stdout
                .trim()
            ) break;
            await new Promise((res) => setTimeout(res, 20));
          }
          const c = await sh([
            "ip",
            "netns",
            "exec",
            sbNs,
            "socat",
            "-T",
            "2",
            "TCP:198.51.100.2:9090,connect-timeout=2",
            "-",
          ], { stdin: "" });
          return c.stdout.trim();
        } finally {
          try {
            cap.kill("SIGKILL");
          } catch { /* gone */ }
          await cap.status;
        }
      };
      assert.equal(await seen(n.netnsName), "198.51.100.1", "nat: the host's address");
      assert.equal(await seen(r.netnsName), ip(er.ipv4), "routed: the sandbox's own address");
    } finally {
      await ctl?.close();
      await removeNetnsByPrefix(prefix);
    }
    assert.deepEqual(await prefixResidue(prefix), []);
  },
});
