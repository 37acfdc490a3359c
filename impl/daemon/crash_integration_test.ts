/**
 * Crash consistency, proven by injection (issue 14): for connect, disconnect, network
 * create, network rm and sandbox rm, the daemon (testing/crash_daemon.ts) is killed with
 * SIGKILL from outside just before its k-th kernel command of the operation, for every k,
 * and once just after its last one (before the store's commit). A plain `cnm daemon` is
 * then started on the same state and the test checks: the operation happened wholly or not
 * at all; no two endpoints share an address; every endpoint the daemon reports is in the
 * kernel; no link, namespace or rule is left that no record owns (after removing everything
 * through the API, the host namespace is empty). Real daemons, throwaway namespaces.
 */
import assert from "node:assert/strict";
import {
  hostResidue,
  isRoot,
  listNetns,
  must,
  removeNetnsByPrefix,
  testPrefix,
} from "../../testing/mod.ts";
import { DaemonProcess, denoRun, UnixApi, until } from "../../testing/daemon_process.ts";

const CRASH = denoRun("testing/crash_daemon.ts");

/** One operation under test: what it starts from, the request, what "done" looks like. */
interface Operation {
  name: string;
  setup(api: Api): Promise<void>;
  request: [method: string, path: string, body?: unknown];
  /** The state once the operation happened (true) or not (false). */
  happened(state: State): boolean;
  /** What a restart must make of a cut-short operation: done, undone, or either. */
  expect: "done" | "undone";
}

type Api = (method: string, path: string, body?: unknown) => Promise<any>;

interface State {
  networks: { id: string; name: string; driver: string; options: Record<string, string> }[];
  sandboxes: {
    name: string;
    netnsName: string;
    endpointDetails: {
      networkId: string;
      ifname?: string;
      ipv4?: string;
      published?: { hostPort: number }[];
      driverData: Record<string, string>;
    }[];
  }[];
}

const connected = (s: State, sb: string, net: string) => {
  const n = s.networks.find((x) => x.name === net);
  return !!n && !!s.sandboxes.find((x) => x.name === sb)?.endpointDetails
    .some((e) => e.networkId === n.id);
};

/** A bridge the user names: reconcile's sweep of stray veths leaves its ports alone. */
const NAMED = { "com.docker.network.bridge.name": "cnmcrash0" };

/** The bridge of a network. */
const bridgeOf = (n: State["networks"][number]) =>
  n.options["com.docker.network.bridge.name"] ?? `br-${n.id.slice(0, 12)}`;

const OPERATIONS: Operation[] = [
  {
    name: "connect (a user-named bridge, a published port)",
    async setup(api) {
      await api("POST", "/networks", { name: "n1", subnet: "10.231.0.0/24", options: NAMED });
      for (const name of ["s1", "s2"]) await api("POST", "/sandboxes", { name });
      await api("POST", "/networks/n1/endpoints", { sandbox: "s2" });
    },
    request: ["POST", "/networks/n1/endpoints", {
      sandbox: "s1",
      publish: [{ hostPort: 18080, containerPort: 80 }],
    }],
    happened: (s) => connected(s, "s1", "n1"),
    expect: "undone",
  },
  {
    name: "disconnect (a user-named bridge, a published port)",
    async setup(api) {
      await api("POST", "/networks", { name: "n1", subnet: "10.231.0.0/24", options: NAMED });
      for (const name of ["s1", "s2"]) {
        await api("POST", "/sandboxes", { name });
        await api("POST", "/networks/n1/endpoints", {
          sandbox: name,
          ...(name === "s1" ? { publish: [{ hostPort: 18080, containerPort: 80 }] } : {}),
        });
      }
    },
    request: ["DELETE", "/networks/n1/endpoints/s1"],
    happened: (s) => !connected(s, "s1", "n1"),
    expect: "done",
  },
  {
    name: "network create",
    async setup(api) {
      await api("POST", "/networks", { name: "n1", subnet: "10.231.0.0/24" });
    },
    request: ["POST", "/networks", { name: "n2", subnet: "10.232.0.0/24" }],
    happened: (s) => s.networks.some((n) => n.name === "n2"),
    expect: "undone",
  },
  {
    name: "network rm",
    async setup(api) {
      await api("POST", "/networks", { name: "n1", subnet: "10.231.0.0/24" });
      await api("POST", "/networks", { name: "n2", subnet: "10.232.0.0/24" });
    },
    request: ["DELETE", "/networks/n2"],
    happened: (s) => !s.networks.some((n) => n.name === "n2"),
    expect: "done",
  },
  {
    name: "sandbox rm (two networks)",
    async setup(api) {
      await api("POST", "/networks", { name: "n1", subnet: "10.231.0.0/24" });
      await api("POST", "/networks", { name: "n2", subnet: "10.232.0.0/24" });
      await api("POST", "/sandboxes", { name: "s1" });
      await api("POST", "/networks/n1/endpoints", { sandbox: "s1" });
      await api("POST", "/networks/n2/endpoints", { sandbox: "s1" });
    },
    request: ["DELETE", "/sandboxes/s1"],
    happened: (s) => !s.sandboxes.some((x) => x.name === "s1"),
    expect: "done",
  },
];

/** The store as the daemon reports it. */
async function state(api: Api): Promise<State> {
  const networks = await api("GET", "/networks");
  const list = await api("GET", "/sandboxes") as { name: string }[];
  const sandboxes = [];
  for (const s of list) sandboxes.push(await api("GET", `/sandboxes/${s.name}`));
  return { networks, sandboxes };
}

/**
 * Store = kernel: each endpoint's interface is in its sandbox with its address, its veth
 * on its bridge; nothing in the host or a sandbox that no record owns; no shared address.
 */
async function checkAgrees(s: State, host: string, prefix: string): Promise<void> {
  const addresses = s.sandboxes.flatMap((x) => x.endpointDetails.map((e) => e.ipv4))
    .filter(Boolean);
  assert.equal(new Set(addresses).size, addresses.length, `duplicate address: ${addresses}`);
  const hostLinks = JSON.parse(await must(["ip", "-n", host, "-j", "link", "show"])) as {
    ifname: string;
    master?: string;
  }[];
  const expected = new Set(["lo"]);
  for (const n of s.networks) if (n.driver === "bridge") expected.add(bridgeOf(n));
  for (const sb of s.sandboxes) {
    const links = JSON.parse(await must(["ip", "-n", sb.netnsName, "-j", "addr", "show"])) as {
      ifname: string;
      addr_info: { local: string; prefixlen: number }[];
    }[];
    const mine = new Set(["lo"]);
    for (const ep of sb.endpointDetails) {
      mine.add(ep.ifname!);
      const link = links.find((l) => l.ifname === ep.ifname);
      assert.ok(link, `${sb.name}: ${ep.ifname} is in the kernel`);
      const addrs = link.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
      assert.ok(addrs.includes(ep.ipv4!), `${sb.name}: ${ep.ifname} has ${ep.ipv4}`);
      const hostIf = ep.driverData.hostIf;
      expected.add(hostIf);
      const net = s.networks.find((n) => n.id === ep.networkId)!;
      assert.equal(
        hostLinks.find((l) => l.ifname === hostIf)?.master,
        bridgeOf(net),
        `${sb.name}: ${hostIf} is on its bridge`,
      );
    }
    assert.deepEqual(links.map((l) => l.ifname).sort(), [...mine].sort(), `${sb.name}'s links`);
  }
  assert.deepEqual(hostLinks.map((l) => l.ifname).sort(), [...expected].sort(), "host links");
  // a published port's rules exist exactly when a stored endpoint publishes it
  const published = s.sandboxes.some((x) =>
    x.endpointDetails.some((e) => e.published?.some((p) => p.hostPort === 18080))
  );
  const ruleset = await must(["ip", "netns", "exec", host, "nft", "list", "ruleset"]);
  assert.equal(/dport 18080\b/.test(ruleset), published, `port 18080's rules:\n${ruleset}`);
  const netns = (await listNetns()).filter((n) => n.startsWith(prefix)).sort();
  assert.deepEqual(netns, [host, ...s.sandboxes.map((x) => x.netnsName)].sort(), "namespaces");
}

/** The dry run's commands that are batches (`ip -batch -`, `nft -f -`): cut in the middle. */
async function batchCommands(tmp: string): Promise<Set<number>> {
  const trace = await Deno.readTextFile(`${tmp}/dry-before/trace`);
  const out = new Set<number>();
  for (const line of trace.split("\n").filter(Boolean)) {
    const [k, ...argv] = line.split(" ");
    if (argv.includes("-batch") || (argv.includes("nft") && argv.includes("-f"))) {
      out.add(Number(k));
    }
  }
  return out;
}

/** Removes every sandbox and network through the API. */
async function removeAll(api: Api): Promise<void> {
  for (const s of await api("GET", "/sandboxes")) await api("DELETE", `/sandboxes/${s.name}`);
  for (const n of await api("GET", "/networks")) await api("DELETE", `/networks/${n.name}`);
}

Deno.test({
  name: "kill -9 before every kernel command of an operation: whole or not at all (root)",
  ignore: !isRoot,
  async fn(t) {
    for (const op of OPERATIONS) {
      await t.step(op.name, async () => {
        const prefix = testPrefix();
        const host = `${prefix}-h`;
        const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
        const socket = `${tmp}/cnm.sock`;
        const daemonArgs = [
          "--netns",
          host,
          "--prefix",
          prefix,
          "--socket",
          socket,
          "--dns",
          "192.0.2.53",
        ];
        const client = new UnixApi(socket);
        const api: Api = async (method, path, body) => {
          const r = await client.call(method, path, body);
          if (r.status >= 300) {
            throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
          }
          return r.json;
        };
        const daemons: DaemonProcess[] = [];
        /** One run: kill at `k` (undefined: a dry run that counts); returns n. */
        const attempt = async (
          k: number | undefined,
          when: "before" | "within" | "after",
        ) => {
          const dir = `${tmp}/${k ?? "dry"}-${when}`;
          const stateDir = `${dir}/state`;
          await Deno.mkdir(dir, { recursive: true });
          const plan = {
            arm: `${dir}/arm`,
            trace: `${dir}/trace`,
            paused: `${dir}/paused`,
          };
          const crash = new DaemonProcess([
            "--arm",
            plan.arm,
            "--trace",
            plan.trace,
            "--paused",
            plan.paused,
            ...(k === undefined ? [] : [`--stop-${when}`, String(k)]),
            "--",
            ...daemonArgs,
            "--state-dir",
            stateDir,
          ], CRASH);
          daemons.push(crash);
          await crash.ready(client);
          await op.setup(api);
          await Deno.writeTextFile(plan.arm, "");
          const [method, path, body] = op.request;
          const pending = client.call(method, path, body).catch((e) => e);
          let paused = "";
          if (k === undefined) {
            const r = await pending;
            assert.ok(r.status < 300, `the dry run's request: ${JSON.stringify(r)}`);
          } else {
            await until(`the stop ${when} command ${k}`, async () => {
              paused = await Deno.readTextFile(plan.paused).catch(() => "");
              return paused !== "";
            });
          }
          await crash.kill(); // from outside, as a crash
          await pending;
          const n = (await Deno.readTextFile(plan.trace).catch(() => "")).split("\n")
            .filter(Boolean).length;
          const d = new DaemonProcess([...daemonArgs, "--state-dir", stateDir]);
          daemons.push(d);
          await d.ready(client);
          const where = `killed ${when} ${paused.trim() || "nothing"}; log:\n${d.log}`;
          try {
            const s = await state(api);
            const happened = op.happened(s);
            if (k === undefined) assert.ok(happened, `the dry run did it; ${where}`);
            else assert.equal(happened, op.expect === "done", `${op.expect}; ${where}`);
            await checkAgrees(s, host, prefix);
            // a consistent host: a second reconcile (a restart) has nothing to do
            await removeAll(api);
            assert.deepEqual(await hostResidue(host), [], `the host is empty; ${where}`);
          } catch (err) {
            throw new Error(`${op.name}, ${where}`, { cause: err });
          }
          assert.equal((await d.stop()).code, 0);
          await removeNetnsByPrefix(prefix);
          return n;
        };
        try {
          const n = await attempt(undefined, "before");
          assert.ok(n > 0, "the operation runs kernel commands");
          const batches = await batchCommands(tmp);
          for (let k = 1; k <= n; k++) {
            await attempt(k, "before");
            if (batches.has(k)) await attempt(k, "within");
          }
          await attempt(n, "after");
          console.log(
            `  ${op.name}: ${n} kernel commands (${batches.size} batches), ${
              n + 1 + batches.size
            } crashes`,
          );
        } finally {
          for (const d of daemons) await d.kill();
          client.close();
          await removeNetnsByPrefix(prefix);
          await Deno.remove(`/run/cnm/${prefix}.lock`).catch(() => {});
          await Deno.remove(tmp, { recursive: true }).catch(() => {});
        }
      });
    }
  },
});
