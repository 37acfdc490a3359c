/**
 * One daemon, one domain (issue 14): a second daemon on a prefix refuses to start, naming
 * the first; a daemon with another state directory on the same prefix never takes the first
 * one's sandboxes for orphans; daemons on other prefixes run beside it; the socket, the state
 * directory and the store are not open to others. Real daemons as subprocesses, in throwaway
 * namespaces, removed in `finally`.
 */
import assert from "node:assert/strict";
import { isRoot, listNetns, removeNetnsByPrefix, testPrefix } from "../../testing/mod.ts";
import { DaemonProcess, UnixApi } from "../../testing/daemon_process.ts";

const mode = async (path: string) => ((await Deno.lstat(path)).mode ?? 0) & 0o777;

Deno.test({
  name: "a daemon owns only what it created: prefix lock, instance ids, permissions (root)",
  ignore: !isRoot,
  async fn(t) {
    const prefix = testPrefix();
    const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
    const daemons: DaemonProcess[] = [];
    const apis: UnixApi[] = [];
    const daemon = (name: string, extra: string[] = [], p = prefix) => {
      const socket = `${tmp}/${name}.sock`;
      const d = new DaemonProcess([
        "--netns",
        `${p}-${name}`,
        "--prefix",
        p,
        "--state-dir",
        `${tmp}/${name}`,
        "--socket",
        socket,
        "--dns",
        "192.0.2.53",
        ...extra,
      ]);
      daemons.push(d);
      const api = new UnixApi(socket);
      apis.push(api);
      return { d, api, socket, stateDir: `${tmp}/${name}` };
    };
    try {
      const a = daemon("a", ["--socket-group", "1"]);
      await a.d.ready(a.api);
      const sandboxes: string[] = [];
      for (const name of ["s1", "s2"]) {
        const r = await a.api.call("POST", "/sandboxes", { name });
        assert.equal(r.status, 201, JSON.stringify(r.json));
        sandboxes.push(r.json.netnsName);
      }
      const instance = sandboxes[0].slice(prefix.length + 1).split("-")[0];
      assert.match(instance, /^[0-9a-f]{8}$/);
      for (const n of sandboxes) assert.ok(n.startsWith(`${prefix}-${instance}-`), n);

      await t.step("socket 0660 with the group asked for; state dir 0700; store 0600", async () => {
        assert.equal((await mode(a.socket)).toString(8), "660");
        assert.equal((await Deno.lstat(a.socket)).gid, 1);
        assert.equal((await mode(a.stateDir)).toString(8), "700");
        for (const f of ["state.db", "state.db-wal"]) {
          assert.equal((await mode(`${a.stateDir}/${f}`)).toString(8), "600", f);
        }
      });

      await t.step("a second daemon on the prefix refuses, naming the first", async () => {
        const b = daemon("b");
        const status = await b.d.wait();
        assert.equal(status.code, 1, b.d.log);
        const lines = b.d.log.trim().split("\n");
        assert.equal(lines.length, 1, b.d.log);
        assert.equal(
          lines[0],
          `cnm: Another daemon (pid ${a.d.child.pid}, state directory ${a.stateDir}) uses the prefix "${prefix}"`,
        );
      });

      await t.step("a daemon on another prefix runs beside it and touches nothing", async () => {
        const c = daemon("c", [], `${prefix}x`);
        await c.d.ready(c.api);
        const r = await c.api.call("POST", "/sandboxes", { name: "s1" });
        assert.equal(r.status, 201);
        assert.equal((await c.d.stop()).code, 0);
        for (const n of sandboxes) assert.ok((await listNetns()).includes(n), `${n} is kept`);
      });

      await t.step(
        "after a kill -9, another state dir on the prefix keeps A's sandboxes",
        async () => {
          await a.d.kill(); // the kernel releases the lock
          const b = daemon("b2");
          await b.d.ready(b.api);
          const r = await b.api.call("POST", "/sandboxes", { name: "s1" });
          assert.equal(r.status, 201);
          assert.ok(!r.json.netnsName.startsWith(`${prefix}-${instance}-`), r.json.netnsName);
          assert.equal((await b.d.stop()).code, 0);
          assert.doesNotMatch(b.d.log, /reconcile: removed netns/);
          const netns = await listNetns();
          for (const n of sandboxes) assert.ok(netns.includes(n), `${n} is kept`);
          // and A, started again, finds its sandboxes whole
          const a2 = daemon("a");
          await a2.d.ready(a2.api);
          const ls = await a2.api.call("GET", "/sandboxes");
          assert.deepEqual(ls.json.map((s: { name: string }) => s.name).sort(), ["s1", "s2"]);
          assert.doesNotMatch(a2.d.log, /reconcile: (removed|dropped)/);
          assert.equal((await a2.d.stop()).code, 0);
          // a clean stop removes the lock file
          assert.equal(await Deno.lstat(`/run/cnm/${prefix}.lock`).then(() => 1, () => 0), 0);
        },
      );

      await t.step("a socket group that does not exist: one line, exit 1", async () => {
        const g = daemon("g", ["--socket-group", "no-such-group-x"]);
        assert.equal((await g.d.wait()).code, 1);
        assert.match(g.d.log.trim(), /^cnm: .*no such group$/);
        assert.equal(g.d.log.trim().split("\n").length, 1);
      });
    } finally {
      for (const d of daemons) await d.kill();
      for (const api of apis) api.close();
      for (const p of [prefix, `${prefix}x`]) {
        await removeNetnsByPrefix(p);
        await Deno.remove(`/run/cnm/${p}.lock`).catch(() => {});
      }
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
