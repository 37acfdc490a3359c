/**
 * The real daemon as a subprocess, driven by the real CLI, in throwaway namespaces: every
 * name starts with a unique test prefix, the daemon's host is its own namespace
 * (`--netns`), and everything is removed in `finally`.
 */
import assert from "node:assert/strict";
import {
  isRoot,
  listNetns,
  must,
  ping,
  removeNetnsByPrefix,
  testPrefix,
} from "../../testing/mod.ts";
import { CNM, DaemonProcess, runCommand, until } from "../../testing/daemon_process.ts";

const DENO_RUN = CNM;
const run = runCommand;

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test({
  name: "daemon and CLI end to end in throwaway namespaces (needs root; ignored otherwise)",
  ignore: !isRoot,
  async fn(t) {
    const prefix = testPrefix();
    const host = `${prefix}-host`;
    const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
    const socket = `${tmp}/cnm.sock`;
    const stateDir = `${tmp}/state`;
    const pidfile = `${stateDir}/cnm.pid`;
    const daemonArgs = [
      "--netns",
      host,
      "--prefix",
      prefix,
      "--state-dir",
      stateDir,
      "--socket",
      socket,
      "--dns",
      "192.0.2.53",
    ];
    const daemons: DaemonProcess[] = [];
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`http://cnm${path}`, {
        method,
        client,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : undefined };
    };
    const cnm = (...args: string[]) =>
      run(Deno.execPath(), [...DENO_RUN, "--socket", socket, ...args]);
    const cnmOk = async (...args: string[]) => {
      const r = await cnm(...args);
      assert.equal(r.code, 0, `cnm ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    const startDaemon = async () => {
      const d = new DaemonProcess(daemonArgs);
      daemons.push(d);
      await until("the daemon's socket", async () => {
        if (d.exited) throw new Error(`The daemon exited (${d.exited.code}): ${d.log}`);
        try {
          return (await api("GET", "/info")).status === 200;
        } catch {
          return false;
        }
      });
      return d;
    };
    // Abort the test at the first failed step: later steps depend on earlier ones.
    const step = async (name: string, fn: () => Promise<void>) => {
      if (!(await t.step(name, fn))) {
        throw new Error(`Step "${name}" failed; daemon log:\n${daemons.at(-1)?.log ?? ""}`);
      }
    };
    // deno-lint-ignore no-explicit-any
    type Sandbox = any;
    const inspect = async (name: string): Promise<Sandbox> =>
      JSON.parse(await cnmOk("sandbox", "inspect", name, "--format", "json"));
    const ipOf = (sb: Sandbox) => (sb.endpointDetails[0].ipv4 as string).split("/")[0];

    try {
      let daemon = await startDaemon();

      await step("GET /info names the host namespace, prefix and pid", async () => {
        const info = (await api("GET", "/info")).json;
        assert.equal(info.hostNetns, host);
        assert.equal(info.prefix, prefix);
        assert.equal(info.pid, daemon.child.pid);
        assert.ok(info.drivers.includes("bridge"));
        assert.equal((await Deno.readTextFile(pidfile)).trim(), String(daemon.child.pid));
        assert.ok((await listNetns()).includes(host));
      });

      await step("two bridge networks, two sandboxes each, connected", async () => {
        assert.match(
          await cnmOk("network", "create", "--subnet", "10.201.0.0/24", `${prefix}-n1`),
          /^[0-9a-f]{64}\n$/,
        );
        await cnmOk("network", "create", "--subnet", "10.202.0.0/24", `${prefix}-n2`);
        for (const name of ["a1", "a2", "b1", "b2"]) {
          await cnmOk("sandbox", "create", "--hostname", `host-${name}`, name);
        }
        for (const [net, sb] of [["n1", "a1"], ["n1", "a2"], ["n2", "b1"], ["n2", "b2"]]) {
          assert.equal(await cnmOk("connect", `${prefix}-${net}`, sb), "");
        }
        const ls = await cnmOk("network", "ls");
        assert.match(ls, /^NETWORK ID\s+NAME\s+DRIVER\s+SUBNET\n/);
        assert.match(
          ls,
          new RegExp(`\\n[0-9a-f]{12}\\s+${prefix}-n1\\s+bridge\\s+10\\.201\\.0\\.0/24`),
        );
      });

      await step("sandbox inspect --format json has the netns and endpoint details", async () => {
        const a1 = await inspect("a1");
        assert.equal(a1.netnsPath, `/run/netns/${a1.netnsName}`);
        assert.ok(a1.netnsName.startsWith(prefix));
        assert.ok(await exists(a1.netnsPath));
        const [ep] = a1.endpointDetails;
        assert.equal(ep.networkName, `${prefix}-n1`);
        assert.equal(ep.ifname, "eth0");
        assert.match(ep.ipv4, /^10\.201\.0\.\d+\/24$/);
        assert.match(ep.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        assert.equal(ep.gateway, "10.201.0.1");
        const net = JSON.parse(
          await cnmOk("network", "inspect", `${prefix}-n1`, "--format", "json"),
        );
        assert.equal(net.driver, "bridge");
        assert.equal(net.ipv4[0].subnet, "10.201.0.0/24");
        assert.equal(net.ipv4[0].gateway, "10.201.0.1");
        assert.deepEqual(net.options, {});
        assert.deepEqual(net.endpoints.map((e: { sandboxName: string }) => e.sandboxName).sort(), [
          "a1",
          "a2",
        ]);
      });

      await step("ping works within a network and not across networks", async () => {
        const [a1, a2, b1] = await Promise.all(["a1", "a2", "b1"].map(inspect));
        assert.ok(await ping(a1.netnsName, ipOf(a2)), "a1 -> a2 must answer");
        assert.ok(await ping(a2.netnsName, ipOf(a1)), "a2 -> a1 must answer");
        assert.equal(await ping(a1.netnsName, ipOf(b1)), false, "a1 -> b1 must not answer");
        assert.equal(await ping(b1.netnsName, ipOf(a1)), false, "b1 -> a1 must not answer");
      });

      await step(
        "cnm exec sees the sandbox's hosts and resolv.conf, and its exit code",
        async () => {
          const hosts = await cnmOk("exec", "a1", "--", "cat", "/etc/hosts");
          assert.match(hosts, /^10\.201\.0\.\d+\thost-a1$/m);
          assert.match(
            await cnmOk("exec", "a1", "cat", "/etc/resolv.conf"),
            /^nameserver 127\.0\.0\.11\noptions ndots:0$/m,
          );
          // the embedded resolver answers inside the sandbox
          assert.match(
            await cnmOk("exec", "a1", "--", "dig", "+short", "+tries=1", "+time=2", "a2"),
            /^10\.201\.0\.\d+$/m,
          );
          assert.equal((await cnm("exec", "a1", "--", "sh", "-c", "exit 3")).code, 3);
        },
      );

      await step("errors: one line, exit 1 or 2", async () => {
        const dup = await cnm("network", "create", `${prefix}-n1`);
        assert.equal(dup.code, 1);
        assert.equal(dup.stdout, "");
        assert.equal(dup.stderr.trimEnd().split("\n").length, 1, dup.stderr);
        assert.match(dup.stderr, new RegExp(`^cnm: .*network "${prefix}-n1"`));
        const flag = await cnm("network", "create", "--bogus", "x");
        assert.equal(flag.code, 2);
        assert.equal(flag.stderr, "cnm: unknown option '--bogus'\n");
        const kv = await cnm("network", "create", "-o", "nokey", "x");
        assert.equal(kv.code, 2);
        const bogus = `${tmp}/nothing-here.sock`;
        const none = await run(Deno.execPath(), [...DENO_RUN, "--socket", bogus, "network", "ls"]);
        assert.equal(none.code, 1);
        assert.equal(none.stderr, `cnm: no daemon at ${bogus}\n`);
        const missing = await cnm("sandbox", "inspect", "ghost");
        assert.equal(missing.code, 1);
        assert.equal(missing.stderr, 'cnm: sandbox "ghost" not found\n');
      });

      await step("a second daemon on the same socket refuses to start", async () => {
        const second = new DaemonProcess(daemonArgs);
        const status = await second.wait();
        assert.equal(status.code, 1);
        assert.match(second.log, new RegExp(`another daemon is running on ${socket}`));
        assert.ok((await api("GET", "/info")).status === 200, "the first daemon still answers");
      });

      await step("20 parallel connects to one network get 20 distinct addresses", async () => {
        const net = `${prefix}-n3`;
        assert.equal(
          (await api("POST", "/networks", { name: net, subnet: "10.203.0.0/24" })).status,
          201,
        );
        const names = Array.from({ length: 20 }, (_, i) => `p${i}`);
        const created = await Promise.all(names.map((name) => api("POST", "/sandboxes", { name })));
        assert.deepEqual(created.map((r) => r.status), names.map(() => 201));
        const eps = await Promise.all(
          names.map((sandbox) => api("POST", `/networks/${net}/endpoints`, { sandbox })),
        );
        assert.deepEqual(
          eps.map((r) => r.status),
          names.map(() => 201),
          JSON.stringify(eps[0].json),
        );
        const addrs = new Set(eps.map((r) => r.json.ipv4));
        assert.equal(addrs.size, 20);
        for (const a of addrs) assert.match(a, /^10\.203\.0\.\d+\/24$/);
        const removed = await Promise.all(names.map((n) => api("DELETE", `/sandboxes/${n}`)));
        assert.deepEqual(removed.map((r) => r.status), names.map(() => 204));
        assert.equal((await api("DELETE", `/networks/${net}`)).status, 204);
      });

      const before = {
        networks: JSON.parse(await cnmOk("network", "ls", "--format", "json")),
        sandboxes: JSON.parse(await cnmOk("sandbox", "ls", "--format", "json")),
      };

      await step("SIGTERM stops the daemon cleanly; sandboxes stay", async () => {
        Deno.kill(daemon.child.pid, "SIGTERM");
        const status = await daemon.wait();
        assert.equal(status.code, 0, daemon.log);
        assert.equal(await exists(pidfile), false, "pidfile removed");
        assert.equal(await exists(socket), false, "socket removed");
        assert.match(daemon.log, /received SIGTERM/);
        const netns = await listNetns();
        for (const sb of before.sandboxes) assert.ok(netns.includes(sb.netnsName), sb.name);
      });

      await step(
        "a restarted daemon has the same networks and sandboxes, and ping works",
        async () => {
          daemon = await startDaemon();
          const networks = JSON.parse(await cnmOk("network", "ls", "--format", "json"));
          const sandboxes = JSON.parse(await cnmOk("sandbox", "ls", "--format", "json"));
          assert.deepEqual(networks, before.networks);
          assert.deepEqual(sandboxes, before.sandboxes);
          const [a1, a2, b1] = await Promise.all(["a1", "a2", "b1"].map(inspect));
          assert.ok(await ping(a1.netnsName, ipOf(a2)), "a1 -> a2 must answer after restart");
          assert.equal(await ping(a1.netnsName, ipOf(b1)), false, "a1 -> b1 still isolated");
          // And the restarted daemon still allocates around the restored addresses.
          await cnmOk("sandbox", "create", "a3");
          await cnmOk("connect", `${prefix}-n1`, "a3");
          const a3 = await inspect("a3");
          assert.ok(![ipOf(a1), ipOf(a2)].includes(ipOf(a3)));
          assert.ok(await ping(a3.netnsName, ipOf(a1)));
        },
      );

      await step(
        "kill -9 mid-operation; the restarted daemon reconciles: addresses and connectivity kept, no orphans",
        async () => {
          const kept = ["a1", "a2", "a3", "b1", "b2"];
          const before = await Promise.all(kept.map(inspect));
          const net = `${prefix}-n1`;
          const names = Array.from({ length: 8 }, (_, i) => `k${i}`);
          for (const name of names) {
            assert.equal((await api("POST", "/sandboxes", { name })).status, 201);
          }
          // Eight connects in flight; the daemon is killed when the first one has answered,
          // so the others are queued or half done in the kernel.
          const inflight = names.map((sandbox) =>
            api("POST", `/networks/${net}/endpoints`, { sandbox }).catch(() => undefined)
          );
          await Promise.race(inflight);
          Deno.kill(daemon.child.pid, "SIGKILL");
          const status = await daemon.wait();
          assert.equal(status.signal, "SIGKILL");
          await Promise.all(inflight);

          daemon = await startDaemon();
          assert.doesNotMatch(daemon.log, /reconcile: failed/);
          // The sandboxes that were connected keep interface, address and MAC, and traffic.
          const after = await Promise.all(kept.map(inspect));
          for (const [i, sb] of after.entries()) {
            const [was] = before[i].endpointDetails, [is] = sb.endpointDetails;
            assert.deepEqual(
              [is.ifname, is.ipv4, is.mac],
              [was.ifname, was.ipv4, was.mac],
              sb.name,
            );
          }
          const [a1, a2, a3, b1] = after;
          assert.ok(await ping(a1.netnsName, ipOf(a2)), "a1 -> a2 after a kill -9");
          assert.ok(await ping(a3.netnsName, ipOf(a1)), "a3 -> a1 after a kill -9");
          assert.equal(await ping(a1.netnsName, ipOf(b1)), false, "a1 -> b1 still isolated");
          // No orphans: every namespace named like a sandbox is a stored sandbox, and every
          // veth on a bridge is a stored endpoint's.
          const views = (await api("GET", "/sandboxes")).json as Sandbox[];
          const sandboxNetns = new RegExp(`^${prefix}-[0-9a-f]{8}-[0-9a-f]{12}$`);
          assert.deepEqual(
            (await listNetns()).filter((n) => sandboxNetns.test(n)).sort(),
            views.map((v) => v.netnsName).sort(),
          );
          const links = JSON.parse(await must(["ip", "-n", host, "-j", "link", "show"]));
          const veths = links.filter((l: { master?: string }) => l.master?.startsWith("br-"))
            .map((l: { ifname: string }) => l.ifname).sort();
          const endpoints = views.flatMap((v) => v.endpointDetails);
          assert.deepEqual(veths, endpoints.map((e) => e.driverData.hostIf).sort());
          // Whatever the kill interrupted either happened (and works) or did not (and can be
          // done again): in the end every k* is connected, with distinct addresses.
          for (const name of names) {
            const v = views.find((x) => x.name === name);
            assert.ok(v, `${name} survives the kill (it was stored before)`);
            if (v.endpointDetails.length === 0) {
              assert.equal(
                (await api("POST", `/networks/${net}/endpoints`, { sandbox: name })).status,
                201,
              );
            }
          }
          const ks = await Promise.all(names.map(inspect));
          const addrs = [...ks, ...after].map(ipOf);
          assert.equal(new Set(addrs).size, addrs.length, `distinct: ${addrs.join(" ")}`);
          for (const k of ks) assert.ok(await ping(k.netnsName, "10.201.0.1"), `${k.name} -> gw`);
          assert.equal(await cnmOk("sandbox", "rm", ...names), names.map((n) => `${n}\n`).join(""));
        },
      );

      await step("rm removes sandboxes and networks, printing each name", async () => {
        assert.equal(
          await cnmOk("sandbox", "rm", "a1", "a2", "a3", "b1", "b2"),
          "a1\na2\na3\nb1\nb2\n",
        );
        assert.equal(
          await cnmOk("network", "rm", `${prefix}-n1`, `${prefix}-n2`),
          `${prefix}-n1\n${prefix}-n2\n`,
        );
        const left = (await listNetns()).filter((n) => n.startsWith(prefix));
        assert.deepEqual(left, [host]);
        Deno.kill(daemon.child.pid, "SIGTERM");
        assert.equal((await daemon.wait()).code, 0);
      });
    } finally {
      for (const d of daemons) await d.kill();
      client.close();
      await removeNetnsByPrefix(prefix);
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      const left = (await listNetns()).filter((n) => n.startsWith(prefix));
      const etc: string[] = [];
      try {
        for await (const e of Deno.readDir("/etc/netns")) {
          if (e.name.startsWith(prefix)) etc.push(e.name);
        }
      } catch { /* no /etc/netns at all */ }
      assert.deepEqual([...left, ...etc], [], "nothing of this test is left");
    }
  },
});
