/**
 * FAULT INJECTION — the one place where the reference is deliberately broken, to prove the
 * suite can fail (`--fault NAME`, reference only). Each fault wraps the reference adapter
 * and sabotages it from the outside; `deno task test` checks that the named cases catch
 * each one. A fault no case catches is a missing case.
 * @module
 */
import type {
  Capability,
  ConnectSpec,
  EndpointInfo,
  Host,
  Implementation,
  NetworkSpec,
  SandboxInfo,
  SandboxSpec,
  ServiceSpec,
} from "../impl.ts";
import { exec, run } from "../harness/exec.ts";

/** A fault: what it breaks and the cases that must catch it. */
export interface Fault {
  name: string;
  breaks: string;
  caughtBy: string[];
  /** Injected inside the daemon (impl/daemon/test_fault.ts) rather than from outside. */
  daemon?: boolean;
  /** The profile of the catching cases, when not `core`. */
  profile?: string;
}

/** Every fault. */
export const FAULTS: Fault[] = [
  {
    name: "no-isolation",
    breaks: "drops the reference's isolation rules after each network create",
    caughtBy: ["iso.inter-network", "matrix.full-reachability", "multihomed.no-transit"],
  },
  {
    name: "wrong-address-reported",
    breaks: "reports the next address instead of the real one on connect",
    caughtBy: ["ipam.gateway-first-address", "ipam.static-ip", "conn.same-network"],
  },
  {
    name: "leaked-link",
    breaks: "leaves a veth pair in the host namespace after each network removal",
    caughtBy: ["lifecycle.idempotent-teardown"],
  },
  {
    name: "icc-ignored",
    breaks: "drops com.docker.network.bridge.enable_icc from network options",
    caughtBy: ["iso.icc-disabled"],
  },
  {
    name: "dns-all-networks",
    breaks: "the embedded resolver answers names of every network, not only the sandbox's own",
    caughtBy: ["dns.cross-network-invisible", "dns.scoped-alias"],
    daemon: true,
    profile: "dns",
  },
  {
    name: "internal-has-egress",
    breaks: "creates --internal networks as normal ones",
    caughtBy: ["iso.internal-network", "iso.internal-no-route"],
  },
  {
    name: "lb-one-backend",
    breaks: "forwards only the first backend of each service (the others are silently dropped)",
    caughtBy: ["lb.all-backends-reached", "lb.distribution"],
    profile: "lb",
  },
];

function nextAddress(cidr: string): string {
  const [ip, len] = cidr.split("/");
  const p = ip.split(".").map(Number);
  p[3] = (p[3] + 1) % 256;
  return `${p.join(".")}/${len}`;
}

/** The reference wrapped so that it exhibits one fault; every other call passes through. */
class FaultyImplementation implements Implementation {
  readonly name: string;
  readonly #inner: Implementation;
  readonly #fault: string;
  readonly #hosts: Host[] = [];
  #leaks = 0;
  /** Services that got their one backend (lb-one-backend). */
  readonly #served = new Set<string>();

  constructor(inner: Implementation, fault: string) {
    this.#inner = inner;
    this.#fault = fault;
    this.name = `${inner.name}+${fault}`;
  }

  capabilities(): Promise<Set<Capability>> {
    return this.#inner.capabilities();
  }

  async addHost(host: Host): Promise<void> {
    this.#hosts.push(host);
    await this.#inner.addHost(host);
  }

  async createNetwork(spec: NetworkSpec) {
    let s = spec;
    if (this.#fault === "icc-ignored" && spec.options) {
      const { ["com.docker.network.bridge.enable_icc"]: _dropped, ...rest } = spec.options;
      s = { ...spec, options: rest };
    }
    if (this.#fault === "internal-has-egress") s = { ...spec, internal: false };
    const r = await this.#inner.createNetwork(s);
    if (this.#fault === "no-isolation") {
      for (const h of this.#hosts) {
        const ns = `--net=${h.netnsPath}`;
        const tables = await exec(["nsenter", ns, "nft", "list", "tables"]);
        for (const line of tables.stdout.split("\n").filter((l) => l.trim().endsWith("_bridge"))) {
          const [, family, table] = line.trim().split(/\s+/);
          await exec(["nsenter", ns, "nft", "flush", "chain", family, table, "forward"]);
        }
      }
    }
    return r;
  }

  async removeNetwork(name: string): Promise<void> {
    await this.#inner.removeNetwork(name);
    if (this.#fault === "leaked-link") {
      const n = this.#leaks++;
      await run([
        "ip",
        "-n",
        this.#hosts[0].netns,
        "link",
        "add",
        `cnmleak${n}a`,
        "type",
        "veth",
        "peer",
        "name",
        `cnmleak${n}b`,
      ]);
    }
  }

  createSandbox(spec: SandboxSpec): Promise<SandboxInfo> {
    return this.#inner.createSandbox(spec);
  }

  removeSandbox(name: string): Promise<void> {
    return this.#inner.removeSandbox(name);
  }

  async connect(sandbox: string, network: string, spec?: ConnectSpec): Promise<EndpointInfo> {
    const ep = await this.#inner.connect(sandbox, network, spec);
    if (this.#fault === "wrong-address-reported" && ep.ipv4) {
      return { ...ep, ipv4: nextAddress(ep.ipv4) };
    }
    return ep;
  }

  disconnect(sandbox: string, network: string): Promise<void> {
    return this.#inner.disconnect(sandbox, network);
  }

  createService(spec: ServiceSpec): Promise<{ name: string; vip?: string }> {
    if (!this.#inner.createService) return Promise.reject(new Error("no services"));
    return this.#inner.createService(spec);
  }

  addBackend(service: string, sandbox: string): Promise<void> {
    if (!this.#inner.addBackend) return Promise.reject(new Error("no services"));
    if (this.#fault === "lb-one-backend") {
      if (this.#served.has(service)) return Promise.resolve();
      this.#served.add(service);
    }
    return this.#inner.addBackend(service, sandbox);
  }

  removeBackend(service: string, sandbox: string): Promise<void> {
    if (!this.#inner.removeBackend) return Promise.reject(new Error("no services"));
    return this.#inner.removeBackend(service, sandbox);
  }

  removeService(name: string): Promise<void> {
    if (!this.#inner.removeService) return Promise.reject(new Error("no services"));
    this.#served.delete(name);
    return this.#inner.removeService(name);
  }

  restart(host: string, how: "graceful" | "kill"): Promise<void> {
    if (!this.#inner.restart) return Promise.reject(new Error("no restart"));
    return this.#inner.restart(host, how);
  }

  debugState(host: string): Promise<string> {
    return this.#inner.debugState?.(host) ?? Promise.resolve("");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#inner[Symbol.asyncDispose]();
  }
}

/** Wraps `inner` so that it exhibits the fault `name`. */
export function withFault(inner: Implementation, name: string): Implementation {
  if (!FAULTS.some((f) => f.name === name)) {
    throw new Error(`unknown fault "${name}" (known: ${FAULTS.map((f) => f.name).join(", ")})`);
  }
  return new FaultyImplementation(inner, name);
}
