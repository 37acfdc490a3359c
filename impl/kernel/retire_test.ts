/**
 * Kernel.retireLink: the link is out of use (down, flushed, renamed) when the call returns,
 * its deletion runs afterwards, and every step is in the journal first, so a process that
 * dies in between has the next one finish it. No root: a fake runner.
 */
import assert from "node:assert/strict";
import { Kernel, RETIRED_PREFIX, type RetiredLinks } from "./kernel.ts";
import { FakeRunner } from "./runner.ts";

class MemoryJournal implements RetiredLinks {
  readonly items = new Map<string, { netns?: string; link: string }>();
  add(netns: string | undefined, link: string) {
    this.items.set(`${netns}/${link}`, { netns, link });
  }
  remove(netns: string | undefined, link: string) {
    this.items.delete(`${netns}/${link}`);
  }
  list() {
    return [...this.items.values()];
  }
}

const tombOf = (stdin: string | undefined) =>
  new RegExp(`name (${RETIRED_PREFIX}[0-9a-f]{8})$`, "m").exec(stdin ?? "")?.[1];

Deno.test("retireLink without a journal deletes at once", async () => {
  const runner = new FakeRunner();
  const kernel = new Kernel({ runner });
  assert.equal(await kernel.retireLink(undefined, "br-1"), true);
  assert.equal(runner.transcript(), "ip -force -batch -\n  | link del dev br-1\n");
});

Deno.test("retireLink: journaled, out of use at return, deleted after, the journal emptied", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const seenByRename: number[] = [];
  const journal = new MemoryJournal();
  const runner = new FakeRunner((cmd) => {
    if (cmd.stdin?.includes(" name ")) seenByRename.push(journal.items.size);
    return undefined;
  });
  // the deletion waits until the test lets it go
  const slow = {
    run: async (cmd: Parameters<FakeRunner["run"]>[0]) => {
      if (/^link del dev cnmz/.test(cmd.stdin ?? "")) await held;
      return runner.run(cmd);
    },
  };
  const kernel = new Kernel({ runner: slow });
  kernel.retired = journal;
  assert.equal(await kernel.retireLink("h1", "br-1"), true);
  const [rename] = runner.calls;
  assert.deepEqual(rename.argv, ["ip", "-n", "h1", "-force", "-batch", "-"]);
  const tomb = tombOf(rename.stdin)!;
  assert.ok(tomb, rename.stdin ?? "no input");
  assert.equal(
    rename.stdin,
    `link set dev br-1 down\naddr flush dev br-1\nlink set dev br-1 name ${tomb}\n`,
  );
  assert.deepEqual(seenByRename, [1], "journaled before the rename");
  assert.deepEqual(journal.list(), [{ netns: "h1", link: tomb }], "pending while not deleted");
  const settled = kernel.settleRetired();
  release();
  await settled;
  assert.equal(runner.calls.at(-1)!.stdin, `link del dev ${tomb}\n`);
  assert.deepEqual(journal.list(), [], "forgotten once deleted");
});

Deno.test("retireLink: a link that is not there is not journaled, and says so", async () => {
  const journal = new MemoryJournal();
  const runner = new FakeRunner(() => ({ code: 1, stderr: 'Cannot find device "br-9"' }));
  const kernel = new Kernel({ runner });
  kernel.retired = journal;
  assert.equal(await kernel.retireLink(undefined, "br-9"), false);
  assert.deepEqual(journal.list(), []);
  assert.equal(runner.calls.at(-1)!.stdin, "link del dev br-9\n");
});

Deno.test("settleRetired deletes what an earlier process journaled and did not delete", async () => {
  const journal = new MemoryJournal();
  journal.add(undefined, "cnmz0badc0de");
  journal.add("cnmt-gone-netns-that-is-not-there", "cnmz12345678");
  const runner = new FakeRunner();
  const kernel = new Kernel({ runner });
  kernel.retired = journal;
  await kernel.settleRetired();
  // the link in this namespace is deleted; the one whose namespace is gone went with it
  assert.equal(runner.transcript(), "ip -force -batch -\n  | link del dev cnmz0badc0de\n");
  assert.deepEqual(journal.list(), []);
});
