/**
 * Soak (issue 14): 2,000 connect/disconnect cycles against one real `cnm daemon` in a
 * throwaway host namespace. Every 100 cycles it samples the daemon's resident memory
 * (VmRSS) and open file descriptors (/proc/PID/fd); after a warm-up of 200 cycles both must
 * stay within 10 % of their level then. It prints the samples and the drift, and checks that
 * nothing is left in the kernel afterwards. A benchmark: it reports, and exits non-zero
 * only when the daemon leaks (drift over 10 %, or residue), never on time.
 *
 * `CNM_SOAK_CYCLES` sets the number of cycles (default 2000).
 * @module
 */
import { hostResidue, prefixResidue, removeNetnsByPrefix, testPrefix } from "../testing/mod.ts";
import { DaemonProcess, throwawayDaemonArgs, UnixApi } from "../testing/daemon_process.ts";

const CYCLES = Math.max(300, Number(Deno.env.get("CNM_SOAK_CYCLES") ?? 2000));
const WARMUP = 200;
const EVERY = 100;

/** The daemon's resident memory (KiB) and open descriptors. */
async function sample(pid: number): Promise<{ rssKiB: number; fds: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  let fds = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) fds++;
  return { rssKiB, fds };
}

const prefix = testPrefix();
const host = `${prefix}-host`;
const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
const socket = `${tmp}/cnm.sock`;
const client = new UnixApi(socket);
const daemon = new DaemonProcess(
  throwawayDaemonArgs({ host, prefix, socket, stateDir: `${tmp}/state` }),
);
const call = (method: string, path: string, body?: unknown) => client.ok(method, path, body);
let failed = false;
try {
  await daemon.ready(client);
  const pid = daemon.child.pid;
  await call("POST", "/networks", { name: "soak", subnet: "10.97.0.0/24" });
  for (const name of ["a", "b"]) await call("POST", "/sandboxes", { name });
  await call("POST", "/networks/soak/endpoints", { sandbox: "b" });
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
  console.log(`soak: ${CYCLES} connect/disconnect cycles, daemon pid ${pid}, load ${load}`);
  const samples: { cycle: number; rssKiB: number; fds: number }[] = [];
  const started = performance.now();
  for (let i = 1; i <= CYCLES; i++) {
    await call("POST", "/networks/soak/endpoints", { sandbox: "a" });
    await call("DELETE", "/networks/soak/endpoints/a");
    if (i % EVERY === 0) samples.push({ cycle: i, ...(await sample(pid)) });
  }
  const seconds = (performance.now() - started) / 1000;
  const base = samples.find((s) => s.cycle === WARMUP)!;
  const after = samples.filter((s) => s.cycle >= WARMUP);
  const drift = (f: (s: typeof base) => number) =>
    Math.max(...after.map((s) => Math.abs(f(s) - f(base)) / f(base)));
  const rssDrift = drift((s) => s.rssKiB);
  const fdDrift = drift((s) => s.fds);
  console.log(
    `soak: ${seconds.toFixed(1)} s (${(CYCLES / seconds).toFixed(0)} cycles/s); samples ` +
      samples.map((s) => `${s.cycle}: ${(s.rssKiB / 1024).toFixed(1)} MiB ${s.fds} fds`)
        .join(", "),
  );
  console.log(
    `soak: after the ${WARMUP}-cycle warm-up RSS ${(base.rssKiB / 1024).toFixed(1)} MiB, ` +
      `drift ${(rssDrift * 100).toFixed(1)} % (limit 10 %); fds ${base.fds}, drift ${
        (fdDrift * 100).toFixed(1)
      } % (limit 10 %)`,
  );
  if (rssDrift > 0.1 || fdDrift > 0.1) {
    failed = true;
    console.log("soak: LEAK: a figure drifted more than 10 %");
  }
  for (const s of ["a", "b"]) await call("DELETE", `/sandboxes/${s}`);
  await call("DELETE", "/networks/soak");
  const residue = await hostResidue(host);
  if (residue.length > 0) {
    failed = true;
    console.log(`soak: LEFT in the host: ${residue.join(", ")}`);
  } else {
    console.log("soak: nothing left in the host namespace");
  }
} catch (err) {
  failed = true;
  console.log(`soak failed: ${err instanceof Error ? err.message : err}`);
  console.log(`daemon log:\n${daemon.log.slice(-2000)}`);
} finally {
  await daemon.stop();
  client.close();
  await removeNetnsByPrefix(prefix);
  await Deno.remove(`/run/cnm/${prefix}.lock`).catch(() => {});
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const left = await prefixResidue(prefix);
  if (left.length > 0) {
    failed = true;
    console.log(`soak: LEFT: ${left.join(", ")}`);
  }
}
Deno.exit(failed ? 1 : 0);
