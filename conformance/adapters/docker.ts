/**
 * The Docker adapter: runs the suite against a real Docker engine through the Engine API on
 * its unix socket (no docker CLI). By default `addHost` starts a PRIVATE dockerd inside the
 * host namespace the harness made (own data-root, exec-root, pidfile, socket, containerd
 * namespaces, `--live-restore`, `--dns` at the harness's stub or 127.0.0.1, never the host's
 * resolvers) and imports a tiny image built from busybox-static. With
 * `--docker-host unix://PATH` it uses that engine instead and touches only objects it
 * labelled.
 *
 * Sandboxes are containers. Docker binds published ports when a container is created, so a
 * sandbox's container is created at its first connect; its namespace is bind-mounted at a
 * stable path under /run/netns (named with the run prefix) so probes can enter it.
 * @module
 */
import { exec, run } from "../harness/exec.ts";
import { answers, spawnLogged, stopProcess, waitReady } from "./process.ts";
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
  type SandboxInfo,
  type SandboxSpec,
} from "../impl.ts";

const IMAGE = "cnm-probe:latest";
const LABEL = "cnm.conformance";

interface Engine {
  host: Host;
  socket: string;
  client: Deno.HttpClient;
  /** Our own dockerd, when we started it. */
  child?: Deno.ChildProcess;
  /** Our own containerd: kept running across dockerd restarts, as live-restore needs. */
  containerd?: Deno.ChildProcess;
  dir?: string;
  logFile?: string;
}

interface SandboxState {
  spec: SandboxSpec;
  engine: Engine;
  /** Stable namespace path handed to the suite (a bind mount of the container's). */
  netnsPath: string;
  created: boolean;
}

function kindOf(status: number): ErrorKind {
  if (status === 400) return "invalid";
  if (status === 403) return "forbidden";
  if (status === 404) return "not-found";
  if (status === 409) return "conflict";
  if (status === 501) return "unsupported";
  return "internal";
}

/** The Docker Engine as an {@linkcode Implementation}. */
export class DockerAdapter implements Implementation {
  readonly name: string = "docker";
  readonly #opts: AdapterOptions;
  readonly #engines = new Map<string, Engine>();
  readonly #sandboxes = new Map<string, SandboxState>();
  readonly #networks = new Map<string, Engine>();
  #first?: string;

  constructor(opts: AdapterOptions) {
    this.#opts = opts;
  }

  capabilities(): Promise<Set<Capability>> {
    const caps: Capability[] = [
      "bridge",
      "bridge.icc",
      "bridge.internal",
      "bridge.masquerade",
      "bridge.mtu",
      "static-ip",
      "ip-range",
      "ipam.docker-policy",
      "aliases",
      "ports",
      "dns",
      "dns.upstream",
      "macvlan",
      "macvlan.no-parent",
    ];
    // restarting is only ours to do on a private engine
    if (!this.#opts.options["docker-host"]) caps.push("restart");
    return Promise.resolve(new Set(caps));
  }

  async addHost(host: Host): Promise<void> {
    // no classic cluster-store mode here yet (no multi-host, no overlay): an underlay's host
    // is left alone, and the cases needing it SKIP
    if (host.underlay) return;
    const external = this.#opts.options["docker-host"];
    let engine: Engine;
    if (external) {
      const socket = external.replace(/^unix:\/\//, "");
      engine = {
        host,
        socket,
        client: Deno.createHttpClient({ proxy: { transport: "unix", path: socket } }),
      };
    } else {
      const dir = `${host.stateDir}/d`;
      await Deno.mkdir(dir, { recursive: true });
      const socket = `${dir}/docker.sock`;
      engine = {
        host,
        socket,
        dir,
        logFile: `${dir}/dockerd.log`,
        client: Deno.createHttpClient({ proxy: { transport: "unix", path: socket } }),
      };
      await this.#startDockerd(engine);
    }
    this.#engines.set(host.name, engine);
    this.#first ??= host.name;
    await this.#ensureImage(engine);
  }

  async #startContainerd(e: Engine): Promise<void> {
    const sock = `${e.dir}/containerd.sock`;
    const logFile = `${e.dir}/containerd.log`;
    e.containerd = await spawnLogged([
      "nsenter",
      `--net=${e.host.netnsPath}`,
      this.#opts.options["containerd"] ?? "containerd",
      "--address",
      sock,
      "--root",
      `${e.dir}/cd-root`,
      "--state",
      `${e.dir}/cd-state`,
    ], logFile);
    await waitReady(e.containerd, () => Deno.stat(sock).then(() => true, () => false), {
      deadlineMs: 20_000,
      logFile,
      onFailure: (tail) =>
        new ImplementationError("internal", `containerd on ${e.host.name} did not start: ${tail}`),
    });
  }

  async #startDockerd(e: Engine): Promise<void> {
    if (!e.containerd) await this.#startContainerd(e);
    const dns = e.host.dnsUpstreams[0] ?? "127.0.0.1";
    // nsenter execs dockerd, so the child's pid is dockerd's
    e.child = await spawnLogged([
      "nsenter",
      `--net=${e.host.netnsPath}`,
      this.#opts.options["dockerd"] ?? "dockerd",
      "--data-root",
      `${e.dir}/data`,
      "--exec-root",
      `${e.dir}/x`,
      "--pidfile",
      `${e.dir}/docker.pid`,
      "--containerd",
      `${e.dir}/containerd.sock`,
      "-H",
      `unix://${e.socket}`,
      "--containerd-namespace",
      e.host.prefix,
      "--containerd-plugins-namespace",
      `${e.host.prefix}-plugins`,
      "--live-restore",
      "--dns",
      dns,
    ], e.logFile!);
    await waitReady(e.child, () => answers(e.client, "http://docker/_ping"), {
      deadlineMs: 30_000,
      logFile: e.logFile!,
      onFailure: (tail) =>
        new ImplementationError("internal", `dockerd on ${e.host.name} did not start: ${tail}`),
    });
  }

  async #stopDockerd(e: Engine, signal: Deno.Signal): Promise<void> {
    if (!e.child) return;
    await stopProcess(e.child, signal, 20_000);
    e.child = undefined;
  }

  async #ensureImage(e: Engine): Promise<void> {
    const have = await fetch(`http://docker/images/${IMAGE}/json`, { client: e.client });
    await have.body?.cancel();
    if (have.ok) return;
    const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
    if (!busybox) {
      throw new ImplementationError(
        "internal",
        "busybox is missing: install the Debian package busybox-static",
      );
    }
    const root = await Deno.makeTempDir({ prefix: `${e.host.prefix}-img-` });
    try {
      await Deno.mkdir(`${root}/bin`);
      await Deno.copyFile(busybox, `${root}/bin/busybox`);
      await Deno.chmod(`${root}/bin/busybox`, 0o755);
      const list = (await run([busybox, "--list"])).split("\n").filter((a) => a && a !== "busybox");
      for (const a of list) await Deno.symlink("busybox", `${root}/bin/${a}`);
      const tar = new Deno.Command("tar", { args: ["-C", root, "-c", "."], stdout: "piped" })
        .spawn();
      const r = await fetch(`http://docker/images/create?fromSrc=-&repo=cnm-probe&tag=latest`, {
        method: "POST",
        client: e.client,
        headers: { "content-type": "application/x-tar" },
        body: tar.stdout,
      });
      const text = await r.text();
      await tar.status;
      if (!r.ok || text.includes('"error"')) {
        throw new ImplementationError(
          "internal",
          `cannot import the probe image: ${text.slice(0, 200)}`,
        );
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  }

  #engine(host?: string): Engine {
    const e = this.#engines.get(host ?? this.#first ?? "");
    if (!e) throw new ImplementationError("invalid", `no host ${host ?? "(none added)"}`);
    return e;
  }

  async #call<T>(e: Engine, method: string, path: string, body?: unknown): Promise<T> {
    const r = await fetch(`http://docker/v1.41${path}`, {
      method,
      client: e.client,
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!r.ok) throw new ImplementationError(kindOf(r.status), data?.message ?? `HTTP ${r.status}`);
    return data as T;
  }

  async createNetwork(spec: NetworkSpec) {
    const e = this.#engine(spec.host);
    const config: Record<string, string>[] = [];
    if (spec.subnet) {
      config.push(Object.fromEntries(
        Object.entries({ Subnet: spec.subnet, Gateway: spec.gateway, IPRange: spec.ipRange })
          .filter(([, v]) => v),
      ) as Record<string, string>);
    }
    if (spec.ipv6Subnet) config.push({ Subnet: spec.ipv6Subnet });
    await this.#call(e, "POST", "/networks/create", {
      Name: spec.name,
      Driver: spec.driver,
      CheckDuplicate: true,
      Internal: !!spec.internal,
      EnableIPv6: !!spec.ipv6Subnet,
      IPAM: { Driver: "default", Config: config },
      Options: spec.options ?? {},
      Labels: { [LABEL]: e.host.prefix },
    });
    this.#networks.set(spec.name, e);
    const net = await this.#call<{ IPAM: { Config: { Subnet: string; Gateway?: string }[] } }>(
      e,
      "GET",
      `/networks/${encodeURIComponent(spec.name)}`,
    );
    const v4 = net.IPAM.Config.find((c) => !c.Subnet.includes(":"));
    return { name: spec.name, subnet: v4?.Subnet ?? "", gateway: v4?.Gateway };
  }

  async removeNetwork(name: string): Promise<void> {
    const e = this.#networks.get(name) ?? this.#engine();
    await this.#call(e, "DELETE", `/networks/${encodeURIComponent(name)}`);
    this.#networks.delete(name);
  }

  createSandbox(spec: SandboxSpec): Promise<SandboxInfo> {
    if (this.#sandboxes.has(spec.name)) {
      return Promise.reject(
        new ImplementationError(
          "conflict",
          `Conflict. The container name "/${spec.name}" is already in use`,
        ),
      );
    }
    const e = this.#engine(spec.host);
    const netnsPath = `/run/netns/${e.host.prefix}-dk-${spec.name}`;
    this.#sandboxes.set(spec.name, { spec, engine: e, netnsPath, created: false });
    return Promise.resolve({ name: spec.name, netnsPath, resolver: "127.0.0.11" });
  }

  async removeSandbox(name: string): Promise<void> {
    const sb = this.#sandboxes.get(name);
    if (!sb) throw new ImplementationError("not-found", `No such container: ${name}`);
    if (sb.created) {
      await this.#call(sb.engine, "DELETE", `/containers/${encodeURIComponent(name)}?force=1&v=1`);
    }
    await exec(["umount", sb.netnsPath]);
    await Deno.remove(sb.netnsPath).catch(() => {});
    this.#sandboxes.delete(name);
  }

  async connect(sandbox: string, network: string, spec: ConnectSpec = {}): Promise<EndpointInfo> {
    const sb = this.#sandboxes.get(sandbox);
    if (!sb) throw new ImplementationError("not-found", `No such container: ${sandbox}`);
    const endpoint = {
      IPAMConfig: spec.ipv4 ? { IPv4Address: spec.ipv4 } : undefined,
      Aliases: spec.aliases,
    };
    if (!sb.created) {
      const ports: Record<string, { HostIp: string; HostPort: string }[]> = {};
      for (const p of spec.publish ?? []) {
        (ports[`${p.containerPort}/${p.protocol}`] ??= []).push({
          HostIp: p.hostIp ?? "",
          HostPort: p.hostPort ? String(p.hostPort) : "",
        });
      }
      await this.#call(
        sb.engine,
        "POST",
        `/containers/create?name=${encodeURIComponent(sandbox)}`,
        {
          Image: IMAGE,
          Cmd: ["/bin/sleep", "2147483647"],
          Env: ["PATH=/bin"],
          Hostname: sb.spec.hostname,
          Labels: { [LABEL]: sb.engine.host.prefix },
          ExposedPorts: Object.fromEntries(Object.keys(ports).map((k) => [k, {}])),
          HostConfig: { NetworkMode: network, PortBindings: ports },
          NetworkingConfig: { EndpointsConfig: { [network]: endpoint } },
        },
      );
      sb.created = true;
      await this.#call(sb.engine, "POST", `/containers/${encodeURIComponent(sandbox)}/start`);
      const info = await this.#call<{ State: { Pid: number } }>(
        sb.engine,
        "GET",
        `/containers/${encodeURIComponent(sandbox)}/json`,
      );
      await Deno.mkdir("/run/netns", { recursive: true });
      await Deno.writeTextFile(sb.netnsPath, "");
      await run(["mount", "--bind", `/proc/${info.State.Pid}/ns/net`, sb.netnsPath]);
    } else {
      if (spec.publish?.length) {
        throw new ImplementationError(
          "unsupported",
          "Docker binds ports only when a container is created",
        );
      }
      await this.#call(sb.engine, "POST", `/networks/${encodeURIComponent(network)}/connect`, {
        Container: sandbox,
        EndpointConfig: endpoint,
      });
    }
    const info = await this.#call<{
      NetworkSettings: {
        Networks: Record<
          string,
          {
            IPAddress: string;
            IPPrefixLen: number;
            MacAddress: string;
            Gateway: string;
            GlobalIPv6Address?: string;
            GlobalIPv6PrefixLen?: number;
          }
        >;
        Ports?: Record<string, { HostIp: string; HostPort: string }[] | null>;
      };
    }>(sb.engine, "GET", `/containers/${encodeURIComponent(sandbox)}/json`);
    const n = info.NetworkSettings.Networks[network];
    if (!n) {
      throw new ImplementationError(
        "internal",
        `container ${sandbox} shows no endpoint on ${network}`,
      );
    }
    const links = await exec(["nsenter", `--net=${sb.netnsPath}`, "ip", "-j", "link", "show"]);
    const ifname = (JSON.parse(links.stdout || "[]") as { ifname: string; address?: string }[])
      .find((l) => l.address === n.MacAddress)?.ifname ?? "";
    const published = Object.entries(info.NetworkSettings.Ports ?? {}).flatMap(([k, binds]) =>
      (binds ?? []).map((b) => ({
        containerPort: Number(k.split("/")[0]),
        protocol: k.split("/")[1] as "tcp" | "udp",
        hostPort: Number(b.HostPort),
        hostIp: b.HostIp,
      }))
    );
    return {
      network,
      ifname,
      mac: n.MacAddress,
      ipv4: n.IPAddress ? `${n.IPAddress}/${n.IPPrefixLen}` : undefined,
      ipv6: n.GlobalIPv6Address ? `${n.GlobalIPv6Address}/${n.GlobalIPv6PrefixLen}` : undefined,
      gateway: n.Gateway || undefined,
      published,
    };
  }

  async disconnect(sandbox: string, network: string): Promise<void> {
    const sb = this.#sandboxes.get(sandbox);
    if (!sb) throw new ImplementationError("not-found", `No such container: ${sandbox}`);
    if (!sb.created) {
      throw new ImplementationError(
        "forbidden",
        `container ${sandbox} is not connected to network ${network}`,
      );
    }
    await this.#call(sb.engine, "POST", `/networks/${encodeURIComponent(network)}/disconnect`, {
      Container: sandbox,
    });
  }

  async restart(host: string, how: "graceful" | "kill"): Promise<void> {
    const e = this.#engine(host);
    if (!e.child) {
      throw new ImplementationError("unsupported", "cannot restart an engine we did not start");
    }
    await this.#stopDockerd(e, how === "graceful" ? "SIGTERM" : "SIGKILL");
    await this.#startDockerd(e);
  }

  async version(): Promise<string> {
    const v = await this.#call<{ Version?: string }>(this.#engine(), "GET", "/version");
    return v.Version ?? "";
  }

  /**
   * Docker makes the private parent of a macvlan network without `-o parent` a dummy link
   * (libnetwork macvlan createDummyLink): probed in the first host's namespace, since some
   * kernels (this project's machines) have no dummy links.
   */
  async preconditions(): Promise<Partial<Record<Capability, string>>> {
    const e = this.#engine();
    const ns = `--net=${e.host.netnsPath}`;
    const name = "cnmtdummy0";
    const r = await exec(["nsenter", ns, "ip", "link", "add", name, "type", "dummy"]);
    if (r.code === 0) {
      await exec(["nsenter", ns, "ip", "link", "del", name]);
      return {};
    }
    return {
      "macvlan.no-parent":
        `this kernel has no dummy links, which Docker uses as the private parent of a macvlan network without -o parent (ip link add type dummy: ${
          r.stderr.trim().split("\n").pop()
        })`,
    };
  }

  async debugState(host: string): Promise<string> {
    const e = this.#engine(host);
    const ns = `--net=${e.host.netnsPath}`;
    const [addrs, rules] = await Promise.all([
      exec(["nsenter", ns, "ip", "-br", "addr"]),
      exec(["nsenter", ns, "iptables-save"]),
    ]);
    return `host ${host} addresses:\n${addrs.stdout}host ${host} iptables:\n${rules.stdout}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const name of [...this.#sandboxes.keys()]) {
      await this.removeSandbox(name).catch(() => {});
    }
    for (const e of this.#engines.values()) {
      // everything we labelled, in case a case left something behind
      const filter = encodeURIComponent(JSON.stringify({ label: [`${LABEL}=${e.host.prefix}`] }));
      const containers = await this.#call<{ Id: string }[]>(
        e,
        "GET",
        `/containers/json?all=1&filters=${filter}`,
      ).catch(() => []);
      for (const c of containers) {
        await this.#call(e, "DELETE", `/containers/${c.Id}?force=1&v=1`).catch(() => {});
      }
      const nets = await this.#call<{ Id: string }[]>(e, "GET", `/networks?filters=${filter}`)
        .catch(() => []);
      for (const n of nets) await this.#call(e, "DELETE", `/networks/${n.Id}`).catch(() => {});
      if (e.child) {
        await this.#call(e, "DELETE", `/images/${IMAGE}?force=1`).catch(() => {});
        await this.#stopDockerd(e, "SIGTERM");
        if (e.containerd) {
          await stopProcess(e.containerd, "SIGTERM");
          e.containerd = undefined;
        }
        // dockerd leaves its mounts under data-root when killed; take them down
        const mounts = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
          .map((l) => l.split(" ")[1]).filter((m) => m && e.dir && m.startsWith(e.dir));
        for (const m of mounts.reverse()) await exec(["umount", "-l", m]);
      }
      e.client.close();
    }
    this.#engines.clear();
  }
}

/** The adapter factory (`--impl docker`). */
export default function createDockerAdapter(opts: AdapterOptions): Implementation {
  return new DockerAdapter(opts);
}
