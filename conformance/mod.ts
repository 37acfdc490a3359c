/**
 * The conformance runner: builds throwaway hosts, runs the catalogue (and topology files)
 * against one or more implementations, audits the machine, and returns a {@linkcode RunResult}.
 *
 * ```ts
 * import { runConformance } from "./conformance/mod.ts";
 * const run = await runConformance({ impls: ["reference"], profiles: ["core"] });
 * ```
 *
 * The audit: the root namespace and the shared places are snapshot at the start; each host
 * namespace (and its outside and LAN namespaces) right after the implementation's `addHost`
 * and one priming cycle (a network, a sandbox, a connect and their removal, so an engine's
 * first-use objects belong to "before" and no verdict depends on case order). After the
 * cases and the implementation's OWN teardown, and before any forced removal, everything is
 * compared: every difference is residue, reported by name, and fails the run. Only then does
 * the harness force-clean, and it reports what it had to remove.
 * @module
 */
import { FAULTS, withFault } from "./adapters/faults.ts";
import {
  diffSnapshots,
  type NsSnapshot,
  processesOf,
  snapshotMachine,
  snapshotNetns,
} from "./harness/audit.ts";
import { exec } from "./harness/exec.ts";
import { createHost, type HarnessHost, removeByPrefix, stopHost } from "./harness/hosts.ts";
import { createUnderlay, etcdctlArgv, type Underlay } from "./harness/underlay.ts";
import {
  type AdapterFactory,
  type Capability,
  type Implementation,
  ImplementationError,
} from "./impl.ts";
import { CATALOGUE } from "./cases/mod.ts";
import {
  type Case,
  CaseFailure,
  CaseSkip,
  createContext,
  HarnessError,
} from "./cases/framework.ts";
import { applyDivergence } from "./divergences.ts";
import { topologyCase } from "./cases/topology.ts";
import type { CaseResult, ProfileTiming, RunResult } from "./types.ts";
import { debugState } from "./probes/mod.ts";

/** Options of {@linkcode runConformance}. */
export interface RunOptions {
  /** `reference`, `docker`, or a path to an adapter module. */
  impls: string[];
  implOptions?: Record<string, string>;
  /** Profiles to run (`core` default; `all` = every profile). */
  profiles?: string[];
  filter?: RegExp;
  skip?: RegExp;
  /** Extra topology files (YAML). */
  topologies?: string[];
  /** Run the shipped fixtures/*.yaml as `topology.*` cases (default true). */
  fixtures?: boolean;
  /** Fault to inject into the reference. */
  fault?: string;
  /** Keep hosts of a failed run for inspection. */
  keepOnFailure?: boolean;
  /** How many cases run at once (default 4). */
  concurrency?: number;
  /** Run each case this many times and report the cases whose verdict changed (default 1). */
  repeat?: number;
  /** Called with each result as it lands. */
  onResult?: (r: CaseResult) => void;
  log?: (line: string) => void;
}

/** Speed budgets per profile against the reference on a 2-core machine (issue 12). */
export const PROFILE_BUDGET_MS: Record<string, number> = {
  core: 30_000,
  dns: 15_000,
  lb: 15_000,
  macvlan: 15_000,
  overlay: 30_000,
};

/**
 * How many cases of a profile run at once unless `--concurrency` says otherwise (default 4).
 * lb: measured on 2 cores against the reference, 4 at once took 16.8 s, 2 at once 13.7 s,
 * one at a time 14.3 s (every service change rewrites the daemon's balancing table, and
 * 600-connection cases are CPU-bound).
 */
export const PROFILE_CONCURRENCY: Record<string, number> = { lb: 2 };

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** `n` random bytes as hex (run prefixes). */
export function randomHex(n: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(n / 2)));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, n);
}

/** Loads an adapter factory by name or path. */
export async function loadAdapter(spec: string): Promise<AdapterFactory> {
  const path = spec === "reference"
    ? "./adapters/reference.ts"
    : spec === "docker"
    ? "./adapters/docker.ts"
    : new URL(spec, `file://${Deno.cwd()}/`).href;
  let mod: { default?: AdapterFactory };
  try {
    mod = await import(path);
  } catch (err) {
    throw new Error(
      `cannot load adapter "${spec}": ${err instanceof Error ? err.message.split("\n")[0] : err}`,
    );
  }
  if (typeof mod.default !== "function") {
    throw new Error(`adapter "${spec}" must default-export a factory (options) => Implementation`);
  }
  return mod.default;
}

/** The cases a run selects, in order. */
export async function selectCases(opts: RunOptions): Promise<Case[]> {
  const profiles = opts.profiles?.length ? opts.profiles : ["core"];
  const files = [...(opts.topologies ?? [])];
  if (opts.fixtures !== false) {
    const dir = `${REPO_ROOT}/fixtures`;
    try {
      for await (const e of Deno.readDir(dir)) {
        if (e.name.endsWith(".yaml")) files.push(`${dir}/${e.name}`);
      }
    } catch { /* no fixtures dir */ }
  }
  const topo = await Promise.all(files.sort().map((f) => topologyCase(f)));
  return [...CATALOGUE, ...topo].filter((c) =>
    (profiles.includes("all") || profiles.includes(c.profile) ||
      opts.topologies?.length && c.area === "topology" && !c.id.startsWith("topology.fixture")) &&
    (!opts.filter || opts.filter.test(c.id)) &&
    (!opts.skip || !opts.skip.test(c.id))
  );
}

function subnetAllocator(): () => string {
  let n = 0;
  // 10.210.0.0/15, one /24 per call; topology fixtures use 10.200-10.207
  return () => {
    const i = n++;
    return `10.${210 + Math.floor(i / 256)}.${i % 256}.0/24`;
  };
}

interface Judged {
  impl: Implementation;
  hosts: HarnessHost[];
  caps: Set<Capability>;
  preconditions: Partial<Record<Capability, string>>;
  implName: string;
  version?: string;
}

async function runCase(
  c: Case,
  j: Judged,
  tag: string,
  subnets: () => string,
  repeat?: number,
): Promise<CaseResult> {
  const { impl, hosts, caps } = j;
  const base = {
    id: c.id,
    area: c.area,
    profile: c.profile,
    impl: impl.name,
    asserts: c.asserts,
    mirrors: c.mirrors,
    ...(repeat !== undefined ? { repeat } : {}),
  };
  const missing = c.needs.filter((n) => !caps.has(n));
  if (missing.length) {
    const pre = missing.map((m) => j.preconditions[m]).filter(Boolean);
    return {
      ...base,
      verdict: "skip",
      reason: pre.length
        ? `precondition: ${pre.join("; ")}`
        : `needs ${missing.join(", ")}, which ${impl.name} does not declare`,
      ms: 0,
    };
  }
  const t0 = performance.now();
  const ctx = createContext({ impl, hosts, caps, tag, subnets });
  let result: CaseResult;
  try {
    await c.run(ctx);
    result = { ...base, verdict: "pass", ms: 0, grid: ctx.grid };
  } catch (err) {
    if (err instanceof CaseSkip) {
      result = { ...base, verdict: "skip", reason: err.message, ms: 0 };
    } else if (err instanceof CaseFailure) {
      const state = await impl.debugState?.(hosts[0].name).catch(() => "");
      result = {
        ...base,
        verdict: "fail",
        ms: 0,
        failure: { ...err.failure, state: [err.failure.state, state].filter(Boolean).join("\n") },
        grid: err.grid,
      };
    } else if (err instanceof ImplementationError || (err as { kind?: string })?.kind) {
      // the implementation refused or failed a request the case needed
      const e = err as Error & { kind?: string };
      result = {
        ...base,
        verdict: "fail",
        ms: 0,
        failure: {
          message: `${e.kind}: ${e.message}`,
          reproduce: [],
          state: await debugState(hosts[0].netnsPath).catch(() => ""),
        },
      };
    } else {
      // the harness could not judge: never a pass
      const e = err as Error;
      result = {
        ...base,
        verdict: "error",
        ms: 0,
        failure: {
          message: `harness error: ${e?.message ?? String(err)}`,
          reproduce: err instanceof HarnessError ? err.reproduce : [],
        },
      };
    }
  }
  const cleanupErrors = await ctx.finish();
  if (cleanupErrors.length && result.verdict === "pass") {
    result = {
      ...result,
      verdict: "fail",
      failure: { message: `teardown failed: ${cleanupErrors.join("; ")}`, reproduce: [] },
    };
  }
  result.ms = performance.now() - t0;
  if (ctx.notes.length) result.notes = ctx.notes;
  return applyDivergence(result, j.implName, j.version);
}

/** The namespaces of a harness host: the host itself, its world and its LAN machine. */
function hostNamespaces(h: HarnessHost): [string, string][] {
  return [
    [`host ${h.name}`, h.netnsPath],
    [`host ${h.name} world`, h.outsideNetnsPath],
    [`host ${h.name} LAN`, h.lanNetnsPath],
  ];
}

/** How many hosts the underlay of a multi-host run has (node loss needs two survivors). */
export const CLUSTER_HOSTS = 3;

/** The underlay's own namespaces: its bridge and the store's (etcd runs there). */
function clusterNamespaces(ul: Underlay): [string, string][] {
  return [
    ["underlay bridge", `/run/netns/${ul.netns}`],
    ["underlay store", `/run/netns/${ul.storeNetns}`],
  ];
}

/**
 * The keys in the cluster store, as audit items (`key K`): what an implementation keeps
 * there is residue once it is torn down, as much as a link is. Undefined while etcd is down.
 */
async function storeKeys(ul: Underlay): Promise<NsSnapshot | undefined> {
  const t0 = performance.now();
  const r = await exec(
    etcdctlArgv(ul.storeNetns, ul.storeUrl, ["get", "", "--prefix", "--keys-only"]),
    { timeoutMs: 5_000, env: { ETCDCTL_API: "3" } },
  );
  if (r.code !== 0) return undefined;
  const items = new Set(r.stdout.split("\n").filter(Boolean).map((k) => `key ${k}`));
  return { source: "store", items, errors: [], ms: performance.now() - t0 };
}

/**
 * One priming cycle on a host: a (dual-stack, when declared) network, a sandbox, a connect
 * with a published port and their removal, so first-use objects (an engine's chains, a
 * driver's forwarding sysctls) exist before the "before" snapshot.
 */
async function prime(impl: Implementation, host: HarnessHost, caps: Set<Capability>) {
  const net = `${host.prefix}-prime`.slice(-40);
  const sb = `${host.prefix}-prime-sb`.slice(-40);
  await impl.createNetwork({
    name: net,
    driver: "bridge",
    host: host.name,
    subnet: "10.211.255.0/24",
    ...(caps.has("ipv6") ? { ipv6Subnet: "fd00:cafe:211:255::/64" } : {}),
  });
  try {
    await impl.createSandbox({ name: sb, host: host.name });
    try {
      await impl.connect(sb, net, {
        publish: caps.has("ports")
          ? [{ hostPort: 18999, containerPort: 80, protocol: "tcp" }]
          : undefined,
      });
      await impl.disconnect(sb, net);
    } finally {
      await impl.removeSandbox(sb);
    }
  } finally {
    await impl.removeNetwork(net);
  }
  if (!host.underlay) return;
  // an overlay connect makes the host's first-use objects of that driver (docker_gwbridge,
  // the VXLAN port's sysctls): they belong to "before" too
  const ov = `${host.prefix}-prime-ov`.slice(-40);
  await impl.createNetwork({
    name: ov,
    driver: "overlay",
    host: host.name,
    subnet: "10.211.254.0/24",
  });
  try {
    await impl.createSandbox({ name: sb, host: host.name });
    try {
      await impl.connect(sb, ov);
      await impl.disconnect(sb, ov);
    } finally {
      await impl.removeSandbox(sb);
    }
  } finally {
    await impl.removeNetwork(ov);
  }
}

/** Runs the suite. */
export async function runConformance(opts: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const log = opts.log ?? (() => {});
  const cases = await selectCases(opts);
  const results: CaseResult[] = [];
  const implNames: string[] = [];
  const residue: string[] = [];
  const forced: string[] = [];
  const timings: ProfileTiming[] = [];
  const versions: Record<string, string> = {};
  const repeat = Math.max(1, opts.repeat ?? 1);
  for (const spec of opts.impls) {
    const prefix = `cnmt-${randomHex(6)}`;
    const factory = await loadAdapter(spec);
    let impl: Implementation | undefined;
    const hosts: HarnessHost[] = [];
    let cluster: Underlay | undefined;
    let storeBefore: NsSnapshot | undefined;
    let rootBefore: NsSnapshot | undefined;
    let machineBefore: NsSnapshot | undefined;
    const hostBefore = new Map<string, NsSnapshot>();
    let anyFailure = false;
    const emit = (r: CaseResult) => {
      results.push(r);
      if (r.verdict === "fail" || r.verdict === "error") anyFailure = true;
      opts.onResult?.(r);
    };
    try {
      hosts.push(await createHost(prefix, "h1"));
      if (cases.some((c) => c.needs.includes("multi-host"))) {
        // hosts o1..o3 on an underlay with a real etcd, besides h1 (other profiles keep h1)
        cluster = await createUnderlay({ prefix: `${prefix}-o`, hosts: CLUSTER_HOSTS, log });
        for (const [i, host] of cluster.hosts.entries()) {
          hosts.push(await createHost(prefix, `o${i + 1}`, { cluster, host }));
        }
      }
      // the harness's own hosts belong to "before"
      rootBefore = await snapshotNetns();
      machineBefore = await snapshotMachine();
      const fault = FAULTS.find((f) => f.name === opts.fault);
      const options = { ...(opts.implOptions ?? {}) };
      if (fault?.daemon && spec === "reference") options["daemon-fault"] = fault.name;
      impl = await factory({ options, repoRoot: REPO_ROOT, log });
      if (opts.fault) {
        if (spec !== "reference") throw new Error("--fault works with the reference only");
        impl = withFault(impl, opts.fault);
      }
      implNames.push(impl.name);
      for (const h of hosts) await impl.addHost(h);
      const caps = await impl.capabilities();
      // an implementation without multi-host may leave the underlay's hosts alone
      const judgedHosts = hosts.filter((h) => !h.underlay || caps.has("multi-host"));
      for (const h of judgedHosts) await prime(impl, h, caps);
      for (const h of hosts) {
        for (const [where, path] of hostNamespaces(h)) {
          hostBefore.set(where, await snapshotNetns(path));
        }
      }
      if (cluster) {
        for (const [where, path] of clusterNamespaces(cluster)) {
          hostBefore.set(where, await snapshotNetns(path));
        }
        storeBefore = await storeKeys(cluster);
      }
      // a capability the adapter found this machine lacking is not had here: its cases SKIP
      // with the precondition's reason
      const preconditions = (await impl.preconditions?.()) ?? {};
      const usable = new Set([...caps].filter((c) => !(c in preconditions)));
      const judged: Judged = {
        impl,
        hosts,
        caps: usable,
        preconditions,
        implName: impl.name.split("+")[0],
        version: await impl.version?.().catch(() => undefined),
      };
      if (judged.version) versions[impl.name] = judged.version;
      const subnets = subnetAllocator();
      const profiles = [...new Set(cases.map((c) => c.profile))];
      // with --repeat, whole rounds one after another: repetitions of a case never run side
      // by side (they use the same host ports and fixture subnets)
      for (let round = 0; round < repeat; round++) {
        for (const profile of profiles) {
          const t0 = performance.now();
          const mine = cases.filter((c) => c.profile === profile);
          const runs = (list: Case[]) =>
            list.map((c) => ({
              c,
              k: round,
              tag: `k${String(cases.indexOf(c)).padStart(2, "0")}${repeat > 1 ? `r${round}` : ""}`,
            }));
          const parallel = runs(mine.filter((c) => !c.exclusive));
          let next = 0;
          const worker = async () => {
            while (next < parallel.length) {
              const { c, k, tag } = parallel[next++];
              emit(await runCase(c, judged, tag, subnets, repeat > 1 ? k : undefined));
            }
          };
          const width = opts.concurrency ?? PROFILE_CONCURRENCY[profile] ?? 4;
          await Promise.all(Array.from({ length: width }, worker));
          for (const { c, k, tag } of runs(mine.filter((c) => c.exclusive))) {
            emit(await runCase(c, judged, tag, subnets, repeat > 1 ? k : undefined));
          }
          timings.push({
            impl: impl.name,
            profile: repeat > 1 ? `${profile} (round ${round + 1})` : profile,
            ms: performance.now() - t0,
            budgetMs: PROFILE_BUDGET_MS[profile],
          });
        }
      }
    } catch (err) {
      emit({
        id: "harness.setup",
        area: "harness",
        profile: "core",
        impl: impl?.name ?? spec,
        verdict: "error",
        ms: 0,
        asserts: "The harness can build hosts and start the implementation",
        mirrors: "-",
        failure: { message: err instanceof Error ? err.message : String(err), reproduce: [] },
      });
    } finally {
      try {
        await impl?.[Symbol.asyncDispose]();
      } catch (err) {
        residue.push(`[${spec}] teardown failed: ${err instanceof Error ? err.message : err}`);
      }
      // the audit: after the implementation's own teardown, before any forced removal
      const tag = opts.impls.length > 1 ? `[${impl?.name ?? spec}] ` : "";
      const harnessPids = hosts.flatMap((h) => [
        ...(h.dnsStub ? [h.dnsStub.pid] : []),
        ...h.responders.flatMap((r) => r.pids),
      ]);
      const audit = async (): Promise<string[]> => {
        const found: string[] = [];
        const places = [
          ...hosts.flatMap(hostNamespaces),
          ...(cluster ? clusterNamespaces(cluster) : []),
        ];
        for (const [where, path] of places) {
          const before = hostBefore.get(where);
          if (!before) continue;
          const after = await snapshotNetns(path).catch(() => undefined);
          if (after) found.push(...diffSnapshots(before, after, where));
        }
        if (cluster && storeBefore) {
          const after = await storeKeys(cluster);
          if (!after) found.push(`! store: etcd at ${cluster.storeUrl} does not answer`);
          else found.push(...diffSnapshots(storeBefore, after, "store"));
        }
        if (rootBefore) found.push(...diffSnapshots(rootBefore, await snapshotNetns(), "root"));
        if (machineBefore) {
          found.push(
            ...diffSnapshots(machineBefore, await snapshotMachine(), "machine", {
              prefix,
              kinds: ["netns", "/etc/netns", "tmp"],
            }),
          );
        }
        found.push(
          ...await processesOf({
            prefix,
            netnsPaths: places.map(([, p]) => p),
            // etcd (the harness's, its pid changes when a case restarts it)
            exclude: [...harnessPids, ...(cluster?.storePid ? [cluster.storePid] : [])],
          }),
        );
        return found;
      };
      // a teardown may finish in the kernel just after it returned (a deleted namespace's
      // links go with the kernel's asynchronous namespace clean-up): converge, bounded, and
      // what is still there after 5 s is residue
      let found = await audit();
      for (const end = performance.now() + 5000; found.length && performance.now() < end;) {
        await new Promise((r) => setTimeout(r, 250));
        found = await audit();
      }
      residue.push(...found.map((f) => `${tag}${f}`));
      if (found.length) anyFailure = true;
      for (const h of hosts) await stopHost(h);
      if (!(opts.keepOnFailure && anyFailure)) {
        try {
          await cluster?.[Symbol.asyncDispose]();
        } catch (err) {
          residue.push(`${tag}${err instanceof Error ? err.message : err}`);
        }
        // the harness's own namespaces and scratch directories are not worth reporting
        const own = new Set(hosts.flatMap((h) => [
          `netns ${h.netns}`,
          `netns ${h.outsideNetns}`,
          `netns ${h.lanNetns}`,
          h.stateDir,
        ]));
        for (const ns of cluster?.namespaces ?? []) own.add(`netns ${ns}`);
        forced.push(
          ...(await removeByPrefix(prefix)).filter((f) => !own.has(f)).map((f) => `${tag}${f}`),
        );
      }
    }
  }
  const unstable: string[] = [];
  if (repeat > 1) {
    const by = new Map<string, Set<string>>();
    for (const r of results) {
      const k = `${r.id} [${r.impl}]`;
      by.set(k, (by.get(k) ?? new Set()).add(r.verdict));
    }
    for (const [k, v] of by) if (v.size > 1) unstable.push(`${k}: ${[...v].join(", ")}`);
  }
  return {
    impls: implNames,
    results,
    startedAt,
    wallMs: performance.now() - started,
    residue,
    forced,
    timings,
    unstable,
    versions,
    environment: await environment(),
  };
}

async function environment(): Promise<Record<string, string>> {
  const { exec } = await import("./harness/exec.ts");
  const [kernel, nft, ip] = await Promise.all([
    exec(["uname", "-r"]),
    exec(["nft", "--version"]),
    exec(["ip", "-V"]),
  ]);
  return {
    kernel: kernel.stdout.trim(),
    nft: nft.stdout.trim(),
    iproute2: ip.stdout.trim(),
    deno: Deno.version.deno,
  };
}
