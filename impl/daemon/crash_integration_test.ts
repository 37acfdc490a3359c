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
import { isRoot, removeNetnsByPrefix, settledHostResidue, testPrefix } from "../../testing/mod.ts";
import {
  type Api,
  checkAgrees,
  connected,
  removeAll,
  type State,
  state,
} from "../../testing/consistency.ts";
import {
  DaemonProcess,
  denoRun,
  throwawayDaemonArgs,
  UnixApi,
  until,
} from "../../testing/daemon_process.ts";

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

/** A bridge the user names: reconcile's sweep of stray veths leaves its ports alone. */
const NAMED = { "com.docker.network.bridge.name": "cnmcrash0" };

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
        const daemonArgs = throwawayDaemonArgs({ host, prefix, socket });
        const client = new UnixApi(socket);
        const api: Api = (method, path, body) => client.ok(method, path, body);
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
            assert.deepEqual(await settledHostResidue(host), [], `the host is empty; ${where}`);
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
