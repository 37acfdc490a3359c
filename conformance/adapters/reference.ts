/**
 * The reference adapter: one real `cnm daemon --netns HOST --prefix P` per host, driven
 * through its HTTP API on a unix socket. Restart cases restart that process.
 * @module
 */
import {
  type AdapterOptions,
  type Capability,
  type ConnectSpec,
  type EndpointInfo,
  type ErrorKind,
  type Host,
  type Implementation,
  ImplementationError,
  type NetworkSpec,
  type PortSpec,
  type SandboxInfo,
  type SandboxSpec,
  type ServiceSpec,
} from "../impl.ts";
import { RUN_DIR } from "../harness/audit.ts";
import { exec } from "../harness/exec.ts";
import { answers, spawnLogged, stopProcess, waitReady } from "./process.ts";

interface Daemon {
  host: Host;
  socket: string;
  logFile: string;
  child?: Deno.ChildProcess;
  client: Deno.HttpClient;
}

/**
 * V8 flags the daemon runs with (as `deno task cnm` runs it): a young generation capped at
 * 1 MiB per semi-space keeps a long-running daemon's memory lower (bench/soak.ts, V8 grows it
 * under load: 139.7 MiB at cycle 2,000 without it, 89.0 MiB with it; connect p50 6.5 -> 6.7 ms
 * in process).
 */
const DAEMON_V8_FLAGS = "--v8-flags=--max-semi-space-size=1";

/**
 * The store lease's TTL (s) of a daemon on an underlay host: short, so that a lost host's
 * endpoints go from the others within seconds (case overlay.node-loss waits TTL + 1 s); a
 * live daemon renews its lease well within it.
 */
const STORE_TTL_S = 3;

const KINDS: ErrorKind[] = ["not-found", "conflict", "invalid", "forbidden", "unsupported"];

/** The reference implementation, through its daemon. */
export class ReferenceAdapter implements Implementation {
  readonly name: string = "reference";
  readonly #opts: AdapterOptions;
  readonly #daemons = new Map<string, Daemon>();
  /** Which host each network and sandbox lives on. */
  readonly #where = new Map<string, string>();
  #first?: string;

  constructor(opts: AdapterOptions) {
    this.#opts = opts;
  }

  capabilities(): Promise<Set<Capability>> {
    const multiHost = [...this.#daemons.values()].some((d) => d.host.underlay);
    return Promise.resolve(
      new Set<Capability>([
        // only with a cluster store to run on (hosts the harness put on an underlay)
        ...(multiHost ? ["overlay", "multi-host"] as const : []),
        "bridge",
        "bridge.icc",
        "bridge.internal",
        "bridge.masquerade",
        "bridge.mtu",
        "static-ip",
        "ip-range",
        "ipam.docker-policy",
        "restart",
        "aliases",
        "dns",
        "dns.upstream",
        "macvlan",
        "macvlan.no-parent",
        "ports",
        "ipv6",
        "lb.vip",
        "lb.dnsrr",
        "lb.affinity",
      ]),
    );
  }

  async addHost(host: Host): Promise<void> {
    const d: Daemon = {
      host,
      socket: `${host.stateDir}/cnm.sock`,
      logFile: `${host.stateDir}/daemon.log`,
      client: Deno.createHttpClient({
        proxy: { transport: "unix", path: `${host.stateDir}/cnm.sock` },
      }),
    };
    this.#daemons.set(host.name, d);
    this.#first ??= host.name;
    await this.#start(d);
  }

  async #start(d: Daemon): Promise<void> {
    const daemonArgs = [
      "--netns",
      d.host.netns,
      "--prefix",
      d.host.prefix,
      "--state-dir",
      `${d.host.stateDir}/state`,
      "--socket",
      d.socket,
      ...d.host.dnsUpstreams.flatMap((ip) => ["--dns", ip]),
      ...(d.host.underlay
        ? [
          "--store",
          d.host.underlay.store.replace(/^https?:/, "etcd:"),
          "--advertise-address",
          d.host.underlay.address,
          "--store-ttl",
          String(STORE_TTL_S),
        ]
        : []),
    ];
    const fault = this.#opts.options["daemon-fault"];
    // `cnm daemon ARGS`, or for --fault (a fault inside the daemon) the test-only entry
    // point that runs the same daemon with that fault: `cnm` itself has no fault switch
    const entry = fault
      ? [`${this.#opts.repoRoot}/testing/faulty_daemon.ts`, "--fault", fault, "--"]
      : [`${this.#opts.repoRoot}/impl/cli/main.ts`, "daemon"];
    // the native binary (Deno.execPath), so signals reach the daemon itself
    // a daemon with a global store runs inside its host namespace (it reaches the store and
    // its peers over the underlay); nsenter, not `ip netns exec`, which would give it a
    // mount namespace of its own, hiding the sandboxes it mounts under /run/netns
    const inHost = d.host.underlay ? ["nsenter", `--net=${d.host.netnsPath}`] : [];
    d.child = await spawnLogged(
      [
        ...inHost,
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        DAEMON_V8_FLAGS,
        ...entry,
        ...daemonArgs,
      ],
      d.logFile,
    );
    await waitReady(d.child, () => answers(d.client, "http://cnm/info"), {
      deadlineMs: 15_000,
      logFile: d.logFile,
      onFailure: (tail) =>
        new ImplementationError("internal", `cnm daemon on ${d.host.name} did not start: ${tail}`),
    });
  }

  async #stop(d: Daemon, signal: Deno.Signal): Promise<void> {
    if (!d.child) return;
    const pid = d.child.pid;
    await stopProcess(d.child, signal);
    d.child = undefined;
    // a daemon stopped cleanly removes its prefix lock (`/run/cnm/PREFIX.lock`: pid, state
    // dir); a killed one cannot, and the file would outlive the run: it goes here, if it is
    // still the one this daemon wrote
    const lock = `${RUN_DIR}/${d.host.prefix}.lock`;
    const text = await Deno.readTextFile(lock).catch(() => "");
    if (text.split("\n")[0] === String(pid)) await Deno.remove(lock).catch(() => {});
  }

  #daemon(host?: string): Daemon {
    const d = this.#daemons.get(host ?? this.#first ?? "");
    if (!d) throw new ImplementationError("invalid", `no host ${host ?? "(none added)"}`);
    return d;
  }

  async #call<T>(d: Daemon, method: string, path: string, body?: unknown): Promise<T> {
    const r = await fetch(`http://cnm${path}`, {
      method,
      client: d.client,
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 204) return undefined as T;
    const text = await r.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!r.ok) {
      const kind = KINDS.includes(data?.kind) ? data.kind : "internal";
      throw new ImplementationError(kind, data?.message ?? `HTTP ${r.status}`);
    }
    return data as T;
  }

  async createNetwork(spec: NetworkSpec) {
    const d = this.#daemon(spec.host);
    const rec = await this.#call<{ name: string; ipv4: { subnet: string; gateway?: string }[] }>(
      d,
      "POST",
      "/networks",
      {
        name: spec.name,
        driver: spec.driver,
        subnet: spec.subnet,
        gateway: spec.gateway,
        ipRange: spec.ipRange,
        ipv6: spec.ipv6Subnet ? true : undefined,
        ipv6Subnet: spec.ipv6Subnet,
        internal: spec.internal,
        options: spec.options,
      },
    );
    this.#where.set(`net:${spec.name}`, d.host.name);
    return { name: rec.name, subnet: rec.ipv4[0]?.subnet ?? "", gateway: rec.ipv4[0]?.gateway };
  }

  async removeNetwork(name: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`net:${name}`));
    await this.#call(d, "DELETE", `/networks/${encodeURIComponent(name)}`);
    this.#where.delete(`net:${name}`);
  }

  async createSandbox(spec: SandboxSpec): Promise<SandboxInfo> {
    const d = this.#daemon(spec.host);
    const rec = await this.#call<{ name: string; netnsPath: string }>(d, "POST", "/sandboxes", {
      name: spec.name,
      hostname: spec.hostname,
    });
    this.#where.set(`sb:${spec.name}`, d.host.name);
    return { name: rec.name, netnsPath: rec.netnsPath, resolver: "127.0.0.11" };
  }

  async removeSandbox(name: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`sb:${name}`));
    await this.#call(d, "DELETE", `/sandboxes/${encodeURIComponent(name)}`);
    this.#where.delete(`sb:${name}`);
  }

  async connect(sandbox: string, network: string, spec: ConnectSpec = {}): Promise<EndpointInfo> {
    const d = this.#daemon(this.#where.get(`sb:${sandbox}`));
    const ep = await this.#call<{
      ifname?: string;
      mac?: string;
      ipv4?: string;
      ipv6?: string;
      gateway?: string;
      published?: PortSpec[];
    }>(d, "POST", `/networks/${encodeURIComponent(network)}/endpoints`, {
      sandbox,
      ipv4: spec.ipv4,
      aliases: spec.aliases,
      publish: spec.publish,
    });
    return {
      network,
      ifname: ep.ifname ?? "",
      mac: ep.mac ?? "",
      ipv4: ep.ipv4,
      ipv6: ep.ipv6,
      gateway: ep.gateway,
      ...(ep.published ? { published: ep.published } : {}),
    };
  }

  async disconnect(sandbox: string, network: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`sb:${sandbox}`));
    await this.#call(
      d,
      "DELETE",
      `/networks/${encodeURIComponent(network)}/endpoints/${encodeURIComponent(sandbox)}`,
    );
  }

  // services (issue 8)

  async createService(spec: ServiceSpec): Promise<{ name: string; vip?: string }> {
    const d = this.#daemon(this.#where.get(`net:${spec.network}`));
    const rec = await this.#call<{ name: string; vip?: string }>(d, "POST", "/services", {
      name: spec.name,
      network: spec.network,
      mode: spec.mode,
      ports: spec.ports,
      affinity: spec.affinity,
    });
    this.#where.set(`svc:${spec.name}`, d.host.name);
    return { name: rec.name, ...(rec.vip ? { vip: rec.vip } : {}) };
  }

  async addBackend(service: string, sandbox: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`svc:${service}`));
    await this.#call(d, "POST", `/services/${encodeURIComponent(service)}/backends`, { sandbox });
  }

  async removeBackend(service: string, sandbox: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`svc:${service}`));
    await this.#call(
      d,
      "DELETE",
      `/services/${encodeURIComponent(service)}/backends/${encodeURIComponent(sandbox)}`,
    );
  }

  async removeService(name: string): Promise<void> {
    const d = this.#daemon(this.#where.get(`svc:${name}`));
    await this.#call(d, "DELETE", `/services/${encodeURIComponent(name)}`);
    this.#where.delete(`svc:${name}`);
  }

  async stopHost(host: string): Promise<number> {
    const d = this.#daemon(host);
    await this.#stop(d, "SIGKILL");
    // the dead daemon's socket file stays; a restart right after it (case overlay.node-loss)
    // found it accepting without answering (observed: "another daemon is running"), so it
    // goes with its daemon
    await Deno.remove(d.socket).catch(() => {});
    return STORE_TTL_S * 1000;
  }

  async restart(host: string, how: "graceful" | "kill"): Promise<void> {
    const d = this.#daemon(host);
    await this.#stop(d, how === "graceful" ? "SIGTERM" : "SIGKILL");
    await this.#start(d);
  }

  async version(): Promise<string> {
    const info = await this.#call<{ version?: string }>(this.#daemon(), "GET", "/info");
    return info.version ?? "";
  }

  async debugState(host: string): Promise<string> {
    const d = this.#daemon(host);
    const ns = `--net=${d.host.netnsPath}`;
    const [links, rules] = await Promise.all([
      exec(["nsenter", ns, "ip", "-br", "addr"]),
      exec(["nsenter", ns, "nft", "list", "ruleset"]),
    ]);
    const log = (await Deno.readTextFile(d.logFile).catch(() => "")).trim().split("\n").slice(-8);
    return `host ${host} addresses:\n${links.stdout}host ${host} nft:\n${rules.stdout}daemon log (tail):\n${
      log.join("\n")
    }\n`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const d of this.#daemons.values()) {
      await this.#stop(d, "SIGTERM");
      d.client.close();
    }
    this.#daemons.clear();
  }
}

/** The adapter factory (`--impl reference`). */
export default function createReferenceAdapter(opts: AdapterOptions): Implementation {
  return new ReferenceAdapter(opts);
}
