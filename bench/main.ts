/**
 * `deno task bench`: latency of the daemon's API on real kernel objects. It starts a real
 * `cnm daemon` as a subprocess in a throwaway host namespace (`--netns <prefix>-host`, its own
 * prefix, state directory and socket), drives it with HTTP over the unix socket, and prints
 * p50/p95 figures with ratios to the targets and to Docker. It never fails on time
 * (benchmarks measure, tests assert behaviour), and it removes everything it made in
 * `finally`.
 *
 * Targets (issue 3, 2-core machine): connect p50 <= 10 ms, network create <= 20 ms,
 * 100 sandboxes on one network built until all reach the gateway <= 2 s. Docker 20.10 is
 * measured in the same run through its Engine API (when dockerd is installed), never taken
 * from constants.
 *
 * `CNM_BENCH_N` sets the number of operations per figure (default 50).
 * @module
 */
import { ensureMachine } from "../tools/preflight.ts";
import { withPrivateDocker } from "./private_docker.ts";
import { listNetns, removeNetnsByPrefix, sh, testPrefix } from "../testing/mod.ts";
import { CNM } from "../testing/daemon_process.ts";

const N = Math.max(1, Number(Deno.env.get("CNM_BENCH_N") ?? 50));

const TARGET = { create: 20, connect: 10, build: 2000 };

/** Docker's figures, measured in this run (p50 per operation), when dockerd is installed. */
interface DockerFigures {
  create: number[];
  remove: number[];
  connect: number[];
  disconnect: number[];
}

/**
 * The same operations through Docker 20.10's Engine API, in the same run: a private dockerd
 * in a throwaway host namespace (started as the conformance suite's Docker adapter starts
 * it), driven with the same kind of HTTP client over its unix socket: network create and
 * rm, then connect and disconnect of running containers (each also on a base network, since
 * Docker's connect needs a running container). Undefined when no dockerd is installed.
 */
async function dockerFigures(n: number): Promise<DockerFigures | undefined> {
  return await withPrivateDocker(async (_docker, _host, socket) => {
    const dc = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`http://docker/v1.41${path}`, {
        method,
        client: dc,
        headers: body === undefined ? undefined : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`docker ${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
      return text ? JSON.parse(text) : undefined;
    };
    const f: DockerFigures = { create: [], remove: [], connect: [], disconnect: [] };
    try {
      for (let i = 0; i < n; i++) {
        const subnet = `10.${100 + Math.floor(i / 200)}.${i % 200}.0/24`;
        await time(f.create, () =>
          call("POST", "/networks/create", {
            Name: `n${i}`,
            Driver: "bridge",
            CheckDuplicate: true,
            IPAM: { Driver: "default", Config: [{ Subnet: subnet }] },
          }));
      }
      for (let i = 0; i < n; i++) await time(f.remove, () => call("DELETE", `/networks/n${i}`));
      const ipam = (s: string) => ({ Driver: "default", Config: [{ Subnet: s }] });
      await call("POST", "/networks/create", { Name: "base", IPAM: ipam("10.97.0.0/16") });
      await call("POST", "/networks/create", { Name: "web", IPAM: ipam("10.99.0.0/16") });
      for (let i = 0; i < n; i++) {
        await call("POST", `/containers/create?name=s${i}`, {
          Image: "cnm-probe:latest",
          Cmd: ["/bin/sleep", "2147483647"],
          HostConfig: { NetworkMode: "base" },
        });
        await call("POST", `/containers/s${i}/start`);
      }
      for (let i = 0; i < n; i++) {
        await time(f.connect, () => call("POST", "/networks/web/connect", { Container: `s${i}` }));
      }
      for (let i = 0; i < n; i++) {
        await time(
          f.disconnect,
          () => call("POST", "/networks/web/disconnect", { Container: `s${i}` }),
        );
      }
      for (let i = 0; i < n; i++) await call("DELETE", `/containers/s${i}?force=1`);
      await call("DELETE", "/networks/web");
      await call("DELETE", "/networks/base");
      return f;
    } finally {
      dc.close();
    }
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function report(label: string, xs: number[], target?: number, dockerXs?: number[]): void {
  const p50 = pct(xs, 50), p95 = pct(xs, 95);
  const docker = dockerXs?.length ? pct(dockerXs, 50) : undefined;
  const parts = [
    `${label.padEnd(16)} p50 ${p50.toFixed(1).padStart(6)} ms  p95 ${
      p95.toFixed(1).padStart(6)
    } ms  (n=${xs.length})`,
  ];
  if (target) parts.push(`target ${target} ms: ${(p50 / target).toFixed(2)}x`);
  if (docker) {
    parts.push(
      `Docker 20.10 p50 ${docker.toFixed(1)} ms (same run): ${(p50 / docker).toFixed(2)}x`,
    );
  }
  console.log(parts.join("  "));
}

/**
 * The CPUs and the load average before the run: figures taken while something else runs on
 * a 2-core machine are pessimistic, and this line says so.
 */
async function loadLine(): Promise<string> {
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ")[0];
  return `${navigator.hardwareConcurrency} CPUs, load average ${load} (1 min)${
    Number(load) > 0.5 ? ": other work is running, figures are pessimistic" : ""
  }`;
}

/** The daemon under test: a subprocess whose stderr is collected (never left to fill a pipe). */
class Daemon {
  readonly child: Deno.ChildProcess;
  log = "";
  exited?: Deno.CommandStatus;
  readonly #drained: Promise<void>;
  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [...CNM, "daemon", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { CNM_SOCKET: "" },
    }).spawn();
    const child = this.child;
    this.#drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.log += dec.decode(chunk, { stream: true });
    })();
    child.status.then((s) => this.exited = s);
  }
  /** SIGTERM, then SIGKILL if it has not stopped within 5 s; waits for its end. */
  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          this.child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await this.child.status;
      clearTimeout(timer);
    }
    await this.#drained;
  }
}

await ensureMachine(true);
const prefix = testPrefix();
const host = `${prefix}-host`;
const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
const socket = `${tmp}/s`;
const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
let daemon: Daemon | undefined;

/** One API call; throws on an unexpected status. */
async function api(method: string, path: string, body?: unknown, expect?: number) {
  const res = await fetch(`http://cnm${path}`, {
    method,
    client,
    headers: body === undefined ? undefined : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (expect !== undefined && res.status !== expect) {
    throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  }
  return text ? JSON.parse(text) : undefined;
}

async function time(xs: number[], fn: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  await fn();
  xs.push(performance.now() - t0);
}

/** Runs `fn` over `items`, at most `width` at a time. */
async function pool<T, R>(items: T[], width: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

try {
  daemon = new Daemon([
    "--netns",
    host,
    "--prefix",
    prefix,
    "--state-dir",
    `${tmp}/state`,
    "--socket",
    socket,
    "--dns",
    "192.0.2.53",
  ]);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (daemon.exited) throw new Error(`the daemon exited (${daemon.exited.code})`);
    try {
      await api("GET", "/info", undefined, 200);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error("the daemon did not answer within 30 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  console.log(`cnm daemon in ${host}, state in ${tmp}/state; ${N} operations per figure`);
  console.log(`machine: ${await loadLine()}`);

  // Warm-up (not counted): the daemon's first calls compile code paths.
  await api("POST", "/networks", { name: "warm", subnet: "10.98.0.0/24" }, 201);
  for (let i = 0; i < 3; i++) {
    await api("POST", "/sandboxes", { name: `w${i}` }, 201);
    await api("POST", "/networks/warm/endpoints", { sandbox: `w${i}` }, 201);
    await api("DELETE", `/networks/warm/endpoints/w${i}`, undefined, 204);
    await api("DELETE", `/sandboxes/w${i}`, undefined, 204);
  }
  await api("DELETE", "/networks/warm", undefined, 204);

  const create: number[] = [], remove: number[] = [];
  const sbCreate: number[] = [], sbRemove: number[] = [];
  const connect: number[] = [], disconnect: number[] = [];
  for (let i = 0; i < N; i++) {
    const subnet = `10.${100 + Math.floor(i / 200)}.${i % 200}.0/24`;
    await time(create, () => api("POST", "/networks", { name: `n${i}`, subnet }, 201));
  }
  for (let i = 0; i < N; i++) {
    await time(remove, () => api("DELETE", `/networks/n${i}`, undefined, 204));
  }
  await api("POST", "/networks", { name: "web", subnet: "10.99.0.0/16" }, 201);
  for (let i = 0; i < N; i++) {
    await time(sbCreate, () => api("POST", "/sandboxes", { name: `s${i}` }, 201));
  }
  for (let i = 0; i < N; i++) {
    await time(connect, () => api("POST", "/networks/web/endpoints", { sandbox: `s${i}` }, 201));
  }
  for (let i = 0; i < N; i++) {
    await time(disconnect, () => api("DELETE", `/networks/web/endpoints/s${i}`, undefined, 204));
  }
  for (let i = 0; i < N; i++) {
    await time(sbRemove, () => api("DELETE", `/sandboxes/s${i}`, undefined, 204));
  }
  console.log("the same operations through Docker 20.10's Engine API (private dockerd) ...");
  const docker = await dockerFigures(N);
  if (!docker) console.log("  no dockerd on this machine: cnm's figures alone");
  report("network create", create, TARGET.create, docker?.create);
  report("network rm", remove, undefined, docker?.remove);
  report("sandbox create", sbCreate);
  report("connect", connect, TARGET.connect, docker?.connect);
  report("disconnect", disconnect, undefined, docker?.disconnect);
  report("sandbox rm", sbRemove);

  // 100 sandboxes on one network, created and connected one after the other, until every
  // one reaches the gateway (a sandbox that does not answer yet is tried again).
  const t0 = performance.now();
  const names: string[] = [];
  for (let i = 0; i < 100; i++) {
    const sb = await api("POST", "/sandboxes", { name: `t${i}` }, 201);
    await api("POST", "/networks/web/endpoints", { sandbox: `t${i}` }, 201);
    names.push(sb.netnsName);
  }
  const built = performance.now() - t0;
  let waiting = names;
  for (let round = 0; waiting.length > 0 && round < 5; round++) {
    const ok = await pool(waiting, 8, async (ns) => {
      const r = await sh(["nsenter", `--net=/run/netns/${ns}`, "ping", "-c1", "-W1", "10.99.0.1"]);
      return r.code === 0;
    });
    waiting = waiting.filter((_, i) => !ok[i]);
  }
  const total = performance.now() - t0;
  console.log(
    `100-sandbox build ${total.toFixed(0)} ms (create+connect ${built.toFixed(0)} ms, then ${
      100 - waiting.length
    }/100 reach the gateway)  target ${TARGET.build} ms: ${(total / TARGET.build).toFixed(2)}x`,
  );
  const t1 = performance.now();
  for (let i = 0; i < 100; i++) await api("DELETE", `/sandboxes/t${i}`, undefined, 204);
  console.log(`100-sandbox teardown ${(performance.now() - t1).toFixed(0)} ms`);
  await api("DELETE", "/networks/web", undefined, 204);

  // Scale: 1,000 sandboxes on one network. Does any operation cost O(endpoints)? Connect
  // p50 over the first 10, around the 100th and over the last 10.
  const SCALE = Number(Deno.env.get("CNM_BENCH_SCALE") ?? 1000);
  await api("POST", "/networks", { name: "scale", subnet: "10.96.0.0/16" }, 201);
  const scaleConnect: number[] = [];
  const s0 = performance.now();
  for (let i = 0; i < SCALE; i++) {
    await api("POST", "/sandboxes", { name: `x${i}` }, 201);
    await time(
      scaleConnect,
      () => api("POST", "/networks/scale/endpoints", { sandbox: `x${i}` }, 201),
    );
  }
  const scaleBuild = performance.now() - s0;
  const first = pct(scaleConnect.slice(0, 10), 50);
  const mid = pct(scaleConnect.slice(95, 105), 50);
  const last = pct(scaleConnect.slice(-10), 50);
  console.log(
    `${SCALE}-sandbox build ${(scaleBuild / 1000).toFixed(1)} s (target 15 s: ${
      (scaleBuild / 15000).toFixed(2)
    }x); connect p50 first 10 ${first.toFixed(1)} ms, around the 100th ${
      mid.toFixed(1)
    } ms, last 10 ${last.toFixed(1)} ms: ${(last / first).toFixed(2)}x the first (target <= 1.5x)`,
  );
  const s1 = performance.now();
  for (let i = 0; i < SCALE; i++) await api("DELETE", `/sandboxes/x${i}`, undefined, 204);
  console.log(`${SCALE}-sandbox teardown ${((performance.now() - s1) / 1000).toFixed(1)} s`);
  await api("DELETE", "/networks/scale", undefined, 204);
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? err.message : err}`);
  if (daemon) console.error(`daemon log:\n${daemon.log}`);
  Deno.exitCode = 1;
} finally {
  await daemon?.stop();
  client.close();
  await removeNetnsByPrefix(prefix);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const left = (await listNetns()).filter((n) => n.startsWith(prefix));
  if (left.length > 0) console.error(`left behind: ${left.join(", ")}`);
}
