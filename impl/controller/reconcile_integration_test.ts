/**
 * Restart after a kill -9 (issue 3), on real kernel objects in throwaway namespaces (needs
 * root): a controller builds a topology and stops without cleaning anything (as a killed
 * daemon would), the kernel is damaged, and a controller reopened on the same state
 * directory makes store and kernel agree again. Everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import type { Controller } from "./controller.ts";
import type { ReconcileItem } from "./reconcile.ts";
import { openController } from "../open.ts";
import {
  addNetns,
  isRoot,
  listNetns,
  must,
  ping,
  prefixResidue,
  removeNetnsByPrefix,
  settledHostResidue,
  testPrefix,
} from "../../testing/mod.ts";

const ip = (cidr?: string) => cidr!.split("/")[0];
const names = (items: ReconcileItem[], kind: ReconcileItem["kind"]) =>
  items.filter((i) => i.kind === kind).map((i) => i.name).sort();

Deno.test({
  name: "reopening after a kill -9 and kernel damage reconciles store and kernel (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-host`;
    const stateDir = await Deno.makeTempDir({ prefix: `${prefix}-` });
    const table = `${prefix.replace(/-/g, "_")}_bridge`;
    // Namespaces that carry the prefix but are not named like this controller's sandboxes
    // (another daemon's, on the same prefix or named before instance ids): never touched.
    const lookalikes = [
      `${prefix}-h1-out`,
      `${prefix}-0123456789abc`,
      `${prefix}-ab-0123456789ab`,
      `${prefix}-0123456789ab`,
      `${prefix}-ffffffff-0123456789ab`,
    ];
    let orphan = "";
    await addNetns(host);
    let ctl: Controller | undefined;
    try {
      ctl = await openController({ hostNetns: host, prefix, stateDir });
      const red = await ctl.createNetwork({ name: "red", subnet: "10.211.0.0/24" });
      const blue = await ctl.createNetwork({ name: "blue", subnet: "10.212.0.0/24" });
      for (const [name, net] of [["r1", "red"], ["r2", "red"], ["b1", "blue"], ["b2", "blue"]]) {
        await ctl.createSandbox({ name });
        await ctl.connect(net, name);
      }
      const before = Object.fromEntries(
        ["r1", "r2", "b1", "b2"].map((n) => [n, ctl!.inspectSandbox(n)]),
      );
      // named like this controller's sandboxes: `<prefix>-<instance>-<12 hex>`
      orphan = before.r1.netnsName.replace(/[0-9a-f]{12}$/, "0123456789ab");
      assert.notEqual(orphan, before.r1.netnsName);
      // A kill -9: the process ends and nothing is cleaned up (close() cleans nothing either;
      // sandboxes and networks outlive the controller, as with Docker's live restore).
      await ctl.close();
      ctl = undefined;

      // Damage: r1's interface deleted inside it; red's gateway address flushed; blue's
      // bridge deleted (its ports fall off); the nft table deleted; b2's namespace deleted;
      // an orphan namespace named like a sandbox, with its /etc/netns directory; an orphan
      // veth on red's bridge.
      await must(["ip", "-n", before.r1.netnsName, "link", "del", "eth0"]);
      await must(["ip", "-n", host, "addr", "flush", "dev", `br-${red.id.slice(0, 12)}`]);
      await must(["ip", "-n", host, "link", "del", `br-${blue.id.slice(0, 12)}`]);
      await must(["ip", "netns", "exec", host, "nft", "delete", "table", "inet", table]);
      await must(["ip", "netns", "del", before.b2.netnsName]);
      await addNetns(orphan);
      await Deno.mkdir(`/etc/netns/${orphan}`, { recursive: true });
      await Deno.writeTextFile(`/etc/netns/${orphan}/hosts`, "127.0.0.1\tlocalhost\n");
      for (const n of lookalikes) await addNetns(n);
      await must([
        "ip",
        "-n",
        host,
        "link",
        "add",
        "vethdeadbee",
        "master",
        `br-${red.id.slice(0, 12)}`,
        "type",
        "veth",
        "peer",
        "name",
        "vethpeer0",
      ]);

      const logs: string[] = [];
      ctl = await openController({ hostNetns: host, prefix, stateDir, log: (l) => logs.push(l) });
      const report = ctl.lastReconcile!;
      const text = JSON.stringify(report, null, 1);
      assert.deepEqual(report.failed, [], text);
      assert.deepEqual(names(report.dropped, "sandbox"), ["b2"], text);
      assert.deepEqual(names(report.dropped, "endpoint"), ["b2/blue"], text);
      assert.deepEqual(names(report.removed, "netns"), [orphan], text);
      assert.deepEqual(names(report.removed, "link"), ["vethdeadbee"], text);
      assert.deepEqual(names(report.recreated, "endpoint"), ["b1/blue", "r1/red"], text);
      assert.deepEqual(names(report.recreated, "network"), ["blue", "red"], text);
      assert.ok(
        report.recreated.some((i) =>
          i.name === "red" && /gateway 10\.211\.0\.1\/24 was missing/.test(i.reason)
        ),
        text,
      );
      assert.ok(
        report.recreated.some((i) =>
          i.kind === "driver" && /nft table .* re-created/.test(i.reason)
        ),
        text,
      );
      // one log line per item
      for (const list of ["recreated", "dropped", "removed"] as const) {
        for (const item of report[list]) {
          assert.ok(
            logs.includes(`reconcile: ${list} ${item.kind} ${item.name}: ${item.reason}`),
            `logged: ${list} ${item.kind} ${item.name}`,
          );
        }
      }

      // The kernel: the orphan is gone, the lookalikes and the host stay.
      const netns = await listNetns();
      assert.ok(!netns.includes(orphan), "the orphan namespace is removed");
      for (const n of [host, ...lookalikes]) assert.ok(netns.includes(n), `${n} is kept`);
      assert.equal(await Deno.stat(`/etc/netns/${orphan}`).then(() => true, () => false), false);
      const hostLinks = await must(["ip", "-n", host, "-br", "link"]);
      assert.ok(!/vethdeadbee/.test(hostLinks), "the orphan veth is removed");
      assert.match(
        await must(["ip", "netns", "exec", host, "nft", "list", "tables"]),
        new RegExp(`table inet ${table}`),
      );

      // The store: b2 is gone, the others keep interface, address and MAC.
      assert.deepEqual(ctl.listSandboxes().map((s) => s.name), ["r1", "r2", "b1"]);
      const after = Object.fromEntries(
        ["r1", "r2", "b1"].map((n) => [n, ctl!.inspectSandbox(n)]),
      );
      for (const n of ["r1", "r2", "b1"]) {
        const [was] = before[n].endpointDetails, [is] = after[n].endpointDetails;
        assert.deepEqual([is.ifname, is.ipv4, is.mac], [was.ifname, was.ipv4, was.mac], n);
        const eth0 = JSON.parse(
          await must(["ip", "-n", after[n].netnsName, "-j", "addr", "show", "dev", "eth0"]),
        )[0];
        assert.equal(eth0.address, was.mac, `${n}: MAC in the kernel`);
        assert.equal(`${eth0.addr_info[0].local}/${eth0.addr_info[0].prefixlen}`, was.ipv4);
      }
      assert.match(
        await must(["ip", "-n", after.r1.netnsName, "route", "show", "default"]),
        /default via 10\.211\.0\.1 dev eth0/,
      );

      // Connectivity within networks, to the (re-created) gateways, and isolation across.
      const [r1, r2, b1] = [after.r1, after.r2, after.b1].map((s) => ({
        ns: s.netnsName,
        ip: ip(s.endpointDetails[0].ipv4),
      }));
      assert.ok(await ping(r1.ns, r2.ip), "r1 -> r2");
      assert.ok(await ping(r2.ns, r1.ip), "r2 -> r1");
      assert.ok(await ping(r1.ns, "10.211.0.1"), "r1 -> its gateway");
      assert.ok(await ping(b1.ns, "10.212.0.1"), "b1 -> the re-created bridge's gateway");
      const across = await Promise.all([ping(r1.ns, b1.ip), ping(b1.ns, r2.ip)]);
      assert.deepEqual(across, [false, false], "isolated across networks");

      // b2's address was released: it can be given again, and works.
      await ctl.createSandbox({ name: "b3" });
      const b3 = await ctl.connect("blue", "b3", { ipv4: ip(before.b2.endpointDetails[0].ipv4) });
      assert.equal(b3.ipv4, before.b2.endpointDetails[0].ipv4);
      assert.ok(await ping(ctl.inspectSandbox("b3").netnsName, b1.ip), "b3 -> b1");

      // Store and kernel agree: a second reconcile has nothing to do.
      const again = await ctl.reconcile();
      assert.deepEqual(again, { recreated: [], dropped: [], removed: [], failed: [] });

      for (const n of ["r1", "r2", "b1", "b3"]) await ctl.removeSandbox(n);
      await ctl.removeNetwork("red");
      await ctl.removeNetwork("blue");
      assert.deepEqual(await settledHostResidue(host), [], "the host namespace is empty again");
    } finally {
      await ctl?.close();
      await removeNetnsByPrefix(prefix);
      await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    }
    assert.deepEqual(await prefixResidue(prefix), [], "nothing of the test is left");
  },
});
