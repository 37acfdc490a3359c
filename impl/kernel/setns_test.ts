/**
 * Tests of the setns(2) helper. Entering a namespace needs root (a throwaway namespace made
 * with `ip netns add`, removed in `finally`); the error for a missing path does not.
 */
import assert from "node:assert/strict";
import { currentNetnsInode, netnsInode, withNetns } from "./setns.ts";
import { addNetns, isRoot, must, removeNetnsByPrefix, testPrefix } from "../../testing/mod.ts";

Deno.test("withNetns: a missing namespace file gives an error naming the path", () => {
  const before = currentNetnsInode();
  assert.throws(
    () => withNetns("/run/netns/cnmt-does-not-exist", () => 1),
    /Cannot open network namespace "\/run\/netns\/cnmt-does-not-exist": No such file/,
  );
  assert.throws(
    () => withNetns("/etc/hostname", () => 1),
    /Cannot enter network namespace "\/etc\/hostname"/,
  );
  assert.equal(currentNetnsInode(), before);
});

Deno.test({
  name: "withNetns enters, returns, comes back even on a throw, nests; sockets stay inside (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const a = `${prefix}-a`, b = `${prefix}-b`;
    const pa = `/run/netns/${a}`, pb = `/run/netns/${b}`;
    try {
      await addNetns(a);
      await addNetns(b);
      const home = currentNetnsInode();
      assert.equal(withNetns(pa, () => currentNetnsInode()), netnsInode(pa));
      assert.equal(currentNetnsInode(), home);
      assert.throws(() =>
        withNetns(pa, () => {
          throw new Error("inside");
        }), /inside/);
      assert.equal(currentNetnsInode(), home);
      const nested = withNetns(
        pa,
        () => [withNetns(pb, () => currentNetnsInode()), currentNetnsInode()],
      );
      assert.deepEqual(nested, [netnsInode(pb), netnsInode(pa)]);
      assert.equal(currentNetnsInode(), home);

      // A UDP socket made inside belongs to the namespace: ss sees it there.
      const sock = withNetns(
        pa,
        () => Deno.listenDatagram({ hostname: "127.0.0.11", port: 53, transport: "udp" }),
      );
      try {
        const inside = await must(["ip", "netns", "exec", a, "ss", "-Hlun", "sport = :53"]);
        assert.match(inside, /127\.0\.0\.11:53/);
        const other = await must(["ip", "netns", "exec", b, "ss", "-Hlun", "sport = :53"]);
        assert.doesNotMatch(other, /127\.0\.0\.11:53/);
      } finally {
        sock.close();
      }
    } finally {
      await removeNetnsByPrefix(prefix);
    }
  },
});
