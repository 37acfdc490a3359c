/**
 * nft through libnftables: which argv forms it takes, and (as root) that a transaction lands
 * in the namespace asked for and nowhere else, that listings read as the command's do, and
 * that errors come back as a failed command with nft's own message.
 */
import assert from "node:assert/strict";
import { addNetns, isRoot, must, removeNetnsByPrefix, testPrefix } from "../../testing/mod.ts";
import { nftCall, nftSettled, runNftInProcess } from "./libnftables.ts";
import { createProcessRunner } from "./runner.ts";

Deno.test("nftCall() takes `-f FILE` and `[-j] [-a] list ...`, nothing else", () => {
  assert.deepEqual(nftCall(["nft", "-f", "/tmp/cnm-batch-1-x"]), {
    flags: 0,
    file: "/tmp/cnm-batch-1-x",
  });
  assert.deepEqual(nftCall(["nft", "-j", "list", "tables"]), {
    flags: 1 << 4,
    text: "list tables",
  });
  assert.deepEqual(nftCall(["nft", "-j", "-a", "list", "chain", "inet", "t", "c"]), {
    flags: (1 << 4) | (1 << 3),
    text: "list chain inet t c",
  });
  for (
    const argv of [
      ["ip", "-batch", "-"],
      ["nft", "-f", "-"],
      ["nft", "-f"],
      ["nft", "-c", "-f", "/tmp/x"],
      ["nft", "flush", "ruleset"],
      ["nft", "-e", "list", "tables"],
      ["nft", "-f", "/tmp/x", "list"],
    ]
  ) {
    assert.equal(nftCall(argv), undefined, argv.join(" "));
  }
});

Deno.test({
  name: "libnftables: a transaction lands in the namespace asked for only; errors read as nft's",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const ns = `${prefix}-ns`;
    const table = `${prefix.replaceAll("-", "_")}_t`;
    await addNetns(ns);
    const file = await Deno.makeTempFile({ prefix: `${prefix}-` });
    try {
      const path = `/run/netns/${ns}`;
      const script =
        `table inet ${table} {\n  set s { type ifname; }\n}\nadd element inet ${table} s { "br-1" }\n`;
      const nftFile = async (text: string) => {
        await Deno.writeTextFile(file, text);
        return runNftInProcess(path, ["nft", "-f", file]);
      };
      const r = await nftFile(script);
      assert.ok(r, "libnftables is installed (nftables' own library)");
      assert.deepEqual(r, { code: 0, stdout: "", stderr: "" });
      // the nft command sees it inside the namespace, and not in this process's own
      // (the nft command itself, not the library)
      const listSet = () =>
        must(["nsenter", `--net=${path}`, "nft", "list", "set", "inet", table, "s"]);
      const inside = await listSet();
      assert.match(inside, /elements = \{ "br-1" \}/);
      const mine = await createProcessRunner().run({
        argv: ["nft", "list", "table", "inet", table],
        allowFail: true,
      });
      // (this very listing runs in process too: it must fail as the command would)
      assert.notEqual(mine.code, 0);
      assert.match(mine.stderr, /No such file or directory/);
      // a listing: JSON as `nft -j` prints it
      const listed = await runNftInProcess(path, ["nft", "-j", "list", "tables"]);
      const tables = JSON.parse(listed!.stdout).nftables.flatMap((
        e: { table?: { name: string } },
      ) => e.table ? [e.table.name] : []);
      assert.deepEqual(tables, [table]);
      // a failed transaction changes nothing and says why, with the offending line
      const bad = await nftFile(
        `add element inet ${table} s { "br-2" }\nadd element inet ${table} nosuch { "x" }\n`,
      );
      assert.equal(bad!.code, 1);
      // on the line it is on, as `nft -f` says it
      assert.match(
        bad!.stderr,
        new RegExp(`^${file}:2:\\d+-\\d+: Error: No such file or directory`),
      );
      assert.match(bad!.stderr, /nosuch \{ "x" \}/);
      const after = await listSet();
      assert.doesNotMatch(after, /br-2/);
      // through the runner, a failure is a KernelCommandError naming the argv
      await assert.rejects(
        createProcessRunner().run({
          argv: ["nsenter", `--net=${path}`, "nft", "-f", "-"],
          stdin: "add chain inet nosuch c\n",
        }),
        (err: Error & { stderr?: string }) =>
          /nsenter .* nft -f -" failed \(exit 1\)/.test(err.message) &&
          /Error: No such file or directory/.test(err.stderr ?? ""),
      );
      // a namespace that does not exist: a failed command naming it
      const missing = await createProcessRunner().run({
        argv: ["nsenter", `--net=/run/netns/${prefix}-nope`, "nft", "-f", "-"],
        stdin: "add table inet x\n",
        allowFail: true,
      });
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, new RegExp(`${prefix}-nope`));
    } finally {
      await Deno.remove(file).catch(() => {});
      await nftSettled();
      await removeNetnsByPrefix(prefix);
    }
  },
});
