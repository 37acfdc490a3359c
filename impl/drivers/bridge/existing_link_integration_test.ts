/**
 * `com.docker.network.bridge.name` naming an interface that exists, on real kernel objects
 * (needs root; issue 14). A throwaway host namespace holds a veth pair (MTU 9000, with an
 * address) and a user's bridge (MTU 9000, with its own address). Naming the veth is refused
 * with Docker's message and changes nothing (not its MTU, addresses, state or master; no
 * nft table, no sysctl); naming the bridge uses it as is, and removing the network, also
 * after a restart of the driver, leaves it as found. Everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import type { CreateNetworkRequest } from "../../driver_api/mod.ts";
import { Kernel } from "../../kernel/mod.ts";
import { CnmError } from "../../model/errors.ts";
import {
  addNetns,
  isRoot,
  must,
  prefixResidue,
  removeNetnsByPrefix,
  testPrefix,
} from "../../../testing/mod.ts";
import { createBridgeDriver } from "./bridge.ts";

const NAME_OPT = "com.docker.network.bridge.name";
const MTU_OPT = "com.docker.network.driver.mtu";

/** What a link is like: kind, MTU, master, flags and addresses (link-local ones left out). */
async function linkState(netns: string, name: string) {
  const [l] = JSON.parse(await must(["ip", "-n", netns, "-j", "-d", "addr", "show", "dev", name]));
  return {
    kind: l.linkinfo?.info_kind as string | undefined,
    mtu: l.mtu as number,
    master: l.master as string | undefined,
    flags: [...l.flags].sort() as string[],
    addrs: (l.addr_info as { local: string; prefixlen: number; scope: string }[])
      .filter((a) => a.scope !== "link").map((a) => `${a.local}/${a.prefixlen}`).sort(),
  };
}

function request(id: string, options: Record<string, string>): CreateNetworkRequest {
  return {
    networkId: id,
    name: id.slice(0, 4),
    options,
    internal: false,
    enableIpv6: false,
    ipv4: [{ pool: "10.241.0.0/24", gateway: "10.241.0.1/24" }],
    ipv6: [],
  };
}

Deno.test({
  name: "bridge.name: a non-bridge is refused untouched, a user's bridge is left as found (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`;
    const table = `${prefix.replaceAll("-", "_")}_bridge`;
    const ruleset = () => must(["ip", "netns", "exec", host, "nft", "list", "ruleset"]);
    const forwarding = () =>
      must(["ip", "netns", "exec", host, "cat", "/proc/sys/net/ipv4/ip_forward"]);
    try {
      await addNetns(host);
      await must(
        ["ip", "-n", host, "-batch", "-"],
        [
          "link add uplink0 mtu 9000 type veth peer name uplink1 mtu 9000",
          "addr add 192.0.2.1/24 dev uplink0",
          "link set uplink0 up",
          "link set uplink1 up",
          "link add mybr0 mtu 9000 type bridge",
          "addr add 198.51.100.1/24 dev mybr0",
          "link set mybr0 up",
          "",
        ].join("\n"),
      );
      const veth = await linkState(host, "uplink0");
      const br = await linkState(host, "mybr0");
      assert.deepEqual([veth.mtu, veth.addrs, br.mtu, br.addrs], [
        9000,
        ["192.0.2.1/24"],
        9000,
        ["198.51.100.1/24"],
      ]);
      const rulesBefore = await ruleset();
      const forwardingBefore = await forwarding();
      const kernel = new Kernel();
      const driver = createBridgeDriver({ kernel, hostNetns: host, table });
      const id = (c: string) => c.repeat(12) + "0".repeat(52);

      // 1. the veth: refused, and nothing of it (or of the host) changed
      await assert.rejects(
        driver.createNetwork(request(id("a"), { [NAME_OPT]: "uplink0" })),
        (e: unknown) => {
          assert.ok(e instanceof CnmError, String(e));
          assert.equal(e.kind, "forbidden");
          assert.equal(e.message, "existing interface uplink0 is not a bridge");
          return true;
        },
      );
      assert.deepEqual(await linkState(host, "uplink0"), veth, "the veth is as it was");
      assert.equal(await ruleset(), rulesBefore, "no nft table or rule");
      assert.equal(await forwarding(), forwardingBefore, "no sysctl");
      await driver.deleteNetwork(id("a")); // not the driver's: a no-op
      assert.deepEqual(await linkState(host, "uplink0"), veth);

      // 2. the user's bridge: used as is (MTU and address kept), gateway added
      const b = request(id("b"), { [NAME_OPT]: "mybr0" });
      await driver.createNetwork(b);
      const during = await linkState(host, "mybr0");
      assert.equal(during.mtu, 9000, "its MTU is the user's");
      assert.deepEqual(during.addrs, ["10.241.0.1/24", "198.51.100.1/24"]);
      assert.match(await ruleset(), /"mybr0" comment "cnm net=bbbbbbbbbbbb bridge=found"/);
      // a restart: a new driver learns the network from the store's request and the table
      const restarted = createBridgeDriver({ kernel, hostNetns: host, table });
      await restarted.restoreNetwork!(b);
      await restarted.reconcile([]);
      await restarted.deleteNetwork(b.networkId);
      assert.deepEqual(await linkState(host, "mybr0"), br, "the bridge is as it was");
      assert.equal(await ruleset(), rulesBefore, "the driver's table is gone");

      // 3. an explicit MTU is set on it, and put back when the network goes
      await restarted.createNetwork(request(id("c"), { [NAME_OPT]: "mybr0", [MTU_OPT]: "1400" }));
      assert.equal((await linkState(host, "mybr0")).mtu, 1400, "the MTU the user gave");
      await restarted.deleteNetwork(id("c"));
      assert.deepEqual(await linkState(host, "mybr0"), br, "the bridge is as it was");
      assert.deepEqual(await linkState(host, "uplink0"), veth, "the veth was never touched");
      assert.equal(await ruleset(), rulesBefore);
    } finally {
      await removeNetnsByPrefix(prefix);
    }
    assert.deepEqual(await prefixResidue(prefix), [], "nothing of the test is left");
  },
});
