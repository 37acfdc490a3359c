/**
 * How cases are written: `defineCase({ id, area, profile, needs, asserts, mirrors, run })`.
 * A case gets a {@linkcode CaseContext}: the implementation (through the public interface
 * only), the harness's hosts, helpers that create objects with unique names and remove them
 * afterwards, and assertions that fail with a reproducer. Cases never import impl/.
 * @module
 */
import type {
  Capability,
  ConnectSpec,
  EndpointInfo,
  Implementation,
  NetworkSpec,
  SandboxInfo,
  ServiceSpec,
} from "../impl.ts";
import type { HarnessHost } from "../harness/hosts.ts";
import {
  debugState,
  probeIcmp,
  probeIcmp as icmp,
  type ProbeResult,
  probeTcp,
  probeUdp,
  reachMatrix,
  type Responders,
  startResponders,
} from "../probes/mod.ts";
import type { CaseMeta, Failure, Grid } from "../types.ts";

/** Thrown by assertions: the case failed, with everything needed to look into it. */
export class CaseFailure extends Error {
  readonly failure: Failure;
  readonly grid?: Grid;
  constructor(failure: Failure, grid?: Grid) {
    super(failure.message);
    this.failure = failure;
    this.grid = grid;
  }
}

/** Thrown to skip a case at run time (e.g. the implementation lacks an optional verb). */
export class CaseSkip extends Error {}

/** A protocol a reachability probe uses. */
export type Proto = "icmp" | "tcp" | "udp";

/** A sandbox the case made, with its addresses per network. */
export interface Sb extends SandboxInfo {
  /** Network name (as the case named it) → endpoint. */
  eps: Record<string, EndpointInfo>;
}

/** What a case runs with. */
export interface CaseContext {
  impl: Implementation;
  hosts: HarnessHost[];
  caps: Set<Capability>;
  /** A name unique to this case in this run: `<tag>-<base>`. */
  name(base: string): string;
  /** A /24 no other case uses (10.210.0.0/15). */
  subnet(): string;
  /** Creates a network (unique name from `base`), removed after the case. */
  network(
    base: string,
    spec?: Omit<NetworkSpec, "name">,
  ): Promise<{ name: string; subnet: string; gateway?: string }>;
  /** Creates a sandbox (unique name from `base`), removed after the case. */
  sandbox(base: string, hostname?: string): Promise<Sb>;
  /** Connects a sandbox to a network the case created (by its full name). */
  connect(sb: Sb, network: string, spec?: ConnectSpec): Promise<EndpointInfo>;
  /** Starts TCP/UDP/HTTP responders in a sandbox answering with its name; stopped after. */
  responders(
    sb: Sb,
    opts: { tcp?: number[]; udp?: number[]; http?: number[] },
  ): Promise<Responders>;
  /** Creates a service (unique name from `base`), removed after the case; skips when the implementation has no services. */
  service(base: string, spec: Omit<ServiceSpec, "name">): Promise<{ name: string; vip?: string }>;
  /** Adds a line of detail shown with the result (e.g. observed shares). */
  note(text: string): void;
  /** Registers cleanup, run last-in-first-out after the case. */
  defer(fn: () => Promise<void> | void): void;
  /** Fails the case. */
  fail(message: string, details?: Partial<Failure>, grid?: Grid): never;
  /** Shows a reachability grid with the case's result (also when it passes). */
  showGrid(grid: Grid): void;
  /** Probes `from` → `ip` and fails unless the outcome is `want` (and the identity matches). */
  expectReach(
    from: Sb,
    to: { ip: string; identity?: string; label: string },
    proto: Proto,
    want: boolean,
    port?: number,
  ): Promise<void>;
  /** Runs a probe of any protocol. */
  probe(
    from: Sb,
    ip: string,
    proto: Proto,
    port?: number,
    timeoutMs?: number,
  ): Promise<ProbeResult>;
  /** Expects `p` to be refused by the implementation with an error of `kind` (any when absent). */
  expectRefused(p: Promise<unknown>, what: string, kind?: string): Promise<Error>;
}

/** A case: its facts and how to run it. */
export interface Case extends CaseMeta {
  /** Runs alone (after the parallel ones): it restarts things or audits whole-host state. */
  exclusive?: boolean;
  run(ctx: CaseContext): Promise<void>;
}

/** Declares a case. */
export function defineCase(c: Case): Case {
  return c;
}

/** Strips the prefix length. */
export function addr(cidr?: string): string {
  if (!cidr) throw new Error("no address");
  return cidr.split("/")[0];
}

/** Internal: builds a context; `finish()` runs the deferred cleanups. */
export function createContext(options: {
  impl: Implementation;
  hosts: HarnessHost[];
  caps: Set<Capability>;
  tag: string;
  subnets: () => string;
}): CaseContext & { finish(): Promise<string[]>; grid?: Grid; notes: string[] } {
  const { impl, hosts, caps, tag } = options;
  const deferred: (() => Promise<void> | void)[] = [];
  const defer = (fn: () => Promise<void> | void) => deferred.push(fn);

  const fail = (message: string, details: Partial<Failure> = {}, grid?: Grid): never => {
    throw new CaseFailure({ message, reproduce: [], ...details }, grid);
  };

  const probe = (from: Sb, ip: string, proto: Proto, port = 7, timeoutMs?: number) => {
    const opts = timeoutMs ? { timeoutMs } : undefined;
    if (proto === "icmp") return probeIcmp(from.netnsPath, ip, opts);
    if (proto === "tcp") return probeTcp(from.netnsPath, ip, port, opts);
    return probeUdp(from.netnsPath, ip, port, opts);
  };

  const ctx: CaseContext & { finish(): Promise<string[]>; grid?: Grid; notes: string[] } = {
    notes: [],
    impl,
    hosts,
    caps,
    name: (base) => `${tag}-${base}`,
    subnet: options.subnets,
    async network(base, spec = { driver: "bridge" }) {
      const name = `${tag}-${base}`;
      const created = await impl.createNetwork({ ...spec, name });
      defer(() => impl.removeNetwork(name));
      return created;
    },
    async sandbox(base, hostname) {
      const name = `${tag}-${base}`;
      const info = await impl.createSandbox({ name, hostname });
      defer(() => impl.removeSandbox(name));
      return { ...info, eps: {} };
    },
    async connect(sb, network, spec) {
      const ep = await impl.connect(sb.name, network, spec);
      sb.eps[network] = ep;
      return ep;
    },
    async responders(sb, opts) {
      const r = await startResponders(sb.netnsPath, sb.name, opts);
      defer(() => r.stop());
      return r;
    },
    async service(base, spec) {
      if (!impl.createService || !impl.removeService) {
        throw new CaseSkip(`${impl.name} has no services`);
      }
      const name = `${tag}-${base}`;
      const created = await impl.createService({ ...spec, name });
      defer(() => impl.removeService!(name));
      return created;
    },
    note(text) {
      ctx.notes.push(text);
    },
    defer,
    fail,
    showGrid(grid) {
      ctx.grid = grid;
    },
    probe,
    async expectReach(from, to, proto, want, port) {
      // a mismatch is re-checked (bounded: 4 tries, 250 ms apart) before it counts, as
      // implementations converge and cases run side by side
      let r = await probe(from, to.ip, proto, port, want ? 3000 : undefined);
      const good = (x: ProbeResult) =>
        x.ok === want && (!want || !to.identity || proto === "icmp" || x.identity === to.identity);
      for (let i = 0; i < 3 && !good(r); i++) {
        await new Promise((res) => setTimeout(res, 250));
        r = await probe(from, to.ip, proto, port, want ? 3000 : undefined);
      }
      const identityOk = !want || !to.identity || proto === "icmp" || r.identity === to.identity;
      if (good(r)) return;
      const what = `${from.name} -> ${to.label} (${to.ip}) over ${proto}${port ? `/${port}` : ""}`;
      const observed = !r.ok
        ? `no answer (${r.detail})`
        : !identityOk
        ? `answered by "${r.identity}", not "${to.identity}"`
        : `reached (${r.detail})`;
      fail(`${what}: expected ${want ? "reachable" : "blocked"}`, {
        expected: want
          ? `reachable${to.identity ? `, answered by "${to.identity}"` : ""}`
          : "blocked",
        observed,
        reproduce: [r.command],
        state: `sandbox ${from.name}:\n${await debugState(from.netnsPath)}`,
      });
    },
    async expectRefused(p, what, kind) {
      try {
        await p;
      } catch (err) {
        const e = err as Error & { kind?: string };
        if (kind && e.kind && e.kind !== kind) {
          fail(`${what}: refused as "${e.kind}", expected "${kind}"`, {
            expected: `an error of kind ${kind}`,
            observed: `${e.kind}: ${e.message}`,
          });
        }
        return e;
      }
      return fail(`${what}: expected the implementation to refuse it, it succeeded`, {
        expected: `an error${kind ? ` of kind ${kind}` : ""}`,
        observed: "success",
      });
    },
    async finish() {
      const errors: string[] = [];
      while (deferred.length) {
        const fn = deferred.pop()!;
        try {
          await fn();
        } catch (err) {
          const msg = err instanceof Error ? err.message : String(err);
          // removing what the case itself already removed is fine
          if (!/not found|no such/i.test(msg)) errors.push(msg);
        }
      }
      return errors;
    },
  };
  return ctx;
}

/**
 * Observes a reachability matrix over ICMP, then re-probes the cells that differ from
 * `expected` (up to 3 more times, 250 ms apart): a cell counts as different only if it
 * differs every time. Implementations converge (a firewall rewrite, Docker re-inserting its
 * isolation jump while another network is created), and cases run in parallel.
 */
export async function convergedMatrix(
  sources: { label: string; ns: string }[],
  targets: { label: string; ip: string }[],
  expected: boolean[][],
): Promise<boolean[][]> {
  const observed = await reachMatrix(sources, targets, {});
  for (let round = 0; round < 3; round++) {
    const diffs: [number, number][] = [];
    observed.forEach((row, i) => row.forEach((v, j) => v !== expected[i][j] && diffs.push([i, j])));
    if (diffs.length === 0) break;
    await new Promise((r) => setTimeout(r, 250));
    await Promise.all(diffs.map(async ([i, j]) => {
      observed[i][j] = (await icmp(sources[i].ns, targets[j].ip)).ok;
    }));
  }
  return observed;
}
