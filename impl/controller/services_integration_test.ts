/**
 * Services on real kernel objects in a throwaway host namespace (needs root): a VIP reached
 * from a sandbox, an empty service refusing at once, and the whole program restored after a
 * restart that lost it. Everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import type { Controller } from "./controller.ts";
import { nftTableName } from "./names.ts";
import { openController } from "../open.ts";
import {
  addNetns,
  isRoot,
  must,
  prefixResidue,
  removeNetnsByPrefix,
  sh,
  tcpReach,
  testPrefix,
} from "../../testing/mod.ts";

Deno.test({
  name: "services: VIP reached, empty service refused, restored after a restart (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`;
    const stateDir = await Deno.makeTempDir();
    await addNetns(host);
    let ctl: Controller | undefined;
    const open = () => openController({ hostNetns: host, prefix, stateDir });
    try {
      ctl = await open();
      await ctl.createNetwork({ name: "web", subnet: "10.203.0.0/24" });
      const ns: Record<string, string> = {};
      for (const n of ["client", "be"]) ns[n] = (await ctl.createSandbox({ name: n })).netnsName;
      await ctl.connect("web", "client");
      await ctl.connect("web", "be");
      const svc = await ctl.createService({ name: "svc", network: "web", ports: [{ port: 7000 }] });
      const vip = svc.vip!;

      // no backend: refused at once (a reset), not a hang
      const t0 = performance.now();
      const r = await sh([
        "ip",
        "netns",
        "exec",
        ns.client,
        "socat",
        "-T2",
        "-",
        `TCP:${vip}:7000,connect-timeout=2`,
      ], { stdin: "" });
      assert.notEqual(r.code, 0);
      assert.ok(performance.now() - t0 < 1500, "refused promptly");

      await ctl.addBackend("svc", "be");
      assert.ok(await tcpReach(ns.client, ns.be, vip, 7000), "the VIP reaches the backend");

      // a restart that lost the table and the VIP address
      await ctl.close();
      ctl = undefined;
      const table = nftTableName(prefix, "lb");
      await must(["ip", "netns", "exec", host, "nft", "delete", "table", "inet", table]);
      const br = (await must(["ip", "-n", host, "-o", "addr", "show", "to", `${vip}/32`]))
        .split(/\s+/)[1];
      await must(["ip", "-n", host, "addr", "del", `${vip}/32`, "dev", br]);
      ctl = await open();
      assert.ok(await tcpReach(ns.client, ns.be, vip, 7000), "reached again after restart");
      const other = await ctl.createService({ name: "other", network: "web" });
      assert.notEqual(other.vip, vip, "the VIP stayed allocated across the restart");

      await ctl.removeService("other");
      await ctl.removeService("svc");
      const tables = await must(["ip", "netns", "exec", host, "nft", "list", "tables"]);
      assert.ok(!tables.includes(table), "the table went with the last service");
      const addrs = await must(["ip", "-n", host, "-o", "addr", "show", "to", `${vip}/32`]);
      assert.equal(addrs.trim(), "", "the VIP is off the bridge");
    } finally {
      await ctl?.close();
      await removeNetnsByPrefix(prefix);
      await Deno.remove(stateDir, { recursive: true });
    }
    assert.deepEqual(await prefixResidue(prefix), []);
  },
});
