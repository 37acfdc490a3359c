/**
 * Reconcile unit tests with a fake kernel (no root): which namespaces count as ours, and
 * what happens to records whose namespace is gone. The real thing runs in
 * reconcile_integration_test.ts.
 */
import assert from "node:assert/strict";
import { createDefaultDrivers } from "../open.ts";
import { createDefaultIpam } from "../ipam/mod.ts";
import { FakeRunner, Kernel, MemoryFs } from "../kernel/mod.ts";
import { openStore } from "../store/mod.ts";
import { Controller } from "./controller.ts";
import { sandboxNetnsPattern } from "./reconcile.ts";

Deno.test("sandboxNetnsPattern() matches exactly <prefix>-<instance>-<12 hex>", () => {
  const re = sandboxNetnsPattern("cnmt-abc123-h1", "0a1b2c3d");
  assert.ok(re.test("cnmt-abc123-h1-0a1b2c3d-0123456789ab"));
  for (
    const name of [
      "cnmt-abc123-h1",
      "cnmt-abc123-h1-host",
      "cnmt-abc123-h1-out",
      // another daemon's (another instance), and the names before instance ids
      "cnmt-abc123-h1-ffffffff-0123456789ab",
      "cnmt-abc123-h1-0123456789ab",
      "cnmt-abc123-h1-0a1b2c3d-0123456789abc",
      "cnmt-abc123-h1-0a1b2c3d-0123456789a",
      "cnmt-abc123-h1-0a1b2c3d-0123456789AB",
      "cnmt-abc123-h1-0a1b2c3d-x-0123456789ab",
      "cnmt-abc123-h2-0a1b2c3d-0123456789ab",
      "xcnmt-abc123-h1-0a1b2c3d-0123456789ab",
    ]
  ) {
    assert.ok(!re.test(name), name);
  }
  // regex characters in a prefix are taken literally
  assert.ok(!sandboxNetnsPattern("a.b", "0a1b2c3d").test("axb-0a1b2c3d-0123456789ab"));
});

/** A controller on a fake kernel whose /run/netns is a temporary directory. */
async function fakeHost() {
  const netnsDir = await Deno.makeTempDir();
  const runner = new FakeRunner((cmd) =>
    cmd.argv.includes("show") && !cmd.argv.includes("-j")
      ? { code: 1, stderr: "Device does not exist" }
      : undefined
  );
  const fs = new MemoryFs();
  const kernel = new Kernel({ runner, fs, netnsDir });
  const store = openStore(":memory:");
  const ctl = new Controller({
    kernel,
    store,
    ipam: createDefaultIpam(),
    drivers: createDefaultDrivers({ kernel, hostNetns: "t-host", prefix: "t" }),
    hostNetns: "t-host",
    prefix: "t",
    dns: ["192.0.2.53"],
  });
  const touch = (name: string) => Deno.writeTextFile(`${netnsDir}/${name}`, "");
  await touch("t-host");
  return { ctl, runner, fs, netnsDir, touch, instance: store.instanceId };
}

Deno.test("Controller.reconcile() removes only namespaces and files named like its sandboxes", async () => {
  const { ctl, runner, fs, netnsDir, touch, instance } = await fakeHost();
  try {
    const sb = await ctl.createSandbox({ name: "a" });
    assert.equal(sb.netnsName, `t-${instance}-${sb.id.slice(0, 12)}`);
    await touch(sb.netnsName);
    const others = [
      "t-h1-out",
      "t-0123456789ab", // another daemon's, or one named before instance ids
      "t-ffffffff-0123456789ab", // another daemon's on the same prefix
      `t-${instance}-0123456789abc`,
      "t-ABCDEF012345",
      "other-0123456789ab",
      "t-x-0123456789ab",
    ];
    const mine = `t-${instance}-0123456789ab`;
    for (const n of [mine, ...others]) await touch(n);
    await fs.writeTextFile(`/etc/netns/t-${instance}-fedcba987654/hosts`, "stale\n");
    await fs.writeTextFile("/etc/netns/t-fedcba987654/hosts", "another daemon's\n");
    await fs.writeTextFile("/etc/netns/t-h1-out/hosts", "not ours\n");
    runner.calls.length = 0;
    const report = await ctl.reconcile();
    assert.deepEqual(report.removed.map((i) => [i.kind, i.name]), [
      ["netns", mine],
      ["file", `/etc/netns/t-${instance}-fedcba987654`],
    ]);
    const deleted = runner.calls.filter((c) => c.argv.join(" ").startsWith("ip netns del"))
      .map((c) => c.argv[3]);
    assert.deepEqual(deleted, [mine]);
    assert.equal(fs.files.has("/etc/netns/t-h1-out/hosts"), true);
    assert.equal(fs.files.has("/etc/netns/t-fedcba987654/hosts"), true);
    assert.deepEqual(report.dropped, []);
    assert.deepEqual(report.failed, []);
    assert.deepEqual(ctl.listSandboxes().map((s) => s.name), ["a"]);
  } finally {
    await Deno.remove(netnsDir, { recursive: true });
  }
});

Deno.test("Controller.reconcile() drops a sandbox whose namespace is gone and frees its address", async () => {
  const { ctl, runner, fs, netnsDir, touch } = await fakeHost();
  try {
    await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
    const a = await ctl.createSandbox({ name: "a" });
    const b = await ctl.createSandbox({ name: "b" });
    await touch(b.netnsName); // a's namespace is "gone": its file was never made
    const epA = await ctl.connect("web", "a");
    assert.equal(epA.ipv4, "10.1.0.2/24");
    runner.calls.length = 0;
    const report = await ctl.reconcile();
    assert.deepEqual(report.dropped.map((i) => [i.kind, i.name]), [
      ["endpoint", "a/web"],
      ["sandbox", "a"],
    ]);
    assert.match(report.dropped[1].reason, new RegExp(`namespace ${a.netnsPath} is gone`));
    // the driver removed its side of the endpoint
    assert.match(runner.transcript(), new RegExp(`link del dev ${epA.driverData.hostIf}`));
    assert.equal(fs.files.has(`/etc/netns/${a.netnsName}/hosts`), false);
    assert.deepEqual(ctl.listSandboxes().map((s) => s.name), ["b"]);
    assert.deepEqual(ctl.inspectNetwork("web").endpoints, []);
    // the address is free again
    const epB = await ctl.connect("web", "b");
    assert.equal(epB.ipv4, "10.1.0.2/24");
  } finally {
    await Deno.remove(netnsDir, { recursive: true });
  }
});
