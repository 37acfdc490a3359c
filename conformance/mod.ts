/**
 * The conformance runner: builds throwaway hosts, runs the catalogue (and topology files)
 * against one or more implementations, audits the machine, and returns a {@linkcode RunResult}.
 *
 * ```ts
 * import { runConformance } from "./conformance/mod.ts";
 * const run = await runConformance({ impls: ["reference"], profiles: ["core"] });
 * ```
 * @module
 */
import { randomHex } from "../impl/model/names.ts";
import { FAULTS, withFault } from "./adapters/faults.ts";
import { residue, snapshot } from "./harness/audit.ts";
import { createHost, type HarnessHost, removeByPrefix, stopHost } from "./harness/hosts.ts";
import type { AdapterFactory, Capability, Implementation } from "./impl.ts";
import { CATALOGUE } from "./cases/mod.ts";
import { type Case, CaseFailure, CaseSkip, createContext } from "./cases/framework.ts";
import { DIVERGENCES } from "./divergences.ts";
import { topologyCase } from "./cases/topology.ts";
import type { CaseResult, RunResult } from "./types.ts";
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
  /** Called with each result as it lands. */
  onResult?: (r: CaseResult) => void;
  log?: (line: string) => void;
}

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

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

async function runCase(
  c: Case,
  impl: Implementation,
  hosts: HarnessHost[],
  caps: Set<Capability>,
  tag: string,
  subnets: () => string,
): Promise<CaseResult> {
  const base = {
    id: c.id,
    area: c.area,
    profile: c.profile,
    impl: impl.name,
    asserts: c.asserts,
    mirrors: c.mirrors,
  };
  const missing = c.needs.filter((n) => !caps.has(n));
  if (missing.length) {
    return {
      ...base,
      verdict: "skip",
      reason: `needs ${missing.join(", ")}, which ${impl.name} does not declare`,
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
    } else {
      const e = err as Error & { kind?: string };
      result = {
        ...base,
        verdict: "fail",
        ms: 0,
        failure: {
          message: `${e.kind ? `${e.kind}: ` : ""}${e.message ?? String(err)}`,
          reproduce: [],
          state: await debugState(hosts[0].netnsPath).catch(() => ""),
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
  return applyDivergence(result);
}

function applyDivergence(r: CaseResult): CaseResult {
  const implName = r.impl.split("+")[0];
  const d = DIVERGENCES.find((x) => x.impl === implName && x.case === r.id);
  if (!d) return r;
  if (r.verdict === "fail") return { ...r, verdict: "xfail", reason: `${d.reason} (${d.ref})` };
  if (r.verdict === "pass") {
    return {
      ...r,
      verdict: "fail",
      failure: {
        message:
          `listed as a divergence of ${implName} but passed: update conformance/divergences.ts`,
        reproduce: [],
      },
    };
  }
  return r;
}

/** Runs the suite. */
export async function runConformance(opts: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const log = opts.log ?? (() => {});
  const cases = await selectCases(opts);
  const before = await snapshot();
  const results: CaseResult[] = [];
  const implNames: string[] = [];
  const prefixes: string[] = [];
  let anyFailure = false;
  for (const spec of opts.impls) {
    const prefix = `cnmt-${randomHex(6)}`;
    prefixes.push(prefix);
    const factory = await loadAdapter(spec);
    let impl: Implementation | undefined;
    const hosts: HarnessHost[] = [];
    try {
      hosts.push(await createHost(prefix, "h1"));
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
      const subnets = subnetAllocator();
      const parallel = cases.filter((c) => !c.exclusive);
      const exclusive = cases.filter((c) => c.exclusive);
      let next = 0;
      const tagOf = (c: Case) => `k${String(cases.indexOf(c)).padStart(2, "0")}`;
      const worker = async () => {
        while (next < parallel.length) {
          const c = parallel[next++];
          const r = await runCase(c, impl!, hosts, caps, tagOf(c), subnets);
          results.push(r);
          opts.onResult?.(r);
        }
      };
      await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
      for (const c of exclusive) {
        const r = await runCase(c, impl, hosts, caps, tagOf(c), subnets);
        results.push(r);
        opts.onResult?.(r);
      }
    } catch (err) {
      const r: CaseResult = {
        id: "harness.setup",
        area: "harness",
        profile: "core",
        impl: impl?.name ?? spec,
        verdict: "fail",
        ms: 0,
        asserts: "The harness can build hosts and start the implementation",
        mirrors: "-",
        failure: { message: err instanceof Error ? err.message : String(err), reproduce: [] },
      };
      results.push(r);
      opts.onResult?.(r);
    } finally {
      try {
        await impl?.[Symbol.asyncDispose]();
      } catch (err) {
        log(`dispose: ${err}`);
      }
      for (const h of hosts) await stopHost(h);
      anyFailure ||= results.some((r) => r.verdict === "fail");
      if (!(opts.keepOnFailure && anyFailure)) await removeByPrefix(prefix);
    }
  }
  const after = await snapshot();
  let left: string[] = [];
  if (!(opts.keepOnFailure && anyFailure)) {
    for (const p of prefixes) left.push(...await residue(before, after, p));
    left = [...new Set(left)];
  }
  return {
    impls: implNames,
    results,
    startedAt,
    wallMs: performance.now() - started,
    residue: left,
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
