/**
 * `deno task conformance`: until the full suite lands (issue 4), a smoke topology against
 * the reference implementation: two bridge networks with two sandboxes each, built in a
 * throwaway host namespace; reachability within each network, isolation across them
 * (ICMP, TCP, UDP, both directions), then removal with a leak audit of the machine.
 * The last line is `N passed, N failed, N skipped`; the exit code is non-zero on failure.
 * @module
 */
import pc from "picocolors";
import { openController } from "../mod.ts";
import { ensureMachine } from "../tools/preflight.ts";
import {
  addNetns,
  hostResidue,
  listNetns,
  must,
  ping,
  prefixResidue,
  removeNetnsByPrefix,
  tcpReach,
  testPrefix,
  udpReach,
} from "../testing/mod.ts";

interface Verdict {
  id: string;
  ok: boolean;
  detail: string;
  ms: number;
}

const results: Verdict[] = [];
async function check(id: string, fn: () => Promise<string | true>): Promise<void> {
  const t0 = performance.now();
  let ok = false, detail = "";
  try {
    const r = await fn();
    ok = r === true;
    detail = r === true ? "" : r;
  } catch (err) {
    detail = err instanceof Error ? err.message : String(err);
  }
  const ms = performance.now() - t0;
  results.push({ id, ok, detail, ms });
  const verdict = ok ? pc.green("PASS") : pc.red("FAIL");
  console.log(`${verdict} ${id.padEnd(44)} ${pc.dim(`${ms.toFixed(0)} ms`)}`);
  if (!ok) console.log(`     ${detail}`);
}

async function rootState(): Promise<string[]> {
  const links = JSON.parse(await must(["ip", "-j", "link", "show"])) as { ifname: string }[];
  const tables = (await must(["nft", "list", "tables"])).split("\n").filter(Boolean);
  return [
    ...links.map((l) => `link ${l.ifname}`),
    ...tables,
    ...(await listNetns()).map((n) => `netns ${n}`),
  ];
}

try {
  await ensureMachine(true);
} catch (err) {
  console.error(`cnm conformance: ${err instanceof Error ? err.message : err}`);
  console.log("0 passed, 1 failed, 0 skipped");
  Deno.exit(1);
}

const started = performance.now();
const before = await rootState();
const prefix = testPrefix();
const host = `${prefix}-host`;
console.log(pc.bold(`cnm smoke topology against the reference (run ${prefix})`));
await addNetns(host);
const ctl = await openController({ hostNetns: host, prefix, stateDir: ":memory:" });
try {
  const sb: Record<string, { ns: string; ip: string }> = {};
  await check("topology.build", async () => {
    await ctl.createNetwork({ name: "red", subnet: "10.201.0.0/24" });
    await ctl.createNetwork({ name: "blue", subnet: "10.202.0.0/24" });
    for (const [name, net] of [["r1", "red"], ["r2", "red"], ["b1", "blue"], ["b2", "blue"]]) {
      const s = await ctl.createSandbox({ name });
      const ep = await ctl.connect(net, name);
      sb[name] = { ns: s.netnsName, ip: ep.ipv4!.split("/")[0] };
    }
    return true;
  });
  const expect = (got: boolean, want: boolean, what: string) =>
    got === want
      ? true as const
      : `expected ${what} to ${want ? "succeed" : "fail"}, it ${got ? "succeeded" : "failed"}`;
  await check(
    "conn.same-network.icmp",
    async () =>
      expect(await ping(sb.r1.ns, sb.r2.ip) && await ping(sb.b2.ns, sb.b1.ip), true, "ping within"),
  );
  await check(
    "conn.same-network.tcp",
    async () =>
      expect(await tcpReach(sb.r2.ns, sb.r1.ns, sb.r1.ip, 8080), true, "r2 -> r1 tcp/8080"),
  );
  await check(
    "conn.same-network.udp",
    async () =>
      expect(await udpReach(sb.b1.ns, sb.b2.ns, sb.b2.ip, 5353), true, "b1 -> b2 udp/5353"),
  );
  await check("iso.inter-network.icmp", async () => {
    const r = await Promise.all([ping(sb.r1.ns, sb.b1.ip), ping(sb.b2.ns, sb.r2.ip)]);
    return expect(r.some(Boolean), false, "ping across networks");
  });
  await check("iso.inter-network.tcp", async () => {
    const r = await Promise.all([
      tcpReach(sb.r1.ns, sb.b1.ns, sb.b1.ip, 8081),
      tcpReach(sb.b2.ns, sb.r2.ns, sb.r2.ip, 8082),
    ]);
    return expect(r.some(Boolean), false, "tcp across networks");
  });
  await check("iso.inter-network.udp", async () => {
    const r = await Promise.all([
      udpReach(sb.r2.ns, sb.b2.ns, sb.b2.ip, 5354),
      udpReach(sb.b1.ns, sb.r1.ns, sb.r1.ip, 5355),
    ]);
    return expect(r.some(Boolean), false, "udp across networks");
  });
  await check("lifecycle.teardown-leaves-nothing", async () => {
    for (const n of ["r1", "r2", "b1", "b2"]) await ctl.removeSandbox(n);
    await ctl.removeNetwork("red");
    await ctl.removeNetwork("blue");
    const left = [...(await hostResidue(host)), ...(await prefixResidue(prefix, [host]))];
    return left.length === 0 ? true : `left behind: ${left.join(", ")}`;
  });
} finally {
  await ctl.close();
  await removeNetnsByPrefix(prefix);
}
await check("audit.machine-unchanged", async () => {
  const after = await rootState();
  const added = after.filter((x) => !before.includes(x));
  return added.length === 0 ? true : `residue: ${added.join(", ")}`;
});

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(pc.dim(`wall time ${((performance.now() - started) / 1000).toFixed(1)} s`));
console.log(`${passed} passed, ${failed} failed, 0 skipped`);
Deno.exit(failed > 0 ? 1 : 0);
