/**
 * FAULT INJECTION — the one place where the reference is deliberately broken, to prove the
 * suite can fail (`--fault NAME`, reference only). Each fault is modelled on a real bug and
 * breaks BEHAVIOUR, not the API: it wraps the reference adapter, passes every call through,
 * and then sabotages the data plane from outside (nft, ip and bridge commands in the host's
 * or a sandbox's namespace), or, for the embedded DNS, through the daemon's test-only entry
 * point (testing/faulty_daemon.ts; the production daemon has no such switch). What a fault
 * adds for itself is removed on dispose; what it makes the reference leave behind is not.
 *
 * `deno task test` asserts that each fault is caught by its named cases, each failing on
 * the assertion the fault breaks. A fault no case catches is a missing case.
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
import { exec } from "../harness/exec.ts";

/** A case that must catch a fault, and the assertion (a pattern on its failure message). */
export interface Catch {
  case: string;
  assertion: string;
}

/** A fault: what it breaks and the cases that must catch it. */
export interface Fault {
  name: string;
  /** The real bug it models. */
  breaks: string;
  caughtBy: Catch[];
  /** Injected through the daemon's test-only entry point rather than from outside. */
  daemon?: boolean;
  /** The profile of the catching cases, when not `core`. */
  profile?: string;
}

const LEAK = "expected blocked, \\d+ of \\d+ packets arrived";

/** Every fault. */
export const FAULTS: Fault[] = [
  {
    name: "no-isolation",
    breaks: "the forward chain is flushed after each network create (isolation rules lost)",
    caughtBy: [
      { case: "iso.inter-network", assertion: LEAK },
      { case: "matrix.full-reachability", assertion: "pairs differ" },
    ],
  },
  {
    name: "iso-udp-only",
    breaks: "isolation matches TCP and ICMP only: UDP crosses between networks",
    caughtBy: [{ case: "iso.inter-network", assertion: `over udp/5353: ${LEAK}` }],
  },
  {
    name: "iso-one-way",
    breaks:
      "isolation is enforced in one direction only (networks with an even third octet leak out)",
    caughtBy: [{ case: "iso.inter-network", assertion: LEAK }],
  },
  {
    name: "iso-ipv6",
    breaks: "isolation exists for IPv4 only (the ip6tables gap of Docker 20.10)",
    caughtBy: [{
      case: "conn.ipv6",
      assertion: `\\(IPv6\\) \\([0-9a-f:]+\\) over \\w+.*: ${LEAK}`,
    }],
  },
  {
    name: "iso-some-packets",
    breaks: "one packet in four crosses between networks (a racy or partial rule set)",
    caughtBy: [{
      case: "iso.inter-network",
      assertion: "expected blocked, [1-9] of 10 packets arrived",
    }],
  },
  {
    name: "icc-one-way",
    breaks:
      "with enable_icc=false, the first sandbox's port is left un-isolated and only its new connections are dropped: the other sandbox reaches it",
    caughtBy: [{ case: "iso.icc-disabled", assertion: LEAK }],
  },
  {
    name: "internal-egress",
    breaks: "an internal network's drop rules are missing and its sandboxes get a default route",
    caughtBy: [
      { case: "iso.internal-network", assertion: `external world .*${LEAK} at world` },
      { case: "iso.internal-no-route", assertion: "^the sandbox has a default route via" },
    ],
  },
  {
    name: "masquerade-missing",
    breaks:
      "the masquerade rule of each network is missing (egress leaves with the sandbox's address)",
    caughtBy: [{ case: "conn.egress-masquerade", assertion: "not masqueraded" }],
  },
  {
    name: "stale-dnat",
    breaks: "a disconnected endpoint's DNAT rules stay behind",
    caughtBy: [{ case: "port.no-stale-dnat", assertion: `${LEAK} at \\S+-heir` }],
  },
  {
    name: "loopback-publish-exposed",
    breaks:
      "ports bound to 127.0.0.1 are DNATed whatever interface the packet came in on (no guard for 127.0.0.0/8)",
    caughtBy: [{ case: "port.loopback-only", assertion: `\\(crafted\\).*${LEAK}` }],
  },
  {
    name: "wrong-host-address",
    breaks: "a port published on one host address is served on every local address",
    caughtBy: [{ case: "port.host-ip", assertion: LEAK }],
  },
  {
    name: "dns-wrong-answer",
    breaks: "the embedded resolver answers a wrong address (the endpoint's address + 1)",
    caughtBy: [{ case: "dns.container-name", assertion: "got NOERROR" }],
    daemon: true,
    profile: "dns",
  },
  {
    name: "dns-stale-record",
    breaks: "records are not removed when a sandbox disconnects or is removed",
    caughtBy: [
      { case: "dns.disconnect-removes-record", assertion: "got NOERROR" },
      { case: "dns.removed-sandbox-record", assertion: "got NOERROR" },
    ],
    daemon: true,
    profile: "dns",
  },
  {
    name: "dns-cross-network-leak",
    breaks: "the embedded resolver answers names of every network, not only the sandbox's own",
    caughtBy: [
      { case: "dns.cross-network-invisible", assertion: "got NOERROR" },
      { case: "dns.scoped-alias", assertion: "got NOERROR" },
    ],
    daemon: true,
    profile: "dns",
  },
  {
    name: "upstream-forwarding-broken",
    breaks: "queries to the upstream resolvers are dropped on their way out of the host",
    caughtBy: [{
      case: "dns.upstream-forwarding",
      assertion: "www\\.example\\.test: got (SERVFAIL|timeout)",
    }],
    profile: "dns",
  },
  {
    name: "dns-not-rearmed",
    breaks: "after a daemon restart the embedded resolver is not re-armed for existing sandboxes",
    caughtBy: [{ case: "dns.restart-keeps-records", assertion: "got (timeout|error|REFUSED)" }],
    daemon: true,
    profile: "dns",
  },
  {
    name: "lb-skew",
    breaks:
      "the first backend appears twice in each service's balancing map (it gets half the connections)",
    caughtBy: [{ case: "lb.distribution", assertion: "^shares outside" }],
    profile: "lb",
  },
  {
    name: "removed-backend-served",
    breaks: "removing a backend leaves the balancing rules as they were",
    caughtBy: [{ case: "lb.backend-removal", assertion: "[1-9]\\d* of 30 connections arrived" }],
    profile: "lb",
  },
  {
    name: "ports-not-restored",
    breaks: "published ports are not restored when the daemon restarts",
    caughtBy: [{ case: "lifecycle.restart-keeps-ports", assertion: "restart.*expected reachable" }],
  },
  {
    name: "macvlan-mode-ignored",
    breaks: "macvlan_mode is ignored: sandboxes' links are in bridge mode",
    caughtBy: [{ case: "macvlan.modes", assertion: LEAK }],
    profile: "macvlan",
  },
  {
    name: "mtu-ignored",
    breaks:
      "com.docker.network.driver.mtu is ignored on the data path (bridge, veths and sandbox at 1500)",
    caughtBy: [{ case: "conn.mtu", assertion: "has MTU 1500" }],
  },
  {
    name: "rules-leaked",
    breaks: "removing a network leaves a rule of it in the driver's nft table",
    caughtBy: [{
      case: "lifecycle.idempotent-teardown",
      assertion: "^host namespace differs after teardown",
    }],
  },
];

/** One rule of an nft table, as `nft -a list table` prints it. */
interface NftRule {
  chain: string;
  text: string;
  handle: number;
}

/** The rules of `nft -a list table ...` output, with their chain and handle. */
export function parseRules(listing: string): NftRule[] {
  const rules: NftRule[] = [];
  let chain = "";
  for (const line of listing.split("\n")) {
    const c = line.match(/^\s*chain (\S+) \{/);
    if (c) {
      chain = c[1];
      continue;
    }
    if (/^\s*(set|map|flowtable) \S+ \{/.test(line) || /^\s*\}\s*$/.test(line)) {
      chain = "";
      continue;
    }
    const r = line.match(/^\s*(.+?) # handle (\d+)$/);
    if (r && chain && !/^type /.test(r[1])) {
      rules.push({ chain, text: r[1], handle: Number(r[2]) });
    }
  }
  return rules;
}

/** The reference wrapped so that it exhibits one fault; every call passes through. */
class FaultyImplementation implements Implementation {
  readonly name: string;
  readonly #inner: Implementation;
  readonly #fault: string;
  readonly #hosts: Host[] = [];
  /** nft commands that remove what the fault added for itself (run on dispose). */
  readonly #undo: { netns: string; script: string }[] = [];
  readonly #networks = new Map<
    string,
    { spec: NetworkSpec; subnet: string; gateway?: string; endpoints: number }
  >();
  readonly #sandboxes = new Map<string, SandboxInfo>();
  #leaks = 0;

  constructor(inner: Implementation, fault: string) {
    this.#inner = inner;
    this.#fault = fault;
    this.name = `${inner.name}+${fault}`;
  }

  get #host(): Host {
    return this.#hosts[0];
  }

  async #in(netnsPath: string, argv: string[], stdin?: string) {
    const r = await exec(["nsenter", `--net=${netnsPath}`, ...argv], { stdin });
    if (r.code !== 0) {
      throw new Error(`fault ${this.#fault}: ${argv.join(" ")}: ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  #nft(script: string, netnsPath = this.#host.netnsPath) {
    return this.#in(netnsPath, ["nft", "-f", "-"], script);
  }

  async #table(suffix: string): Promise<string | undefined> {
    const out = await this.#in(this.#host.netnsPath, ["nft", "list", "tables"]);
    return out.split("\n").map((l) => l.trim().split(/\s+/)).find((p) =>
      p[0] === "table" && p[1] === "inet" && p[2]?.endsWith(suffix)
    )?.[2];
  }

  async #rules(table: string): Promise<NftRule[]> {
    return parseRules(
      await this.#in(this.#host.netnsPath, ["nft", "-a", "list", "table", "inet", table]),
    );
  }

  /** Deletes a rule of the host's table by handle; one already gone is fine. */
  async #deleteRule(table: string, rule: NftRule): Promise<void> {
    await exec([
      "nsenter",
      `--net=${this.#host.netnsPath}`,
      "nft",
      "delete",
      "rule",
      "inet",
      table,
      rule.chain,
      "handle",
      String(rule.handle),
    ]);
  }

  /** Adds (or inserts) a rule and records how to delete it on dispose. */
  async #addRule(table: string, chain: string, rule: string, insert = false, undo = true) {
    const out = await this.#in(
      this.#host.netnsPath,
      ["nft", "-e", "-a", "-f", "-"],
      `${insert ? "insert" : "add"} rule inet ${table} ${chain} ${rule}\n`,
    );
    const handle = out.match(/# handle (\d+)/)?.[1];
    if (undo && handle) {
      this.#undo.push({
        netns: this.#host.netnsPath,
        script: `delete rule inet ${table} ${chain} handle ${handle}\n`,
      });
    }
  }

  /** The host-side veth of a sandbox's interface and the sandbox's interface name. */
  async #ports(sb: SandboxInfo, ep: EndpointInfo): Promise<{ hostIf: string; inner: string }> {
    const links = JSON.parse(
      await this.#in(sb.netnsPath, ["ip", "-j", "link", "show", "dev", ep.ifname]),
    ) as { link_index?: number }[];
    const index = links[0]?.link_index;
    const host = JSON.parse(await this.#in(this.#host.netnsPath, ["ip", "-j", "link", "show"])) as {
      ifindex: number;
      ifname: string;
    }[];
    const hostIf = host.find((l) => l.ifindex === index)?.ifname;
    if (!hostIf) throw new Error(`fault ${this.#fault}: no host veth for ${sb.name}`);
    return { hostIf, inner: ep.ifname };
  }

  capabilities(): Promise<Set<Capability>> {
    return this.#inner.capabilities();
  }

  async addHost(host: Host): Promise<void> {
    this.#hosts.push(host);
    await this.#inner.addHost(host);
    if (this.#fault === "upstream-forwarding-broken") {
      const t = "cnmfault_upstream";
      await this.#nft(
        `table inet ${t} {\n chain out { type filter hook output priority 0; policy accept;\n` +
          `  udp dport 53 drop\n  tcp dport 53 drop\n }\n}\n`,
        host.netnsPath,
      );
      this.#undo.push({ netns: host.netnsPath, script: `delete table inet ${t}\n` });
    }
  }

  async createNetwork(spec: NetworkSpec) {
    const r = await this.#inner.createNetwork(spec);
    this.#networks.set(spec.name, { spec, subnet: r.subnet, gateway: r.gateway, endpoints: 0 });
    const f = this.#fault;
    if (spec.driver !== "bridge") return r;
    const table = await this.#table("_bridge");
    if (!table) return r;
    if (f === "no-isolation") {
      await this.#in(this.#host.netnsPath, ["nft", "flush", "chain", "inet", table, "forward"]);
    } else if (f === "iso-udp-only") {
      await this.#addRule(table, "forward", "meta l4proto udp accept", true);
    } else if (f === "iso-ipv6") {
      await this.#addRule(table, "forward", "meta nfproto ipv6 accept", true);
    } else if (f === "iso-some-packets") {
      await this.#addRule(table, "forward", "numgen inc mod 4 0 accept", true);
    } else if (f === "iso-one-way" && Number(r.subnet.split(".")[2]) % 2 === 0) {
      const bridge = await this.#bridgeOf(r.gateway);
      if (bridge) {
        await this.#addRule(table, "forward", `iifname "${bridge}" oifname @bridges accept`, true);
      }
    } else if (f === "internal-egress" && spec.internal) {
      for (const rule of await this.#rules(table)) {
        if (/internal-(in|out)/.test(rule.text)) {
          // cases create networks side by side: another create may have deleted it already
          await this.#deleteRule(table, rule);
        }
      }
    } else if (f === "masquerade-missing" && !spec.internal) {
      for (const rule of await this.#rules(table)) {
        if (/ masquerade comment "cnm net=\S+ masquerade"/.test(rule.text)) {
          await this.#deleteRule(table, rule);
        }
      }
    } else if (f === "mtu-ignored" && spec.options?.["com.docker.network.driver.mtu"]) {
      const bridge = await this.#bridgeOf(r.gateway);
      if (bridge) {
        await this.#in(this.#host.netnsPath, ["ip", "link", "set", bridge, "mtu", "1500"]);
      }
    }
    return r;
  }

  /** The bridge that holds `gateway` in the host namespace. */
  async #bridgeOf(gateway?: string): Promise<string | undefined> {
    if (!gateway) return undefined;
    const ip = gateway.split("/")[0];
    const addrs = JSON.parse(
      await this.#in(this.#host.netnsPath, ["ip", "-j", "addr", "show", "type", "bridge"]),
    ) as { ifname: string; addr_info: { local: string }[] }[];
    return addrs.find((l) => l.addr_info.some((a) => a.local === ip))?.ifname;
  }

  async removeNetwork(name: string): Promise<void> {
    await this.#inner.removeNetwork(name);
    const net = this.#networks.get(name);
    this.#networks.delete(name);
    if (this.#fault === "rules-leaked" && net) {
      // what a driver that forgets a rule on removal leaves: a chain with the network's rule
      const table = (await this.#table("_bridge")) ?? `${this.#host.prefix}_bridge`;
      const chain = `leaked_${this.#leaks++}`;
      await this.#nft(
        `add table inet ${table}\nadd chain inet ${table} ${chain}\n` +
          `add rule inet ${table} ${chain} ip saddr ${net.subnet} drop comment "cnm net=${name} isolation"\n`,
      );
    }
  }

  async createSandbox(spec: SandboxSpec): Promise<SandboxInfo> {
    const sb = await this.#inner.createSandbox(spec);
    this.#sandboxes.set(spec.name, sb);
    return sb;
  }

  async removeSandbox(name: string): Promise<void> {
    await this.#inner.removeSandbox(name);
    this.#sandboxes.delete(name);
  }

  async connect(sandbox: string, network: string, spec?: ConnectSpec): Promise<EndpointInfo> {
    const ep = await this.#inner.connect(sandbox, network, spec);
    const net = this.#networks.get(network);
    const sb = this.#sandboxes.get(sandbox);
    if (!net || !sb) return ep;
    net.endpoints++;
    const f = this.#fault;
    if (
      f === "icc-one-way" &&
      net.spec.options?.["com.docker.network.bridge.enable_icc"] === "false" && net.endpoints === 1
    ) {
      const { hostIf } = await this.#ports(sb, ep);
      await this.#in(this.#host.netnsPath, [
        "bridge",
        "link",
        "set",
        "dev",
        hostIf,
        "isolated",
        "off",
      ]);
      const t = "cnmfault_icc";
      await this.#nft(
        `table bridge ${t} {\n chain icc { type filter hook forward priority -200; policy accept;\n` +
          // stateless (bridge conntrack is not loaded here): what opens a conversation from
          // the first sandbox is dropped, its replies pass
          `  iifname "${hostIf}" tcp flags & (syn | ack) == syn drop\n` +
          `  iifname "${hostIf}" icmp type echo-request drop\n` +
          `  iifname "${hostIf}" udp dport 5353 drop\n }\n}\n`,
      );
      this.#undo.push({ netns: this.#host.netnsPath, script: `delete table bridge ${t}\n` });
    } else if (f === "internal-egress" && net.spec.internal && net.gateway) {
      await this.#in(sb.netnsPath, [
        "ip",
        "route",
        "replace",
        "default",
        "via",
        net.gateway.split("/")[0],
      ]);
    } else if (f === "mtu-ignored" && net.spec.options?.["com.docker.network.driver.mtu"]) {
      const { hostIf, inner } = await this.#ports(sb, ep);
      await this.#in(this.#host.netnsPath, ["ip", "link", "set", hostIf, "mtu", "1500"]);
      await this.#in(sb.netnsPath, ["ip", "link", "set", inner, "mtu", "1500"]);
    } else if (f === "macvlan-mode-ignored" && net.spec.driver === "macvlan") {
      await this.#in(sb.netnsPath, [
        "ip",
        "link",
        "set",
        ep.ifname,
        "type",
        "macvlan",
        "mode",
        "bridge",
      ]);
    } else if (spec?.publish?.length && f === "wrong-host-address") {
      const table = await this.#table("_bridge");
      for (const p of spec.publish) {
        if (!table || !p.hostIp || p.hostIp === "0.0.0.0" || !ep.ipv4) continue;
        await this.#addRule(
          table,
          "ports",
          `meta nfproto ipv4 fib daddr type local ${p.protocol} dport ${p.hostPort} dnat ip to ${
            ep.ipv4.split("/")[0]
          }:${p.containerPort}`,
        );
      }
    } else if (
      spec?.publish?.some((p) => p.hostIp === "127.0.0.1") && f === "loopback-publish-exposed"
    ) {
      const table = await this.#table("_bridge");
      if (table) {
        for (const rule of await this.#rules(table)) {
          if (/127\.0\.0\.0\/8/.test(rule.text) && /drop|return/.test(rule.text)) {
            await this.#deleteRule(table, rule);
            this.#undo.push({
              netns: this.#host.netnsPath,
              script: `add rule inet ${table} ${rule.chain} ${rule.text}\n`,
            });
          }
        }
      }
    }
    return ep;
  }

  async disconnect(sandbox: string, network: string): Promise<void> {
    const table = this.#fault === "stale-dnat" ? await this.#table("_bridge") : undefined;
    const before = table ? (await this.#rules(table)).filter((r) => r.chain === "ports") : [];
    await this.#inner.disconnect(sandbox, network);
    const net = this.#networks.get(network);
    if (net) net.endpoints--;
    if (table) {
      const after = new Set((await this.#rules(table)).map((r) => r.text));
      for (const r of before) if (!after.has(r.text)) await this.#addRule(table, "ports", r.text);
    }
  }

  createService(spec: ServiceSpec): Promise<{ name: string; vip?: string }> {
    if (!this.#inner.createService) return Promise.reject(new Error("no services"));
    return this.#inner.createService(spec);
  }

  async addBackend(service: string, sandbox: string): Promise<void> {
    if (!this.#inner.addBackend) throw new Error("no services");
    await this.#inner.addBackend(service, sandbox);
    if (this.#fault !== "lb-skew") return;
    const table = await this.#table("_lb");
    if (!table) return;
    for (const rule of await this.#rules(table)) {
      const m = rule.text.match(/numgen random mod (\d+) map \{ ([^}]*) \}/);
      if (!m || Number(m[1]) < 2) continue;
      const n = Number(m[1]);
      const first = m[2].split(",")[0].split(":")[1].trim();
      const skewed = rule.text.replace(
        m[0],
        `numgen random mod ${n + 1} map { ${m[2].trim()}, ${n} : ${first} }`,
      );
      await this.#in(
        this.#host.netnsPath,
        ["nft", "-f", "-"],
        `replace rule inet ${table} ${rule.chain} handle ${rule.handle} ${skewed}\n`,
      );
    }
  }

  async removeBackend(service: string, sandbox: string): Promise<void> {
    if (!this.#inner.removeBackend) throw new Error("no services");
    const table = this.#fault === "removed-backend-served" ? await this.#table("_lb") : undefined;
    const before = table ? await this.#rules(table) : [];
    await this.#inner.removeBackend(service, sandbox);
    if (!table) return;
    // put the balancing rules back as they were before the removal
    const script = [...new Set(before.map((r) => r.chain))].flatMap((chain) => [
      `flush chain inet ${table} ${chain}`,
      ...before.filter((r) => r.chain === chain).map((r) =>
        `add rule inet ${table} ${chain} ${r.text}`
      ),
    ]).join("\n");
    await this.#nft(script + "\n");
  }

  removeService(name: string): Promise<void> {
    if (!this.#inner.removeService) return Promise.reject(new Error("no services"));
    return this.#inner.removeService(name);
  }

  async restart(host: string, how: "graceful" | "kill"): Promise<void> {
    if (!this.#inner.restart) throw new Error("no restart");
    await this.#inner.restart(host, how);
    if (this.#fault === "ports-not-restored") {
      const table = await this.#table("_bridge");
      if (table) {
        await this.#in(this.#host.netnsPath, ["nft", "flush", "chain", "inet", table, "ports"]);
      }
    }
  }

  debugState(host: string): Promise<string> {
    return this.#inner.debugState?.(host) ?? Promise.resolve("");
  }

  version(): Promise<string> {
    return this.#inner.version?.() ?? Promise.resolve("");
  }

  preconditions(): Promise<Partial<Record<Capability, string>>> {
    return this.#inner.preconditions?.() ?? Promise.resolve({});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const u of this.#undo.reverse()) {
      await exec(["nsenter", `--net=${u.netns}`, "nft", "-f", "-"], { stdin: u.script });
    }
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
