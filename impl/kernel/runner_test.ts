/**
 * The process runner: argv that name a namespace, timeouts, and (as root) commands started
 * inside a namespace with setns while the process itself stays where it was.
 */
import assert from "node:assert/strict";
import { addNetns, isRoot, must, removeNetnsByPrefix, testPrefix } from "../../testing/mod.ts";
import { createProcessRunner, splitNetnsArgv } from "./runner.ts";

Deno.test("splitNetnsArgv() recognizes `ip -n NAME` and `nsenter --net=PATH` only", () => {
  assert.deepEqual(splitNetnsArgv(["ip", "-n", "h1", "-batch", "-"]), {
    path: "/run/netns/h1",
    argv: ["ip", "-batch", "-"],
  });
  assert.deepEqual(splitNetnsArgv(["nsenter", "--net=/run/netns/h1", "nft", "-f", "-"]), {
    path: "/run/netns/h1",
    argv: ["nft", "-f", "-"],
  });
  for (
    const argv of [
      ["ip", "-batch", "-"],
      ["ip", "-n", "h1"],
      ["ip", "-n", "../x", "link"],
      ["ip", "netns", "add", "x"],
      ["nsenter", "--net=/run/netns/h1"],
      ["nsenter", "--mount=/x", "ls"],
    ]
  ) {
    assert.equal(splitNetnsArgv(argv), undefined, argv.join(" "));
  }
});

Deno.test("the process runner kills a command that passes its timeout", async () => {
  const r = await createProcessRunner().run({
    argv: ["sleep", "5"],
    timeoutMs: 100,
    allowFail: true,
  });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /timed out after 100 ms/);
  await assert.rejects(
    createProcessRunner().run({ argv: ["false"] }),
    /Command "false" failed \(exit 1\)/,
  );
});

Deno.test({
  name: "the process runner starts `ip -n` and `nsenter` commands inside the namespace (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const ns = `${prefix}-ns`;
    const self = Deno.readLinkSync("/proc/thread-self/ns/net");
    await addNetns(ns);
    try {
      await must([
        "ip",
        "-n",
        ns,
        "link",
        "add",
        "probe0",
        "type",
        "veth",
        "peer",
        "name",
        "probe1",
      ]);
      const runner = createProcessRunner();
      const viaIp = await runner.run({ argv: ["ip", "-n", ns, "-j", "link", "show"] });
      const names = (out: string) => JSON.parse(out).map((l: { ifname: string }) => l.ifname);
      assert.deepEqual(names(viaIp.stdout).sort(), ["lo", "probe0", "probe1"]);
      const viaBatch = await runner.run({
        argv: ["ip", "-n", ns, "-batch", "-"],
        stdin: "link set dev probe0 up\n",
      });
      assert.equal(viaBatch.code, 0);
      const viaNsenter = await runner.run({
        argv: ["nsenter", `--net=/run/netns/${ns}`, "ip", "-j", "link", "show", "probe0"],
      });
      assert.ok(JSON.parse(viaNsenter.stdout)[0].flags.includes("UP"));
      // The process itself never left its namespace.
      assert.equal(Deno.readLinkSync("/proc/thread-self/ns/net"), self);
      const mine = await runner.run({
        argv: ["ip", "-j", "link", "show", "probe0"],
        allowFail: true,
      });
      assert.notEqual(mine.code, 0, "probe0 is not in the process's own namespace");
      // A namespace that does not exist: the command's own error.
      const missing = await runner.run({
        argv: ["ip", "-n", `${prefix}-nope`, "link", "show"],
        allowFail: true,
      });
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /Cannot open network namespace/);
    } finally {
      await removeNetnsByPrefix(prefix);
    }
  },
});
