/**
 * `ip netns add/del/pids` and loopback up, done in process: which forms are taken, and (as
 * root) that the results are what the `ip` command makes and sees, with its messages.
 */
import assert from "node:assert/strict";
import { isRoot, must, removeNetnsByPrefix, sh, testPrefix } from "../../testing/mod.ts";
import { runNetnsInProcess } from "./netns_native.ts";
import { currentNetnsInode } from "./setns.ts";

Deno.test("runNetnsInProcess() leaves every other form to the ip command", () => {
  for (
    const [argv, stdin] of [
      [["ip", "netns", "list"], undefined],
      [["ip", "netns", "add"], undefined],
      [["ip", "netns", "add", "../etc"], undefined],
      [["ip", "netns", "exec", "x", "true"], undefined],
      [["ip", "-n", "x", "-batch", "-"], "link set dev lo up\naddr add 10.0.0.1/24 dev lo\n"],
      [["ip", "-n", "x", "-j", "-batch", "-"], "link set dev lo up\n"],
      [["ip", "-n", "x", "-batch", "-"], "link set dev lo mtu 1400\n"],
      [["nft", "-f", "-"], "link set dev lo up\n"],
      [["sysctl", "-w", "net.ipv4.ip_forward=1"], undefined],
      [["sysctl", "-qw", "kernel.pid_max=1"], undefined],
    ] as [string[], string | undefined][]
  ) {
    assert.equal(runNetnsInProcess(argv, stdin), undefined, argv.join(" "));
  }
});

Deno.test({
  name: "netns add/del/pids and loopback up in process match the ip command (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const ns = `${prefix}-n1`;
    const home = currentNetnsInode();
    let sleeper: Deno.ChildProcess | undefined;
    try {
      assert.deepEqual(runNetnsInProcess(["ip", "netns", "add", ns], undefined), {
        code: 0,
        stdout: "",
        stderr: "",
      });
      assert.equal(currentNetnsInode(), home, "the thread came back");
      assert.match(await must(["ip", "netns", "list"]), new RegExp(`^${ns}\\b`, "m"));
      // a namespace of its own: only loopback, down, until it is brought up
      const lo = async () => JSON.parse(await must(["ip", "-n", ns, "-j", "link", "show"]));
      const before = await lo();
      assert.deepEqual(before.map((l: { ifname: string }) => l.ifname), ["lo"]);
      assert.ok(!before[0].flags.includes("UP"));
      const up = runNetnsInProcess(["ip", "-n", ns, "-batch", "-"], "link set dev lo up\n");
      assert.equal(up?.code, 0, up?.stderr ?? "not taken in process");
      assert.ok((await lo())[0].flags.includes("UP"));
      assert.equal(currentNetnsInode(), home);
      // not the namespace this process is in
      const self = JSON.parse(await must(["ip", "-j", "link", "show"]));
      assert.ok(self.length >= 1);
      assert.notEqual(Deno.statSync(`/run/netns/${ns}`).ino, home);
      // down and up again, with -force past a missing link, as `ip -force -batch` goes on
      const down = runNetnsInProcess(
        ["ip", "-n", ns, "-force", "-batch", "-"],
        "link set dev nosuch0 down\nlink set dev lo down\n",
      );
      assert.equal(down?.code, 1);
      assert.match(down!.stderr, /Cannot find device "nosuch0"\nCommand failed -:1\n/);
      assert.ok(!(await lo())[0].flags.includes("UP"), "lo down past the failed line");
      const stop = runNetnsInProcess(
        ["ip", "-n", ns, "-batch", "-"],
        "link set dev nosuch0 up\nlink set dev lo up\n",
      );
      assert.equal(stop?.code, 1);
      assert.ok(!(await lo())[0].flags.includes("UP"), "without -force, the batch stops");
      runNetnsInProcess(["ip", "-n", ns, "-batch", "-"], "link set dev lo up\n");
      assert.ok((await lo())[0].flags.includes("UP"));
      // a sysctl, written from inside: that namespace's, not this process's
      const key = "net.ipv6.conf.default.disable_ipv6";
      const read = (argv: string[]) => must([...argv, "sysctl", "-n", key]).then((o) => o.trim());
      const mineBefore = await read([]);
      const set = runNetnsInProcess(
        ["nsenter", `--net=/run/netns/${ns}`, "sysctl", "-qw", `${key}=1`],
        undefined,
      );
      assert.equal(set?.code, 0, set?.stderr ?? "not taken in process");
      assert.equal(await read(["nsenter", `--net=/run/netns/${ns}`]), "1");
      assert.equal(await read([]), mineBefore);
      assert.equal(currentNetnsInode(), home);
      const unknown = runNetnsInProcess(
        ["nsenter", `--net=/run/netns/${ns}`, "sysctl", "-qw", "net.ipv4.nosuch=1"],
        undefined,
      );
      assert.notEqual(unknown?.code, 0);
      assert.match(unknown!.stderr, /nosuch/);
      // twice: the command's message
      const again = runNetnsInProcess(["ip", "netns", "add", ns], undefined);
      assert.equal(again?.code, 1);
      assert.equal(again?.stderr, `Cannot create namespace file "/run/netns/${ns}": File exists\n`);
      // pids: what `ip netns pids` lists
      sleeper = new Deno.Command("ip", { args: ["netns", "exec", ns, "sleep", "30"] }).spawn();
      let listed = "";
      for (let i = 0; i < 50 && !listed.trim(); i++) {
        await new Promise((r) => setTimeout(r, 20));
        listed = runNetnsInProcess(["ip", "netns", "pids", ns], undefined)?.stdout ?? "";
      }
      assert.equal(listed, await must(["ip", "netns", "pids", ns]));
      assert.equal(listed.trim(), String(sleeper.pid));
      sleeper.kill("SIGKILL");
      await sleeper.status;
      sleeper = undefined;
      assert.equal(runNetnsInProcess(["ip", "netns", "pids", ns], undefined)?.stdout, "");
      // del, and del again
      assert.equal(runNetnsInProcess(["ip", "netns", "del", ns], undefined)?.code, 0);
      assert.doesNotMatch(await must(["ip", "netns", "list"]), new RegExp(ns));
      assert.ok(!(await sh(["mount"])).stdout.includes(`/run/netns/${ns} `), "unmounted");
      const gone = runNetnsInProcess(["ip", "netns", "del", ns], undefined);
      assert.equal(gone?.code, 1);
      assert.match(gone!.stderr, /^Cannot remove namespace file ".*": No such file or directory/);
      const none = runNetnsInProcess(["ip", "netns", "pids", ns], undefined);
      assert.equal(none?.code, 1);
      assert.match(none!.stderr, /Cannot open network namespace/);
    } finally {
      if (sleeper) {
        sleeper.kill("SIGKILL");
        await sleeper.status;
      }
      await removeNetnsByPrefix(prefix);
    }
  },
});
