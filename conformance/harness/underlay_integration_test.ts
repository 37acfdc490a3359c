/**
 * The underlay with a real etcd (root: makes namespaces, runs Debian's etcd in one): hosts
 * reach each other and the store, the store is etcd and keeps its data across a restart,
 * a dead host's link cuts it off, a failed start or create leaves nothing, and dispose
 * removes every namespace, process and directory. Every name carries a unique
 * `cnmt-<6 hex>` prefix.
 */
import assert from "node:assert/strict";
import {
  diffSnapshots,
  etcdProcessesOf,
  processesOf,
  snapshotMachine,
  snapshotNetns,
} from "./audit.ts";
import { exec } from "./exec.ts";
import { listNetns, removeByPrefix } from "./hosts.ts";
import { createUnderlay, etcdctlArgv, STORE_URL, UNDERLAY, type Underlay } from "./underlay.ts";

const ignore = Deno.uid() !== 0;

function testPrefix(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return `cnmt-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

/** One ICMP echo from a namespace; true when answered. */
async function ping(netns: string, ip: string): Promise<boolean> {
  const r = await exec(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", ip]);
  return r.code === 0;
}

/** Pings until answered, bounded (a link just set up may need a moment and an ARP). */
async function pingWithin(netns: string, ip: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) if (await ping(netns, ip)) return true;
  return false;
}

function etcdctl(netns: string, ...args: string[]) {
  return exec(etcdctlArgv(netns, STORE_URL, args), { env: { ETCDCTL_API: "3" } });
}

/** Processes whose command line names `text` (read from /proc, no `pgrep` of our own). */
async function processesNaming(text: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.includes(text)) out.push(`${e.name} ${cmd.replaceAll("\0", " ")}`);
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function ours(prefix: string): Promise<string[]> {
  return (await listNetns()).filter((n) => n.startsWith(prefix));
}

/** What of `prefix` is left: namespaces, processes, temp entries. */
async function residue(prefix: string, dir: string): Promise<string[]> {
  const left = (await ours(prefix)).map((n) => `netns ${n}`);
  left.push(...(await processesNaming(dir)).map((p) => `process ${p}`));
  left.push(...(await etcdProcessesOf(prefix)).map((p) => `etcd ${p.pid} on ${p.dataDir}`));
  if (await exists(dir)) left.push(`dir ${dir}`);
  for await (const e of Deno.readDir("/tmp")) {
    if (e.name.startsWith(prefix)) left.push(`tmp /tmp/${e.name}`);
  }
  return [...new Set(left)];
}

/**
 * Runs `f` with an underlay and disposes it; then nothing of it may be left (checked
 * before the safety net removes by prefix whatever a failed dispose left).
 */
async function withUnderlay(
  opts: { hosts: number; withStore?: boolean },
  f: (ul: Underlay, prefix: string) => Promise<void>,
): Promise<string> {
  const prefix = testPrefix();
  let left: string[] | undefined;
  try {
    const t0 = performance.now();
    const ul = await createUnderlay({ prefix, ...opts, log: (s) => console.log(s) });
    console.log(
      `underlay: ${opts.hosts} host(s)${opts.withStore === false ? "" : " and etcd ready"} ` +
        `in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    try {
      await f(ul, prefix);
    } finally {
      const t1 = performance.now();
      await ul[Symbol.asyncDispose]();
      console.log(`underlay: disposed in ${(performance.now() - t1).toFixed(0)} ms`);
    }
    left = await residue(prefix, ul.dir);
  } finally {
    await removeByPrefix(prefix);
  }
  assert.deepEqual(left, [], "dispose leaves nothing of the underlay");
  return prefix;
}

Deno.test({
  name: "underlay: hosts ping, etcd stores, restarts, a dead link cuts off (root)",
  ignore,
  async fn() {
    const rootBefore = await snapshotNetns();
    const machineBefore = await snapshotMachine();
    let pid = 0;
    const prefix = await withUnderlay({ hosts: 2 }, async (ul, prefix) => {
      const [h1, h2] = ul.hosts;
      assert.deepEqual(ul.hosts.map((h) => [h.name, h.netns, h.address]), [
        ["h1", `${prefix}-h1`, "203.0.113.1"],
        ["h2", `${prefix}-h2`, "203.0.113.2"],
      ]);
      assert.deepEqual(
        await ours(prefix),
        [`${prefix}-h1`, `${prefix}-h2`, `${prefix}-st`, `${prefix}-ul`],
      );
      assert.deepEqual([...ul.namespaces].sort(), await ours(prefix));
      assert.ok(ul.dir.startsWith(`/tmp/${prefix}-etcd-`), ul.dir);

      // the segment: host to host, host to store
      assert.ok(await ping(h1.netns, h2.address), "h1 pings h2 over the underlay");
      assert.ok(await ping(h2.netns, UNDERLAY.store), "h2 pings the store");

      // the store is etcd (its own status, with a cluster id), in the store namespace
      const status = await ul.storeStatus();
      assert.match(status.version, /^3\.4\./);
      assert.match(status.clusterId, /^\d+$/);
      assert.equal(status.endpoint, ul.storeUrl);
      pid = ul.storePid!;
      assert.ok(pid > 0);
      const nsOf = async (path: string) => (await Deno.stat(path)).ino;
      assert.equal(await nsOf(`/proc/${pid}/ns/net`), await nsOf(`/run/netns/${ul.storeNetns}`));
      assert.notEqual(await nsOf(`/proc/${pid}/ns/net`), await nsOf("/proc/self/ns/net"));

      // etcdctl from a host: put, and get from both hosts
      const put = await etcdctl(h1.netns, "put", "/cnmt/k", "v1");
      assert.equal(put.code, 0, put.stderr);
      assert.equal(put.stdout.trim(), "OK");
      for (const h of [h1, h2]) {
        const got = await etcdctl(h.netns, "get", "/cnmt/k", "--print-value-only");
        assert.equal(got.stdout.trim(), "v1", `${h.name}: ${got.stderr}`);
      }

      // the root namespace holds nothing of the underlay: no address or route in its
      // subnet, no link of its names (never probed by traffic: the root's default route
      // leads to a proxy that would answer)
      const rootNow = await snapshotNetns();
      const mine = diffSnapshots(rootBefore, rootNow, "root").filter((l) =>
        l.includes("203.0.113.") || l.includes(prefix) || /\bul(\d+|st)\b/.test(l)
      );
      assert.deepEqual(mine, []);
      assert.ok(![...rootNow.items].some((i) => i.includes("203.0.113.")), "root has no 203.0.113");

      // the leak audit sees the running store as the run's: process, namespace, temp dir
      const procs = await processesOf({ prefix, netnsPaths: [], rootPid: -1 });
      assert.ok(
        procs.some((l) => l.startsWith(`process ${pid} etcd `) && l.includes("command line has")),
        procs.join("\n"),
      );
      assert.deepEqual((await etcdProcessesOf(prefix)).map((p) => p.pid), [pid]);
      const md = diffSnapshots(machineBefore, await snapshotMachine(), "machine", { prefix });
      for (const want of [`+ machine: tmp ${ul.dir}`, `+ machine: netns ${ul.storeNetns}`]) {
        assert.ok(md.includes(want), `${want} not in\n${md.join("\n")}`);
      }

      // a store outage: etcdctl fails; after the restart the key is still there
      await ul.stopStore();
      assert.equal(ul.storePid, undefined);
      assert.equal(await exists(`/proc/${pid}`), false, "etcd has exited");
      const down = await etcdctl(h1.netns, "get", "/cnmt/k", "--print-value-only");
      assert.notEqual(down.code, 0, `get succeeded with the store down: ${down.stdout}`);
      await assert.rejects(ul.storeStatus(), /does not answer/);
      const t0 = performance.now();
      await ul.startStore();
      console.log(`underlay: etcd restarted in ${(performance.now() - t0).toFixed(0)} ms`);
      pid = ul.storePid!;
      const again = await etcdctl(h1.netns, "get", "/cnmt/k", "--print-value-only");
      assert.equal(again.stdout.trim(), "v1", again.stderr);
      assert.equal((await ul.storeStatus()).clusterId, status.clusterId, "the same cluster");
      const log = await Deno.readTextFile(ul.storeLog);
      assert.ok(log.includes("etcdserver"), "etcd's output goes to its log");

      // a dead machine: h2's link down cuts off h2 only; up again, it answers again
      await ul.setHostLink("h2", false);
      assert.equal(await ping(h1.netns, h2.address), false, "h1 still pings a dead h2");
      assert.ok(await ping(h1.netns, UNDERLAY.store), "h1 still reaches the store");
      await ul.setHostLink(h2.netns, true);
      assert.ok(await pingWithin(h1.netns, h2.address, 5000), "h2 answers once up again");
      await assert.rejects(ul.setHostLink("h9", false), /no such host in underlay .*\(h1, h2\)/);
    });
    // after dispose (withUnderlay checked namespaces, processes and dirs)
    assert.equal(await exists(`/proc/${pid}`), false);
    const procs = await processesOf({ prefix, netnsPaths: [], rootPid: -1 });
    assert.deepEqual(procs, []);
    const md = diffSnapshots(machineBefore, await snapshotMachine(), "machine", { prefix });
    assert.deepEqual(md, []);
  },
});

Deno.test({
  name: "underlay: an etcd that cannot start fails in one line with its log (root)",
  ignore,
  async fn() {
    await withUnderlay({ hosts: 1, withStore: false }, async (ul) => {
      assert.equal(ul.storePid, undefined);
      assert.ok(await ping(ul.hosts[0].netns, UNDERLAY.store), "the store namespace is there");
      // something else holds etcd's client port
      const squatter = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ul.storeNetns,
          "socat",
          `TCP-LISTEN:2379,bind=${UNDERLAY.store}`,
          "-",
        ],
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        for (let i = 0; i < 100; i++) {
          const ss = await exec([
            "ip",
            "netns",
            "exec",
            ul.storeNetns,
            "ss",
            "-Hltn",
            "sport = :2379",
          ]);
          if (ss.stdout.trim()) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        const t0 = performance.now();
        const err = await ul.startStore().then(() => undefined, (e: Error) => e);
        assert.ok(err, "startStore failed");
        console.log(`underlay: failed start reported in ${(performance.now() - t0).toFixed(0)} ms`);
        assert.match(err.message, /^Cannot start etcd in cnmt-\w+-st: it exited \(code \d+\)/);
        assert.match(err.message, /address already in use/);
        assert.doesNotMatch(err.message, /\n/);
        assert.equal(ul.storePid, undefined);
        assert.deepEqual(await processesNaming(`${ul.dir}/data`), []);
      } finally {
        await squatter.stdin.close().catch(() => {});
        try {
          squatter.kill("SIGKILL");
        } catch { /* gone */ }
        await squatter.status;
      }
    });
  },
});

Deno.test({
  name: "underlay: a create that fails halfway leaves nothing, not even its temp dir (root)",
  ignore,
  async fn() {
    const prefix = testPrefix();
    // someone else's namespace where the store's would go: the create fails on it
    await exec(["ip", "netns", "add", `${prefix}-st`]);
    try {
      await assert.rejects(createUnderlay({ prefix, hosts: 2 }), /netns add .*-st.*failed/);
      assert.deepEqual(await ours(prefix), [`${prefix}-st`], "only the stranger's remains");
      for await (const e of Deno.readDir("/tmp")) {
        assert.ok(!e.name.startsWith(prefix), `left /tmp/${e.name}`);
      }
    } finally {
      await exec(["ip", "netns", "del", `${prefix}-st`]);
    }
    assert.deepEqual(await ours(prefix), []);
  },
});

Deno.test({
  name: "underlay: the forced clean-up kills an etcd whose namespace name is gone (root)",
  ignore,
  async fn() {
    await withUnderlay({ hosts: 1 }, async (ul, prefix) => {
      const pid = ul.storePid!;
      // `ip netns del` only drops the name: etcd runs on, keeping the namespace alive
      await exec(["ip", "netns", "del", ul.storeNetns]);
      assert.ok(await exists(`/proc/${pid}`));
      const removed = await removeByPrefix(prefix);
      assert.ok(
        removed.includes(`process ${pid} etcd --data-dir ${ul.dir}/data`),
        removed.join("\n"),
      );
      assert.ok(removed.includes(ul.dir), removed.join("\n"));
      // dispose afterwards finds everything gone, and does not fail on it
    });
  },
});
