/**
 * Kernel.deleteLinkLater: the deletion runs after the call returns, journaled first, so a
 * process that dies in between has the next one finish it. No root: a fake runner.
 */
import assert from "node:assert/strict";
import { Kernel, type RetiredLinks } from "./kernel.ts";
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

Deno.test("deleteLinkLater without a journal deletes at once", async () => {
  const runner = new FakeRunner();
  const kernel = new Kernel({ runner });
  await kernel.deleteLinkLater(undefined, "veth1");
  assert.equal(runner.transcript(), "ip -force -batch -\n  | link del dev veth1\n");
});

Deno.test("deleteLinkLater: journaled before it returns, deleted after, the journal emptied", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const journal = new MemoryJournal();
  const runner = new FakeRunner();
  // the first deletion waits until the test lets it go
  let first = true;
  const slow = {
    run: async (cmd: Parameters<FakeRunner["run"]>[0]) => {
      if (first) {
        first = false;
        await held;
      }
      return runner.run(cmd);
    },
  };
  const kernel = new Kernel({ runner: slow });
  kernel.retired = journal;
  await kernel.deleteLinkLater("h1", "veth1111111");
  assert.deepEqual(journal.list(), [{ netns: "h1", link: "veth1111111" }]);
  // two more while the first runs: one call after it
  await kernel.deleteLinkLater("h1", "veth2222222");
  await kernel.deleteLinkLater("h1", "veth3333333");
  assert.equal(journal.list().length, 3, "pending while not deleted");
  const settled = kernel.settleRetired();
  release();
  await settled;
  assert.equal(
    runner.transcript(),
    "ip -n h1 -force -batch -\n  | link del dev veth1111111\n" +
      "ip -n h1 -force -batch -\n  | link del dev veth2222222\n  | link del dev veth3333333\n",
  );
  assert.deepEqual(journal.list(), [], "forgotten once deleted");
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
