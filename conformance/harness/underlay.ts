/**
 * A multi-host underlay for the overlay driver's tests and the suite: host namespaces on
 * one layer-2 segment (a bridge in a namespace of its own), and a store namespace on the
 * same segment running a real etcd (Debian's etcd-server 3.4). Everything lives in
 * throwaway namespaces named `<prefix>-...`, in the documentation range 203.0.113.0/24 (the
 * underlay, as DESIGN.md's network safety rules ask); the root namespace's networking is
 * never touched (veth pairs are made inside the underlay namespace, their peers moved
 * straight into the host's).
 *
 * ```text
 * <prefix>-h1  ul0 203.0.113.1/24 ──┐
 * <prefix>-h2  ul0 203.0.113.2/24 ──┤ ul1, ul2, ulst on bridge ul0 in <prefix>-ul
 * <prefix>-st  ul0 203.0.113.254/24 ┘ etcd on :2379 (client), 127.0.0.1:2380 (peer)
 * ```
 *
 * ```ts
 * await using ul = await createUnderlay({ prefix: "cnmt-1a2b3c", hosts: 2 });
 * // ip netns exec cnmt-1a2b3c-h1 etcdctl --endpoints http://203.0.113.254:2379 get k
 * ```
 *
 * etcd's data and log live in `/tmp/<prefix>-etcd-XXXX`, so the leak audit (a `tmp` item,
 * a process whose command line has the prefix) and the forced clean-up by prefix find them.
 * @module
 */
import { exec, run } from "./exec.ts";

/** The underlay's addressing and names. */
export const UNDERLAY = {
  subnet: "203.0.113.0/24",
  prefixLen: 24,
  /** The store's address; hosts are .1, .2, ... */
  store: "203.0.113.254",
  clientPort: 2379,
  /** etcd's peer port, on the store's loopback (a single-member cluster). */
  peerPort: 2380,
  /** The bridge in the underlay namespace. */
  bridge: "ul0",
  /** The underlay link's name inside each host (and the store). */
  link: "ul0",
  /** Most hosts one underlay has (.1 to .253). */
  maxHosts: 253,
} as const;

/** How long etcd may take to answer after a start. */
const STORE_READY_MS = 10_000;
/** How long etcd may take to exit after SIGTERM before it gets SIGKILL. */
const STORE_STOP_MS = 2_000;

/** One host of an underlay. */
export interface UnderlayHost {
  /** `h1`, `h2`, ... */
  name: string;
  /** `<prefix>-h1`, ... */
  netns: string;
  /** Its underlay address, without the prefix length (`203.0.113.1`). */
  address: string;
}

/** What etcd reported about itself (`etcdctl endpoint status`). */
export interface StoreStatus {
  endpoint: string;
  /** etcd's version (`3.4.23`). */
  version: string;
  /** The cluster id, as decimal digits (a uint64: kept as text, not a lossy number). */
  clusterId: string;
}

/** A running underlay; disposing it removes everything it made. */
export interface Underlay extends AsyncDisposable {
  /** Prefix used for every name. */
  readonly prefix: string;
  /** The underlay namespace holding the bridge. */
  readonly netns: string;
  /** Host namespaces, in order, with their underlay address (no prefix length). */
  readonly hosts: UnderlayHost[];
  /** etcd's client URL, `http://203.0.113.254:2379`. */
  readonly storeUrl: string;
  /** The store namespace (it exists even while etcd is stopped). */
  readonly storeNetns: string;
  /** Every namespace the underlay made (for audits' allow lists). */
  readonly namespaces: string[];
  /** The temp dir holding etcd's data dir and log (`/tmp/<prefix>-etcd-XXXX`). */
  readonly dir: string;
  /** etcd's log file (both runs when restarted). */
  readonly storeLog: string;
  /** etcd's pid while it runs (for audits' exclude lists), else undefined. */
  readonly storePid: number | undefined;
  /** Asks etcd for its status from the store namespace; throws when it does not answer. */
  storeStatus(): Promise<StoreStatus>;
  /** Stops etcd and waits for it to exit (the data dir stays): a store outage. */
  stopStore(): Promise<void>;
  /** Starts etcd again on the same data dir and waits until it answers. */
  startStore(): Promise<void>;
  /** Takes one host's underlay link down or up (`h1` or its namespace): a dead machine. */
  setHostLink(host: string, up: boolean): Promise<void>;
}

/** Options of {@linkcode createUnderlay}. */
export interface UnderlayOptions {
  /** Names start with it (`cnmt-1a2b3c`, or a sub-prefix of a run's). */
  prefix: string;
  /** How many hosts, 1 to {@linkcode UNDERLAY.maxHosts}. */
  hosts: number;
  /** Start etcd at once (default true); otherwise only with `startStore()`. */
  withStore?: boolean;
  log?: (s: string) => void;
}

// ---------------------------------------------------------------------------------------
// pure parts

/** Host `i`'s underlay address (1-based). */
export function hostAddress(i: number): string {
  if (!Number.isInteger(i) || i < 1 || i > UNDERLAY.maxHosts) {
    throw new RangeError(`no underlay address for host ${i} (1 to ${UNDERLAY.maxHosts})`);
  }
  return `203.0.113.${i}`;
}

/** A namespace member of the segment: its namespace, address and bridge port. */
export interface SegmentMember {
  netns: string;
  address: string;
  /** The veth end on the bridge, in the underlay namespace. */
  port: string;
}

/** The names an underlay uses, and its members in creation order (hosts, then the store). */
export function underlayNames(prefix: string, hosts: number): {
  netns: string;
  store: SegmentMember;
  hosts: (UnderlayHost & SegmentMember)[];
} {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(prefix) || prefix.length > 200) {
    throw new TypeError(`invalid underlay prefix ${JSON.stringify(prefix)}`);
  }
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > UNDERLAY.maxHosts) {
    throw new RangeError(`an underlay has 1 to ${UNDERLAY.maxHosts} hosts, not ${hosts}`);
  }
  return {
    netns: `${prefix}-ul`,
    store: { netns: `${prefix}-st`, address: UNDERLAY.store, port: "ulst" },
    hosts: Array.from({ length: hosts }, (_, k) => ({
      name: `h${k + 1}`,
      netns: `${prefix}-h${k + 1}`,
      address: hostAddress(k + 1),
      port: `ul${k + 1}`,
    })),
  };
}

/** etcd's client URL on the underlay. */
export const STORE_URL = `http://${UNDERLAY.store}:${UNDERLAY.clientPort}`;

/**
 * The argv that runs etcd in the store namespace: one member, clients on the underlay
 * address, the peer port on loopback, and the v2 API (Docker 20.10's classic overlay uses it).
 */
export function etcdArgv(storeNetns: string, dataDir: string): string[] {
  const peer = `http://127.0.0.1:${UNDERLAY.peerPort}`;
  return [
    "ip",
    "netns",
    "exec",
    storeNetns,
    "etcd",
    "--name",
    "s1",
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    STORE_URL,
    "--advertise-client-urls",
    STORE_URL,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `s1=${peer}`,
    // the cluster id derives from it: each underlay's store is told apart by its id
    "--initial-cluster-token",
    storeNetns,
    "--enable-v2=true",
  ];
}

/**
 * The argv that runs `etcdctl ARGS` (API v3) inside `netns` against `endpoint`, with short
 * timeouts: a store that is down fails in about a second instead of hanging.
 */
export function etcdctlArgv(netns: string, endpoint: string, args: string[]): string[] {
  return [
    "ip",
    "netns",
    "exec",
    netns,
    "etcdctl",
    "--endpoints",
    endpoint,
    "--dial-timeout=1s",
    "--command-timeout=2s",
    ...args,
  ];
}

/**
 * `etcdctl endpoint status -w json` → the first endpoint's status. Throws unless it is
 * etcd's answer (an endpoint with a version and a cluster id): a proxy or an empty `[]`
 * is not a store. The ids are read from the text, since they do not fit a double.
 */
export function parseEndpointStatus(json: string): StoreStatus {
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch {
    throw new Error(`not etcd's endpoint status: ${JSON.stringify(json.slice(0, 80))}`);
  }
  const first = Array.isArray(list) ? list[0] : undefined;
  const version = first?.Status?.version;
  const clusterId = /"cluster_id"\s*:\s*(\d+)/.exec(json)?.[1];
  if (typeof first?.Endpoint !== "string" || typeof version !== "string" || !clusterId) {
    throw new Error(`not etcd's endpoint status: ${JSON.stringify(json.slice(0, 80))}`);
  }
  return { endpoint: first.Endpoint, version, clusterId };
}

/** The last `n` non-empty lines of a log, joined on one line (for one-line errors). */
export function logTail(text: string, n = 3): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean).slice(-n);
  return lines.length ? lines.join(" | ").slice(-600) : "(empty)";
}

// ---------------------------------------------------------------------------------------
// kernel side

/** Names under /run/netns. */
async function listNetns(): Promise<Set<string>> {
  const names = new Set<string>();
  try {
    for await (const e of Deno.readDir("/run/netns")) names.add(e.name);
  } catch { /* none yet */ }
  return names;
}

/** The environment without etcd's own variables (etcd 3.4 refuses a flag shadowing one). */
function etcdEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !/^ETCD(CTL)?_/.test(k)),
  );
}

/** A running etcd: the child and the pumps copying its output to the log. */
interface StoreProcess {
  child: Deno.ChildProcess;
  exited: Promise<Deno.CommandStatus>;
  done: boolean;
  pumps: Promise<void>;
}

class UnderlayHandle implements Underlay {
  readonly netns: string;
  readonly hosts: UnderlayHost[];
  readonly storeUrl = STORE_URL;
  readonly storeNetns: string;
  readonly namespaces: string[] = [];
  dir = "";
  #members: SegmentMember[];
  #ports = new Map<string, string>();
  #store: StoreProcess | undefined;
  #disposed = false;
  #log: (s: string) => void;

  constructor(readonly prefix: string, hosts: number, log?: (s: string) => void) {
    const names = underlayNames(prefix, hosts);
    this.netns = names.netns;
    this.storeNetns = names.store.netns;
    this.hosts = names.hosts.map(({ name, netns, address }) => ({ name, netns, address }));
    this.#members = [...names.hosts, names.store];
    for (const h of names.hosts) {
      this.#ports.set(h.name, h.port);
      this.#ports.set(h.netns, h.port);
    }
    this.#log = log ?? (() => {});
  }

  get storeLog(): string {
    return `${this.dir}/etcd.log`;
  }

  get storePid(): number | undefined {
    return this.#store && !this.#store.done ? this.#store.child.pid : undefined;
  }

  /** Makes a namespace (recorded before anything else can fail) with loopback up. */
  async #addNetns(name: string): Promise<void> {
    await run(["ip", "netns", "add", name]);
    this.namespaces.push(name);
    await run(["ip", "-n", name, "link", "set", "lo", "up"]);
  }

  /** Joins one namespace to the bridge: a veth made in the underlay namespace. */
  async #join(m: SegmentMember): Promise<void> {
    await this.#addNetns(m.netns);
    await run([
      "ip",
      "-n",
      this.netns,
      "link",
      "add",
      m.port,
      "type",
      "veth",
      "peer",
      "name",
      UNDERLAY.link,
      "netns",
      m.netns,
    ]);
    await run(
      ["ip", "-n", this.netns, "-batch", "-"],
      `link set ${m.port} master ${UNDERLAY.bridge}\nlink set ${m.port} up\n`,
    );
    await run(
      ["ip", "-n", m.netns, "-batch", "-"],
      `addr add ${m.address}/${UNDERLAY.prefixLen} dev ${UNDERLAY.link}\n` +
        `link set ${UNDERLAY.link} up\n`,
    );
  }

  async build(): Promise<void> {
    this.dir = await Deno.makeTempDir({ prefix: `${this.prefix}-etcd-` });
    await this.#addNetns(this.netns);
    await run(
      ["ip", "-n", this.netns, "-batch", "-"],
      `link add ${UNDERLAY.bridge} type bridge\nlink set ${UNDERLAY.bridge} up\n`,
    );
    // side by side; every join settles before a failure is thrown, so the rollback never
    // races a namespace still being made
    const joined = await Promise.allSettled(this.#members.map((m) => this.#join(m)));
    const failed = joined.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async storeStatus(): Promise<StoreStatus> {
    const r = await exec(
      etcdctlArgv(this.storeNetns, this.storeUrl, ["endpoint", "status", "-w", "json"]),
      { timeoutMs: 5_000, env: { ETCDCTL_API: "3" } },
    );
    if (r.code !== 0) {
      throw new Error(
        `etcd at ${this.storeUrl} does not answer (exit ${r.code}): ${logTail(r.stderr, 1)}`,
      );
    }
    return parseEndpointStatus(r.stdout);
  }

  async startStore(): Promise<void> {
    if (this.#store && !this.#store.done) return;
    const t0 = performance.now();
    const argv = etcdArgv(this.storeNetns, `${this.dir}/data`);
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: etcdEnv(),
    }).spawn();
    // the log file gets both streams (appended: a restart keeps the earlier run's lines)
    const pump = async (s: ReadableStream<Uint8Array>) => {
      try {
        const f = await Deno.open(this.storeLog, { create: true, append: true });
        await s.pipeTo(f.writable);
      } catch {
        await s.cancel().catch(() => {}); // never leave etcd writing into a full pipe
      }
    };
    const store: StoreProcess = {
      child,
      exited: child.status,
      done: false,
      pumps: Promise.all([pump(child.stdout), pump(child.stderr)]).then(() => {}),
    };
    store.exited.then(() => {
      store.done = true;
    });
    this.#store = store;
    try {
      const status = await this.#waitReady(store);
      this.#log(
        `underlay ${this.prefix}: etcd ${status.version} (cluster ${status.clusterId}) ` +
          `ready at ${this.storeUrl} in ${(performance.now() - t0).toFixed(0)} ms`,
      );
    } catch (err) {
      await this.stopStore();
      throw err;
    }
  }

  /** Polls etcd (bounded) until it answers as etcd; throws one line with its log's tail. */
  async #waitReady(store: StoreProcess): Promise<StoreStatus> {
    const deadline = Date.now() + STORE_READY_MS;
    let last = "";
    while (Date.now() < deadline) {
      if (store.done) {
        const { code } = await store.exited;
        await store.pumps; // its last lines, which say why
        throw new Error(
          `Cannot start etcd in ${this.storeNetns}: it exited (code ${code}) before ` +
            `answering; log ${this.storeLog}: ${await this.#logTail()}`,
        );
      }
      try {
        return await this.storeStatus();
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `Cannot start etcd in ${this.storeNetns}: no answer at ${this.storeUrl} within ` +
        `${STORE_READY_MS / 1000} s (${last}); log ${this.storeLog}: ${await this.#logTail()}`,
    );
  }

  async #logTail(): Promise<string> {
    return logTail(await Deno.readTextFile(this.storeLog).catch(() => ""));
  }

  async stopStore(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    this.#store = undefined;
    const signal = (s: Deno.Signal) => {
      try {
        store.child.kill(s);
      } catch { /* exited already */ }
    };
    signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), STORE_STOP_MS));
    if (await Promise.race([store.exited, late]) === "late") {
      this.#log(`underlay ${this.prefix}: etcd ignored SIGTERM for 2 s; SIGKILL`);
      signal("SIGKILL");
    }
    clearTimeout(timer);
    await store.exited;
    await store.pumps;
  }

  async setHostLink(host: string, up: boolean): Promise<void> {
    const port = this.#ports.get(host);
    if (!port) {
      throw new Error(
        `Cannot set the underlay link of "${host}": no such host in underlay ${this.prefix} ` +
          `(${this.hosts.map((h) => h.name).join(", ")})`,
      );
    }
    await run(["ip", "-n", this.netns, "link", "set", port, up ? "up" : "down"]);
  }

  /**
   * Removes everything, going on past failures: etcd, then each namespace (after killing
   * what still runs in it: a process would keep the namespace alive), then the temp dir.
   * Idempotent; throws one line naming what could not be removed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const problems: string[] = [];
    await this.stopStore().catch((err) => problems.push(`etcd: ${err}`));
    const present = await listNetns();
    for (const ns of [...this.namespaces].reverse()) {
      await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
      if (!present.has(ns)) continue; // removed already (a forced clean-up)
      const pids = (await exec(["ip", "netns", "pids", ns])).stdout.split(/\s+/).filter(Boolean);
      for (const pid of pids) {
        this.#log(`underlay ${this.prefix}: killing pid ${pid}, still in ${ns}`);
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
      const r = await exec(["ip", "netns", "del", ns]);
      if (r.code !== 0) problems.push(`netns ${ns}: ${logTail(r.stderr, 1)}`);
    }
    if (this.dir) {
      await Deno.remove(this.dir, { recursive: true }).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) problems.push(`${this.dir}: ${err}`);
      });
    }
    if (problems.length) {
      throw new Error(`Cannot remove underlay ${this.prefix}: ${problems.join("; ")}`);
    }
  }
}

/**
 * Builds an underlay: `<prefix>-ul` with bridge `ul0`; hosts `<prefix>-h1..N` at
 * 203.0.113.1..N; the store `<prefix>-st` at 203.0.113.254, running etcd unless
 * `withStore` is false (then `startStore()` starts it). All or nothing: when a step fails,
 * what was made is removed and the error is rethrown.
 */
export async function createUnderlay(opts: UnderlayOptions): Promise<Underlay> {
  const t0 = performance.now();
  const u = new UnderlayHandle(opts.prefix, opts.hosts, opts.log);
  try {
    await u.build();
    if (opts.withStore ?? true) await u.startStore();
  } catch (err) {
    await u[Symbol.asyncDispose]().catch((e) =>
      opts.log?.(`underlay ${opts.prefix}: clean-up after a failed create: ${e.message ?? e}`)
    );
    throw err;
  }
  opts.log?.(
    `underlay ${opts.prefix}: ${opts.hosts} host(s) in ${(performance.now() - t0).toFixed(0)} ms`,
  );
  return u;
}
