/**
 * Load-balancing benchmark (issue 8): new TCP connections per second through a service's
 * VIP against the same directly to a backend address, in one run, and the time from
 * `service add` to the new backend receiving traffic. Runs a controller in-process on a
 * throwaway host namespace; clients and servers are small python3 loops inside the sandboxes
 * (one process per measurement, so process start-up does not count). Removes everything in
 * `finally`. Targets: VIP >= 90 % of direct; add-to-traffic p50 <= 20 ms.
 *
 * `deno run -A bench/lb_bench.ts` (root). `CNM_BENCH_SECONDS` sets each rate's duration (3).
 * @module
 */
import { openController } from "../mod.ts";
import { addNetns, removeNetnsByPrefix, testPrefix } from "../testing/mod.ts";

const SECONDS = Number(Deno.env.get("CNM_BENCH_SECONDS") ?? 3);
const PORT = 7100;

const SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", ${PORT})); s.listen(512)
name = sys.argv[1].encode()
while True:
    c, _ = s.accept(); c.sendall(name); c.close()
`;

const CLIENT = `
import socket, sys, time
ip, secs = sys.argv[1], float(sys.argv[2])
n = fail = 0; end = time.time() + secs
while time.time() < end:
    try:
        c = socket.create_connection((ip, ${PORT}), timeout=1); c.recv(64); c.close(); n += 1
    except OSError:
        fail += 1
print(n / secs, fail)
`;

/** Polls until one connection answers; prints the wall-clock ms (epoch) of that answer. */
const FIRST = `
import socket, sys, time
ip = sys.argv[1]; t0 = time.time()
while time.time() - t0 < 3:
    try:
        c = socket.create_connection((ip, ${PORT}), timeout=0.2); c.recv(64); c.close(); break
    except OSError:
        time.sleep(0.0002)
print(time.time() * 1000)
`;

async function py(netns: string, script: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", netns, "python3", "-c", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const prefix = testPrefix();
const host = `${prefix}-host`;
const servers: Deno.ChildProcess[] = [];
await addNetns(host);
const ctl = await openController({ hostNetns: host, prefix, stateDir: ":memory:" });
try {
  await ctl.createNetwork({ name: "bench", subnet: "10.240.0.0/24" });
  const client = await ctl.createSandbox({ name: "client" });
  await ctl.connect("bench", "client");
  const ns: string[] = [], ips: string[] = [];
  for (let i = 0; i < 3; i++) {
    const sb = await ctl.createSandbox({ name: `be${i}` });
    const ep = await ctl.connect("bench", sb.name);
    ns.push(sb.netnsName);
    ips.push(ep.ipv4!.split("/")[0]);
    servers.push(
      new Deno.Command("ip", {
        args: ["netns", "exec", sb.netnsName, "python3", "-c", SERVER, sb.name],
        stdout: "null",
        stderr: "null",
      }).spawn(),
    );
  }
  const svc = await ctl.createService({ name: "svc", network: "bench", ports: [{ port: PORT }] });
  for (let i = 0; i < 3; i++) await ctl.addBackend("svc", `be${i}`);
  await py(client.netnsName, FIRST, ips[0]);

  const [direct, dFail] = (await py(client.netnsName, CLIENT, ips[0], String(SECONDS)))
    .split(" ").map(Number);
  const [vip, vFail] = (await py(client.netnsName, CLIENT, svc.vip!, String(SECONDS)))
    .split(" ").map(Number);
  console.log(
    `new TCP connections/s: direct ${direct.toFixed(0)} (${dFail} failed), VIP ${
      vip.toFixed(0)
    } (${vFail} failed): ${(100 * vip / direct).toFixed(1)} % of direct (target >= 90 %)`,
  );

  // service add → traffic: a service with no backend, add one, poll until it answers
  const addMs: number[] = [], trafficMs: number[] = [];
  const empty = await ctl.createService({
    name: "late",
    network: "bench",
    ports: [{ port: PORT }],
  });
  for (let i = 0; i < 20; i++) {
    const poller = py(client.netnsName, FIRST, empty.vip!);
    await new Promise((r) => setTimeout(r, 150)); // the poller is running (and refused)
    const t0 = performance.now(), wall0 = Date.now();
    await ctl.addBackend("late", "be1");
    addMs.push(performance.now() - t0);
    trafficMs.push(Number(await poller) - wall0);
    await ctl.removeBackend("late", "be1");
  }
  console.log(
    `service add API call p50 ${pct(addMs, 50).toFixed(1)} ms p95 ${pct(addMs, 95).toFixed(1)} ms`,
  );
  console.log(
    `service add -> new backend answers: p50 ${pct(trafficMs, 50).toFixed(1)} ms p95 ${
      pct(trafficMs, 95).toFixed(1)
    } ms (target p50 <= 20 ms)`,
  );
} finally {
  for (const s of servers) {
    try {
      s.kill("SIGKILL");
    } catch { /* gone */ }
    await s.status;
  }
  await ctl.close();
  await removeNetnsByPrefix(prefix);
}
