/**
 * The test-only entry point as a subprocess (needs root): `testing/faulty_daemon.ts --fault
 * dns-not-rearmed -- ARGS` against `cnm daemon ARGS`. Both serve a sandbox's 127.0.0.11;
 * after a restart the healthy daemon answers again in the sandboxes it found, the faulty one
 * only in the sandboxes created since. Throwaway namespaces (unique prefix, the daemon's host
 * is its own `--netns`), removed in `finally`.
 */
import assert from "node:assert/strict";
import { isRoot, prefixResidue, removeNetnsByPrefix, sh, testPrefix } from "./mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLI = new URL("../impl/cli/main.ts", import.meta.url).pathname;
const FAULTY = new URL("./faulty_daemon.ts", import.meta.url).pathname;
const DENO_RUN = ["run", "-A", "--unstable-net", "--config", `${ROOT}deno.json`];

/** One daemon process with its stderr collected. */
class Daemon {
  readonly child: Deno.ChildProcess;
  log = "";
  readonly #drained: Promise<void>;

  constructor(entry: string[], args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [...DENO_RUN, ...entry, ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { CNM_SOCKET: "" },
    }).spawn();
    const stderr = this.child.stderr;
    this.#drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stderr) this.log += dec.decode(chunk, { stream: true });
    })();
  }

  /** Sends `signal` (SIGTERM: a clean stop) and waits for the exit and the log. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* exited */ }
    const status = await this.child.status;
    await this.#drained;
    return status;
  }
}

/** The answer of the embedded resolver of the sandbox at `netnsPath` for `name` (A). */
async function dig(netnsPath: string, name: string): Promise<string> {
  const r = await sh([
    "nsenter",
    `--net=${netnsPath}`,
    "dig",
    "+time=1",
    "+tries=1",
    "+short",
    "@127.0.0.11",
    name,
    "A",
  ]);
  return r.code === 0 ? r.stdout.trim() : `(no answer: ${r.stdout.trim()})`;
}

/**
 * Starts a daemon with `entry`, makes sandboxes old1, old2 on one network, restarts it,
 * makes sandbox new1, and returns what each sandbox's resolver answers for old1.
 */
async function scenario(name: string, entry: string[]): Promise<Record<string, string>> {
  const prefix = testPrefix();
  const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
  const socket = `${tmp}/cnm.sock`;
  const args = [
    "--netns",
    `${prefix}-host`,
    "--prefix",
    prefix,
    "--state-dir",
    `${tmp}/state`,
    "--socket",
    socket,
  ];
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://cnm${path}`, {
      method,
      client,
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.ok(res.ok, `${name}: ${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const start = async () => {
    const d = new Daemon(entry, args);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const up = await fetch("http://cnm/info", { client }).then(
        async (r) => (await r.body?.cancel(), r.ok),
        () => false,
      );
      if (up) return d;
      if (Date.now() > deadline) {
        await d.stop("SIGKILL");
        throw new Error(`${name}: the daemon did not start:\n${d.log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let daemon: Daemon | undefined;
  try {
    daemon = await start();
    await api("POST", "/networks", { name: "net", subnet: "10.235.0.0/24" });
    const paths: Record<string, string> = {};
    const sandbox = async (sb: string) => {
      paths[sb] = (await api("POST", "/sandboxes", { name: sb })).netnsPath;
      await api("POST", "/networks/net/endpoints", { sandbox: sb });
    };
    await sandbox("old1");
    await sandbox("old2");
    const before = await dig(paths.old2, "old1");
    assert.match(before, /^10\.235\.0\.\d+$/, `${name}: old2 resolves old1 before the restart`);

    assert.equal((await daemon.stop()).code, 0, `${name}: a clean stop`);
    daemon = await start();
    await sandbox("new1");
    const answers: Record<string, string> = {};
    for (const sb of ["old2", "new1"]) answers[sb] = await dig(paths[sb], "old1");
    answers.before = before;

    for (const sb of ["old1", "old2", "new1"]) await api("DELETE", `/sandboxes/${sb}`);
    await api("DELETE", "/networks/net");
    return answers;
  } finally {
    if (daemon) await daemon.stop();
    client.close();
    await removeNetnsByPrefix(prefix);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    assert.deepEqual(await prefixResidue(prefix), [], `${name}: nothing is left`);
  }
}

Deno.test({
  name: "faulty_daemon --fault dns-not-rearmed: restored sandboxes lose 127.0.0.11 (root)",
  ignore: !isRoot,
  async fn() {
    const healthy = await scenario("cnm daemon", [CLI, "daemon"]);
    const faulty = await scenario("dns-not-rearmed", [FAULTY, "--fault", "dns-not-rearmed", "--"]);
    // the healthy daemon re-arms the sandboxes it finds at start
    assert.equal(healthy.old2, healthy.before, `healthy: ${JSON.stringify(healthy)}`);
    assert.equal(healthy.new1, healthy.before, `healthy: ${JSON.stringify(healthy)}`);
    // the faulty one serves only the sandbox created after the restart
    assert.match(faulty.old2, /^\(no answer/, `faulty: ${JSON.stringify(faulty)}`);
    assert.equal(faulty.new1, faulty.before, `faulty: ${JSON.stringify(faulty)}`);
  },
});
