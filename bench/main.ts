/**
 * `deno task bench`: latency of the controller's operations on real kernel objects in a
 * throwaway host namespace. Prints figures and ratios against the targets; never fails on
 * time (benchmarks measure, tests assert behaviour).
 *
 * Targets (issue 3, 2-core machine): connect p50 <= 10 ms, network create <= 20 ms,
 * 100 sandboxes on one network built until all reach the gateway <= 2 s. Docker 20.10's
 * Engine API measured here: 34 ms per connect (p50), 50 ms per disconnect, 74 ms per create.
 * @module
 */
import { openController } from "../mod.ts";
import { ensureMachine } from "../tools/preflight.ts";
import { addNetns, removeNetnsByPrefix, sh, testPrefix } from "../testing/mod.ts";

const N = Number(Deno.env.get("CNM_BENCH_N") ?? 50);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function report(label: string, xs: number[], target?: number, docker?: number) {
  const p50 = pct(xs, 50), p95 = pct(xs, 95);
  const parts = [
    `${label.padEnd(20)} p50 ${p50.toFixed(1).padStart(6)} ms  p95 ${
      p95.toFixed(1).padStart(6)
    } ms  (n=${xs.length})`,
  ];
  if (target) parts.push(`target ${target} ms: ${(p50 / target).toFixed(2)}x`);
  if (docker) parts.push(`Docker 20.10 ${docker} ms: ${(p50 / docker).toFixed(2)}x`);
  console.log(parts.join("  "));
}

async function time<T>(xs: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  xs.push(performance.now() - t0);
  return r;
}

await ensureMachine(true);
const prefix = testPrefix();
const host = `${prefix}-host`;
await addNetns(host);
const ctl = await openController({ hostNetns: host, prefix, stateDir: ":memory:" });
try {
  const create: number[] = [],
    remove: number[] = [],
    connect: number[] = [],
    disconnect: number[] = [];
  for (let i = 0; i < N; i++) {
    await time(
      create,
      () =>
        ctl.createNetwork({
          name: `n${i}`,
          subnet: `10.${100 + Math.floor(i / 200)}.${i % 200}.0/24`,
        }),
    );
  }
  for (let i = 0; i < N; i++) await time(remove, () => ctl.removeNetwork(`n${i}`));
  await ctl.createNetwork({ name: "web", subnet: "10.99.0.0/16" });
  for (let i = 0; i < N; i++) await ctl.createSandbox({ name: `s${i}` });
  for (let i = 0; i < N; i++) await time(connect, () => ctl.connect("web", `s${i}`));
  for (let i = 0; i < N; i++) await time(disconnect, () => ctl.disconnect("web", `s${i}`));
  for (let i = 0; i < N; i++) await ctl.removeSandbox(`s${i}`);
  report("network create", create, 20, 74);
  report("network rm", remove);
  report("connect", connect, 10, 34);
  report("disconnect", disconnect, undefined, 50);

  // 100 sandboxes on one network, until every one reaches the gateway
  const t0 = performance.now();
  const names: string[] = [];
  for (let i = 0; i < 100; i++) {
    const s = await ctl.createSandbox({ name: `t${i}` });
    await ctl.connect("web", `t${i}`);
    names.push(s.netnsName);
  }
  const pings = await Promise.all(
    names.map((ns) => sh(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", "10.99.0.1"])),
  );
  const total = performance.now() - t0;
  const reached = pings.filter((p) => p.code === 0).length;
  console.log(
    `100-sandbox build    ${
      total.toFixed(0)
    } ms, ${reached}/100 reach the gateway  target 2000 ms: ${(total / 2000).toFixed(2)}x`,
  );
} finally {
  await ctl.close();
  await removeNetnsByPrefix(prefix);
}
