/**
 * Throwaway hosts: a namespace per host, linked by a veth pair to its own "outside"
 * namespace, which plays the external world (documentation range 198.51.100.0/24, as
 * DESIGN.md's network safety rules ask). The host's default route points there, so egress
 * and masquerade can be observed without ever touching the machine's real uplink.
 * @module
 */
import type { Host } from "../impl.ts";
import { type Responders, startResponders } from "../probes/mod.ts";
import { etcdProcessesOf, RUN_DIR } from "./audit.ts";
import { exec, run } from "./exec.ts";
import type { Underlay, UnderlayHost } from "./underlay.ts";

/**
 * Host side and outside side of the "outside" link. The host has a second address on it
 * (`hostAlt`), for ports published on one specific host address. The world has a route
 * back to 10.0.0.0/8 (the cases' subnets) through the host, so traffic that leaves the host
 * without masquerade is still answered and seen: egress cases observe the source address
 * the world sees, and internal-network cases see un-NATed leaks.
 */
export const OUTSIDE = {
  host: "198.51.100.1/24",
  hostAlt: "198.51.100.3/24",
  world: "198.51.100.2/24",
  routeBack: "10.0.0.0/8",
} as const;

/** Ports of the harness's own responders (host namespace, world, LAN machine). */
export const HARNESS_PORTS = { tcp: 8080, udp: 5353 } as const;

/**
 * The "LAN": a layer-2 segment behind the host's `lan0` (a veth end with no address, the
 * parent for macvlan networks), with one other machine on it, in its own namespace.
 * 192.0.2.0/24 is a documentation range.
 */
export const LAN = {
  parent: "lan0",
  subnet: "192.0.2.0/24",
  gateway: "192.0.2.1",
  peer: "192.0.2.254/24",
} as const;

/** What the stub upstream DNS server in the external world answers. */
export const UPSTREAM_RECORDS: Record<string, string> = {
  "www.example.test": "203.0.113.10",
  "api.example.test": "203.0.113.11",
};

/** A host the harness made, with its outside namespace. */
export interface HarnessHost extends Host {
  /** The external-world namespace linked to this host. */
  outsideNetns: string;
  outsideNetnsPath: string;
  /** The stub upstream DNS server's process (in the outside namespace). */
  dnsStub?: Deno.ChildProcess;
  /** The LAN machine's namespace (peer of the host's `lan0`). */
  lanNetns: string;
  lanNetnsPath: string;
  /**
   * The harness's own TCP/UDP responders ({@linkcode HARNESS_PORTS}) in the host namespace
   * (identity `host`), the world (`world`) and the LAN machine (`lan-host`): targets for
   * egress checks and for positive controls.
   */
  responders: Responders[];
  /** For a host of a multi-host underlay: that underlay (store outage, host links). */
  cluster?: Underlay;
}

/** Starts the stub upstream resolver on the world side of the outside link. */
async function startDnsStub(outsideNetnsPath: string, ip: string): Promise<Deno.ChildProcess> {
  const stub = new URL("./dns_stub.ts", import.meta.url).pathname;
  const child = new Deno.Command("nsenter", {
    args: [
      `--net=${outsideNetnsPath}`,
      Deno.execPath(),
      "run",
      "--no-config",
      "--unstable-net",
      "--allow-net",
      stub,
      ip,
      "53",
      ...Object.entries(UPSTREAM_RECORDS).map(([n, a]) => `${n}=${a}`),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await exec([
      "nsenter",
      `--net=${outsideNetnsPath}`,
      "dig",
      "+tries=1",
      "+time=1",
      `@${ip}`,
      "www.example.test",
      "+short",
    ]);
    if (r.stdout.trim()) return child;
    await new Promise((res) => setTimeout(res, 50));
  }
  try {
    child.kill("SIGKILL");
  } catch { /* gone */ }
  await child.status;
  throw new Error("the stub upstream DNS server did not start");
}

/** Stops a host's helper processes (the DNS stub). */
export async function stopHost(host: HarnessHost): Promise<void> {
  for (const r of host.responders.splice(0)) await r.stop().catch(() => {});
  if (!host.dnsStub) return;
  try {
    host.dnsStub.kill("SIGTERM");
  } catch { /* gone */ }
  await host.dnsStub.status;
  host.dnsStub = undefined;
}

/** Creates a namespace with loopback up. */
export async function addNetns(name: string): Promise<void> {
  await run(["ip", "netns", "add", name]);
  await run(["ip", "-n", name, "link", "set", "lo", "up"]);
}

/**
 * Creates host `name` of run `prefix`: `<prefix>-<name>` and `<prefix>-<name>-out`. With
 * `on`, the host namespace is an underlay's host (made already, and removed with the
 * underlay): the host gets its outside and LAN links there, and the underlay's addresses.
 */
export async function createHost(
  prefix: string,
  name: string,
  on?: { cluster: Underlay; host: UnderlayHost },
): Promise<HarnessHost> {
  const netns = on?.host.netns ?? `${prefix}-${name}`;
  const outside = `${prefix}-${name}-out`;
  const stateDir = await Deno.makeTempDir({ prefix: `${prefix}-${name}-` });
  if (!on) await addNetns(netns);
  await addNetns(outside);
  const gw = OUTSIDE.world.split("/")[0];
  await run([
    "ip",
    "link",
    "add",
    "name",
    "out0",
    "netns",
    netns,
    "type",
    "veth",
    "peer",
    "name",
    "world0",
    "netns",
    outside,
  ]);
  await run(
    ["ip", "-n", netns, "-batch", "-"],
    `addr add ${OUTSIDE.host} dev out0\naddr add ${OUTSIDE.hostAlt} dev out0\n` +
      `link set out0 up\nroute add default via ${gw}\n`,
  );
  await run(
    ["ip", "-n", outside, "-batch", "-"],
    `addr add ${OUTSIDE.world} dev world0\nlink set world0 up\n` +
      `route add ${OUTSIDE.routeBack} via ${OUTSIDE.host.split("/")[0]}\n`,
  );
  // the LAN: lan0 in the host (no address: a macvlan parent), eth0 in the LAN machine
  const lan = `${prefix}-${name}-lan`;
  await addNetns(lan);
  await run([
    "ip",
    "link",
    "add",
    "name",
    LAN.parent,
    "netns",
    netns,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    lan,
  ]);
  await run(["ip", "-n", netns, "link", "set", LAN.parent, "up"]);
  await run(["ip", "-n", lan, "-batch", "-"], `addr add ${LAN.peer} dev eth0\nlink set eth0 up\n`);
  const world = OUTSIDE.world.split("/")[0];
  const dnsStub = await startDnsStub(`/run/netns/${outside}`, world);
  const ports = { tcp: [HARNESS_PORTS.tcp], udp: [HARNESS_PORTS.udp] };
  const responders = await Promise.all([
    startResponders(`/run/netns/${netns}`, "host", ports),
    startResponders(`/run/netns/${outside}`, "world", ports),
    startResponders(`/run/netns/${lan}`, "lan-host", ports),
  ]);
  return {
    name,
    netns,
    netnsPath: `/run/netns/${netns}`,
    // per host, so two implementations' daemons never claim each other's objects
    prefix: netns,
    addresses: {
      outside: OUTSIDE.host,
      outsideAlt: OUTSIDE.hostAlt,
      lanParent: LAN.parent,
      lanPeer: LAN.peer,
    },
    dnsUpstreams: [world],
    stateDir,
    outsideNetns: outside,
    outsideNetnsPath: `/run/netns/${outside}`,
    dnsStub,
    lanNetns: lan,
    lanNetnsPath: `/run/netns/${lan}`,
    responders,
    ...(on
      ? {
        underlay: { address: on.host.address, store: on.cluster.storeUrl },
        cluster: on.cluster,
      }
      : {}),
  };
}

/** Names under /run/netns. */
export function listNetns(): Promise<string[]> {
  return entryNames("/run/netns");
}

async function entryNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch { /* none yet */ }
  return names.sort();
}

/**
 * Removes everything of a run (or of every run, with the bare `cnmt-` prefix): processes
 * inside its namespaces first, then the namespaces, etcd processes on the run's data dirs,
 * mounts under the run's temp dirs (a killed dockerd's), prefix locks in /run/cnm whose
 * daemon is gone, the /etc/netns directories and the state directories under the temp dir.
 * Returns what it removed.
 */
export async function removeByPrefix(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await listNetns()) {
    if (!name.startsWith(prefix)) continue;
    const pids = await exec(["ip", "netns", "pids", name]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    const r = await exec(["ip", "netns", "del", name]);
    if (r.code === 0) removed.push(`netns ${name}`);
  }
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  // an underlay's etcd whose namespace is gone by name: it still runs (and keeps that
  // namespace alive), on a data dir about to be removed
  for (const p of await etcdProcessesOf(prefix, tmp)) {
    try {
      Deno.kill(p.pid, "SIGKILL");
      removed.push(`process ${p.pid} etcd --data-dir ${p.dataDir}`);
    } catch { /* gone */ }
  }
  // a killed dockerd leaves its overlay and nsfs mounts under its data dir in tmp: they
  // go first (deepest first, lazily), else the dir cannot be removed
  const mounts = (await Deno.readTextFile("/proc/self/mounts").catch(() => ""))
    .split("\n").map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(`${tmp.replace(/\/$/, "")}/${prefix}`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    if ((await exec(["umount", "-l", m])).code === 0) removed.push(`mount ${m}`);
  }
  // prefix locks of killed daemons (pid, then state dir); one whose daemon lives stays
  for (const name of await entryNames(RUN_DIR)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(
      (await Deno.readTextFile(`${RUN_DIR}/${name}`).catch(() => "")).split("\n")[0],
    );
    if (pid > 0 && await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) continue;
    await Deno.remove(`${RUN_DIR}/${name}`).catch(() => {});
    removed.push(`${RUN_DIR}/${name}`);
  }
  for (const dir of ["/etc/netns", tmp]) {
    try {
      for await (const e of Deno.readDir(dir)) {
        if (!e.name.startsWith(prefix)) continue;
        await Deno.remove(`${dir}/${e.name}`, { recursive: true }).catch(() => {});
        removed.push(`${dir}/${e.name}`);
      }
    } catch { /* missing dir */ }
  }
  return removed;
}
