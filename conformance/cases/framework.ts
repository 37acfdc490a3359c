/**
 * How cases are written: `defineCase({ id, area, profile, needs, asserts, mirrors, run })`.
 * A case gets a {@linkcode CaseContext}: the implementation (through the public interface
 * only), the harness's hosts, helpers that create objects with unique names and remove them
 * afterwards, and assertions that fail with a reproducer. Cases never import impl/.
 *
 * Reachability is judged from the RECEIVING side: every namespace a check targets gets a
 * witness (a packet capture the suite owns, conformance/probes/witness.ts), and every probe
 * packet carries a token of its check (an ICMP payload pattern, a UDP payload, a TCP source
 * port), so the witness recognises it even where NAT, load balancing or hairpin rewrote the
 * addresses.
 *
 * - {@linkcode CaseContext.expectReach}: REACHED only when the target's responder answered
 *   with its own identity AND its witness saw the check's token. A positive check is
 *   polled (bounded) until the path converges.
 * - {@linkcode CaseContext.expectBlocked}: first a positive control on the same path (same
 *   source, same family, a peer the source must reach) converges; then at least 10 packets
 *   per protocol go out in parallel, with the control once more at the same moment; BLOCKED
 *   only if the target's witness saw none of them. A negative is never retried.
 * - A probe that could not run, or a witness that missed what it must see, is a harness
 *   error: the case's verdict is ERROR, never PASS.
 * @module
 */
import type {
  Capability,
  ConnectSpec,
  EndpointInfo,
  ErrorKind,
  Implementation,
  NetworkSpec,
  SandboxInfo,
  ServiceSpec,
} from "../impl.ts";
import { type HarnessHost, OUTSIDE } from "../harness/hosts.ts";
import {
  burstUdp,
  classifyProbe,
  debugState,
  newToken,
  type Packet,
  probeIcmp,
  type ProbeResult,
  probeTcp,
  probeUdp,
  type Responders,
  startResponders,
  startWitness,
  type Token,
  type Witness,
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

/**
 * Thrown when the harness cannot judge: a probe could not run, a witness missed its own
 * control. The case's verdict is ERROR (counted as failed), never PASS.
 */
export class HarnessError extends Error {
  readonly reproduce: string[];
  constructor(message: string, reproduce: string[] = []) {
    super(message);
    this.reproduce = reproduce;
  }
}

/** A protocol a reachability probe uses. */
export type Proto = "icmp" | "tcp" | "udp";

/** Every protocol, for checks that cover all three. */
export const PROTOS: readonly Proto[] = ["icmp", "tcp", "udp"];

/** The ports of the responders cases start in sandboxes. */
export const PORTS = { tcp: 8080, udp: 5353 } as const;

/** The port a protocol's probe uses (ICMP has none). */
export function portOf(proto: Proto): number | undefined {
  return proto === "tcp" ? PORTS.tcp : proto === "udp" ? PORTS.udp : undefined;
}

/** A sandbox the case made (or a harness namespace), with its addresses per network. */
export interface Sandbox extends SandboxInfo {
  /** Network name (as the case named it) → endpoint. */
  endpoints: Record<string, EndpointInfo>;
  /**
   * The namespace forwards traffic for others (a host namespace): its witness counts only
   * packets addressed to the target address itself.
   */
  transit?: boolean;
}

/** Where a check goes: the address, and the namespace the packets must land in. */
export interface Target {
  ip: string;
  label: string;
  /** The namespace the packets land in (its witness decides). */
  at: Sandbox;
  /** Who must answer (the responder's identity); ICMP checks have none. */
  identity?: string;
}

/** Strips the prefix length. */
export function addr(cidr?: string): string {
  if (!cidr) throw new Error("no address");
  return cidr.split("/")[0];
}

/** A sandbox's address on a network as a target (IPv4, or IPv6 with `family` 6). */
export function target(sb: Sandbox, net: string, family: 4 | 6 = 4): Target {
  const ep = sb.endpoints[net];
  if (!ep) throw new Error(`${sb.name} has no endpoint on ${net}`);
  const ip = family === 6 ? ep.ipv6 : ep.ipv4;
  if (!ip) throw new Error(`${sb.name} has no IPv${family} address on ${net}`);
  return {
    ip: addr(ip),
    identity: sb.name,
    label: `${sb.name}@${net}${family === 6 ? " (IPv6)" : ""}`,
    at: sb,
  };
}

/** A harness namespace (host, world, LAN machine) as a probe source or target. */
export function harnessNs(name: string, netnsPath: string, transit = false): Sandbox {
  return { name, netnsPath, endpoints: {}, transit };
}

/** The host namespace of a harness host (a transit namespace). */
export function hostNs(host: HarnessHost): Sandbox {
  return harnessNs("host", host.netnsPath, true);
}

/** The external world of a harness host. */
export function worldNs(host: HarnessHost): Sandbox {
  return harnessNs("world", host.outsideNetnsPath);
}

/** The external world as a target: the harness's responders there answer as "world". */
export function worldTarget(host: HarnessHost): Target {
  return {
    ip: addr(OUTSIDE.world),
    identity: "world",
    label: "external world",
    at: worldNs(host),
  };
}

/** The other machine on a harness host's LAN. */
export function lanHostNs(host: HarnessHost): Sandbox {
  return harnessNs("lan-host", host.lanNetnsPath);
}

/** How many packets a negative check sends per protocol. */
export const NEGATIVE_PACKETS = 10;

/** What one probe observed, from both ends. */
export interface Observation {
  outcome: "reached" | "blocked" | "target-refused" | "harness-error";
  why: string;
  probe: ProbeResult;
  /** The check's packets the target's witness saw. */
  arrivals: Packet[];
  command: string;
}

/** Options of a single probe. */
export interface ProbeOpts {
  port?: number;
  timeoutMs?: number;
  /** ICMP payload size (`ping -s`) and don't-fragment (`ping -M do`). */
  size?: number;
  dontFragment?: boolean;
}

/** Options of {@linkcode CaseContext.expectBlocked}. */
export interface BlockedOpts extends ProbeOpts {
  /**
   * The positive control: reached from the same source over the same protocol and family
   * first (convergence) and again at the moment of the check.
   */
  control: Target;
  /** Port of the control, when it differs from the check's. */
  controlPort?: number;
  /** ICMP payload size of the control (with the check's don't-fragment setting). */
  controlSize?: number;
}

/** One cell of {@linkcode CaseContext.matrix}. */
export interface MatrixCell {
  from: Sandbox;
  to: Target;
  want: boolean;
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
  /** Creates a sandbox (unique name from `base`, on `host` or the first), removed after. */
  sandbox(base: string, hostname?: string, host?: string): Promise<Sandbox>;
  /** Connects a sandbox to a network the case created (by its full name). */
  connect(sb: Sandbox, network: string, spec?: ConnectSpec): Promise<EndpointInfo>;
  /** Disconnects a sandbox (and forgets the endpoint). */
  disconnect(sb: Sandbox, network: string): Promise<void>;
  /** Starts TCP/UDP/HTTP responders in a sandbox answering with its name; stopped after. */
  responders(
    sb: Sandbox,
    opts?: { tcp?: number[]; udp?: number[]; http?: number[] },
  ): Promise<Responders>;
  /** Creates a service (unique name from `base`), removed after the case; skips when the implementation has no services. */
  service(base: string, spec: Omit<ServiceSpec, "name">): Promise<{ name: string; vip?: string }>;
  /** The witness of a namespace (started on first use, stopped after the case). */
  witness(sb: Sandbox): Promise<Witness>;
  /** Adds a line of detail shown with the result (e.g. observed shares). */
  note(text: string): void;
  /** Registers cleanup, run last-in-first-out after the case. */
  defer(fn: () => Promise<void> | void): void;
  /** Fails the case. */
  fail(message: string, details?: Partial<Failure>, grid?: Grid): never;
  /** Shows a reachability grid with the case's result (also when it passes). */
  showGrid(grid: Grid): void;
  /** One probe with its token, judged by the target's witness. */
  observe(from: Sandbox, to: Target, proto: Proto, opts?: ProbeOpts): Promise<Observation>;
  /**
   * Fails unless `from` reaches `to` over `proto`: the right responder answered and the
   * target's witness saw the token (polled, bounded, until the path converges).
   */
  expectReach(from: Sandbox, to: Target, proto: Proto, opts?: ProbeOpts): Promise<Observation>;
  /**
   * Fails unless every one of {@linkcode NEGATIVE_PACKETS} packets from `from` to `to`
   * over `proto` is blocked (the target's witness saw none), after and alongside a positive
   * control on the same path. Never retried.
   */
  expectBlocked(from: Sandbox, to: Target, proto: Proto, opts: BlockedOpts): Promise<void>;
  /**
   * Observes many cells over ICMP (positive cells polled, negative cells as bursts after
   * their source's control), in parallel; returns the observed grid.
   */
  matrix(cells: MatrixCell[][], controls: (Target | undefined)[]): Promise<boolean[][]>;
  /**
   * Expects `p` to be refused with an error of one of `kinds`. An "internal" error is
   * never a refusal: it fails the case.
   */
  expectRefused(p: Promise<unknown>, what: string, kinds: ErrorKind | ErrorKind[]): Promise<Error>;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A fresh token for `proto`. TCP tokens carry a payload besides their source port: a
 * userland proxy (Docker's docker-proxy) or an SNAT that changes the port still forwards
 * the bytes, so the witness recognises the connection by them.
 */
function tokenFor(proto: Proto): Token {
  if (proto !== "tcp") return newToken(proto);
  const t = newToken("tcp");
  return { ...t, payload: `cnmtok-tcp-${t.sport}-${crypto.randomUUID().slice(0, 8)}` };
}

function describePacket(p: Packet): string {
  const port = (x?: number) => x === undefined ? "" : `:${x}`;
  return `${p.proto} ${p.src}${port(p.sport)} > ${p.dst}${port(p.dport)}${
    p.tcpFlags ? ` [${p.tcpFlags}]` : ""
  } on ${p.iface}`;
}

function what(from: Sandbox, to: Target, proto: Proto, port?: number): string {
  return `${from.name} -> ${to.label} (${to.ip}) over ${proto}${port ? `/${port}` : ""}`;
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
  const witnesses = new Map<string, Promise<Witness>>();
  /**
   * Checks still running: a case that fails on one check of a `Promise.all` leaves its
   * siblings running, and teardown must wait for them (else a late one starts a witness, or
   * probes, in a sandbox being removed, and keeps its namespace alive).
   */
  const inflight = new Set<Promise<unknown>>();
  const track = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => (...a: A): Promise<R> => {
    const p = fn(...a);
    inflight.add(p);
    p.then(() => inflight.delete(p), () => inflight.delete(p));
    return p;
  };

  const fail = (message: string, details: Partial<Failure> = {}, grid?: Grid): never => {
    throw new CaseFailure({ message, reproduce: [], ...details }, grid);
  };

  const witness = (sb: Sandbox): Promise<Witness> => {
    let w = witnesses.get(sb.netnsPath);
    if (!w) {
      w = startWitness(sb.netnsPath, sb.name).catch((err) => {
        throw new HarnessError(
          `cannot start the witness in ${sb.name} (${sb.netnsPath}): ${
            err instanceof Error ? err.message : err
          }`,
        );
      });
      witnesses.set(sb.netnsPath, w);
      defer(async () => {
        await (await w!.catch(() => undefined))?.stop();
      });
    }
    return w;
  };

  const arrivalsOf = (w: Witness, token: Token, to: Target): Packet[] =>
    w.saw(token).filter((p) => !to.at.transit || p.dst === to.ip);

  const sync = async (w: Witness) => {
    try {
      await w.sync();
    } catch (err) {
      throw new HarnessError(
        `the witness in ${w.label} missed its own control packet: ${
          err instanceof Error ? err.message : err
        }`,
        [w.command],
      );
    }
  };

  const send = (from: Sandbox, to: Target, proto: Proto, token: Token, o: ProbeOpts) => {
    const timeoutMs = o.timeoutMs;
    if (token.proto === "icmp") {
      return probeIcmp(from.netnsPath, to.ip, {
        timeoutMs,
        pattern: token.pattern,
        size: o.size,
        dontFragment: o.dontFragment,
      });
    }
    const port = o.port ?? portOf(proto)!;
    if (token.proto === "tcp") {
      return probeTcp(from.netnsPath, to.ip, port, {
        timeoutMs,
        sourcePort: token.sport,
        payload: token.payload,
      });
    }
    return probeUdp(from.netnsPath, to.ip, port, { timeoutMs, payload: token.payload });
  };

  const observe = async (
    from: Sandbox,
    to: Target,
    proto: Proto,
    o: ProbeOpts = {},
  ): Promise<Observation> => {
    const w = await witness(to.at);
    const token = tokenFor(proto);
    const probe = await send(from, to, proto, token, o);
    await sync(w);
    const arrivals = arrivalsOf(w, token, to);
    const c = classifyProbe({
      probe,
      arrivals: arrivals.length,
      expectIdentity: proto === "icmp" ? undefined : to.identity,
    });
    return { outcome: c.outcome, why: c.why, probe, arrivals, command: probe.command };
  };

  const reached = (o: Observation, to: Target, proto: Proto) =>
    o.outcome === "reached" &&
    (proto === "icmp" || !to.identity || o.probe.identity === to.identity);

  const harnessError = (o: Observation, label: string): never => {
    throw new HarnessError(`${label}: ${o.why}`, [o.command]);
  };

  const tryReach = async (
    from: Sandbox,
    to: Target,
    proto: Proto,
    o: ProbeOpts,
    deadlineMs = 5000,
  ): Promise<{ ok: boolean; last: Observation }> => {
    const end = performance.now() + deadlineMs;
    while (true) {
      const last = await observe(from, to, proto, { timeoutMs: 2000, ...o });
      // a probe that could not run is an error at once; a witness that missed one answered
      // packet is tried again within the deadline (seen once in many runs, against Docker),
      // and is an error only if it keeps missing them
      if (last.outcome === "harness-error" && last.probe.failure === "error") {
        harnessError(last, what(from, to, proto, o.port));
      }
      if (reached(last, to, proto)) return { ok: true, last };
      if (performance.now() > end) {
        if (last.outcome === "harness-error") harnessError(last, what(from, to, proto, o.port));
        return { ok: false, last };
      }
      await sleep(150);
    }
  };

  const reachFailure = async (
    from: Sandbox,
    to: Target,
    proto: Proto,
    o: ProbeOpts,
    last: Observation,
    prefix = "",
  ): Promise<never> => {
    const port = proto === "icmp" ? undefined : o.port ?? portOf(proto);
    const observed = last.outcome === "reached"
      ? `answered by "${last.probe.identity}", not "${to.identity}"`
      : last.outcome === "target-refused"
      ? `${last.arrivals.length} packet(s) arrived at ${to.at.name} but no answer came back (${last.probe.detail})`
      : `blocked: no packet arrived at ${to.at.name} (${last.probe.detail})`;
    return fail(`${prefix}${what(from, to, proto, port)}: expected reachable, ${observed}`, {
      expected: `reachable${
        to.identity && proto !== "icmp" ? `, answered by "${to.identity}"` : ""
      }`,
      observed,
      reproduce: [last.command],
      state: `sandbox ${from.name}:\n${await debugState(from.netnsPath)}`,
    });
  };

  const expectReach = async (from: Sandbox, to: Target, proto: Proto, o: ProbeOpts = {}) => {
    const r = await tryReach(from, to, proto, o);
    if (!r.ok) await reachFailure(from, to, proto, o, r.last);
    return r.last;
  };

  /** Sends the negative burst; resolves to the tokens sent and the probe results. */
  const burst = async (
    from: Sandbox,
    to: Target,
    proto: Proto,
    o: ProbeOpts,
  ): Promise<{ tokens: Token[]; probes: ProbeResult[] }> => {
    const n = NEGATIVE_PACKETS;
    if (proto === "icmp") {
      const token = newToken("icmp");
      const probe = await probeIcmp(from.netnsPath, to.ip, {
        pattern: token.pattern,
        count: n,
        intervalMs: 2,
        timeoutMs: o.timeoutMs ?? 1000,
        size: o.size,
        dontFragment: o.dontFragment,
      });
      await sleep(50);
      return { tokens: [token], probes: [probe] };
    }
    const port = o.port ?? portOf(proto)!;
    const tokens = Array.from({ length: n }, () => tokenFor(proto));
    if (proto === "udp") {
      const payloads = tokens.map((t) => (t.proto === "udp" ? t.payload : ""));
      const probe = await burstUdp(from.netnsPath, to.ip, port, payloads, {});
      await sleep(100);
      return { tokens, probes: [probe] };
    }
    const probes = await Promise.all(
      tokens.map((t) =>
        probeTcp(from.netnsPath, to.ip, port, {
          timeoutMs: o.timeoutMs ?? 1000,
          sourcePort: t.proto === "tcp" ? t.sport : undefined,
          payload: t.proto === "tcp" ? t.payload : undefined,
        })
      ),
    );
    return { tokens, probes };
  };

  const expectBlocked = async (from: Sandbox, to: Target, proto: Proto, o: BlockedOpts) => {
    const port = proto === "icmp" ? undefined : o.port ?? portOf(proto);
    const label = what(from, to, proto, port);
    const controlOpts: ProbeOpts = {
      port: o.controlPort ?? o.port,
      size: o.controlSize,
      dontFragment: o.controlSize !== undefined ? o.dontFragment : undefined,
    };
    // convergence: the path itself works before "blocked" can mean anything
    const pre = await tryReach(from, o.control, proto, controlOpts);
    if (!pre.ok) {
      await reachFailure(from, o.control, proto, controlOpts, pre.last, `${label}: control `);
    }
    const w = await witness(to.at);
    const [sent, control] = await Promise.all([
      burst(from, to, proto, o),
      observe(from, o.control, proto, { timeoutMs: 2000, ...controlOpts }),
    ]);
    await sync(w);
    for (const p of sent.probes) {
      if (p.failure === "error") {
        throw new HarnessError(`${label}: the probe could not run: ${p.detail}`, [p.command]);
      }
    }
    if (control.outcome === "harness-error" && control.probe.failure === "error") {
      harnessError(control, `${label}: control`);
    }
    const arrived = sent.tokens.flatMap((t) => arrivalsOf(w, t, to));
    // a UDP burst reads no replies; a TCP or ICMP answer whose packets never arrived at
    // the target came from somewhere else, which is a leak too
    const answered = proto === "udp" ? [] : sent.probes.filter((p) => p.ok && !arrived.length);
    const total = proto === "icmp" ? NEGATIVE_PACKETS : sent.tokens.length;
    if (arrived.length || answered.length) {
      const observed = arrived.length
        ? `${arrived.length} of ${total} packets arrived at ${to.at.name}: ${
          describePacket(arrived[0])
        }`
        : `${answered.length} of ${total} got an answer (${
          answered[0].detail
        }) though none arrived at ${to.at.name}`;
      fail(`${label}: expected blocked, ${observed}`, {
        expected: `blocked: none of ${total} packets arrives at ${to.at.name}`,
        observed,
        reproduce: [sent.probes[0].command, w.command],
        state: `sandbox ${from.name}:\n${await debugState(from.netnsPath)}`,
      });
    }
    // the control's own witness proved itself while the path converged; here the right
    // answer at the same moment is what shows the path still works
    const answeredRight = control.probe.ok &&
      (proto === "icmp" || !o.control.identity || control.probe.identity === o.control.identity);
    if (!reached(control, o.control, proto) && !answeredRight) {
      await reachFailure(from, o.control, proto, controlOpts, control, `${label}: control `);
    }
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
    async sandbox(base, hostname, host) {
      const name = `${tag}-${base}`;
      const info = await impl.createSandbox({ name, hostname, ...(host ? { host } : {}) });
      defer(() => impl.removeSandbox(name));
      return { ...info, endpoints: {} };
    },
    async connect(sb, network, spec) {
      const ep = await impl.connect(sb.name, network, spec);
      sb.endpoints[network] = ep;
      return ep;
    },
    async disconnect(sb, network) {
      await impl.disconnect(sb.name, network);
      delete sb.endpoints[network];
    },
    async responders(sb, opts = { tcp: [PORTS.tcp], udp: [PORTS.udp] }) {
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
    witness,
    note(text) {
      ctx.notes.push(text);
    },
    defer,
    fail,
    showGrid(grid) {
      ctx.grid = grid;
    },
    observe: track(observe),
    expectReach: track(expectReach),
    expectBlocked: track(expectBlocked),
    matrix: track(async (cells: MatrixCell[][], controls: (Target | undefined)[]) => {
      const observed = cells.map((row) => row.map(() => false));
      const jobs: (() => Promise<void>)[] = [];
      cells.forEach((row, i) => {
        jobs.push(async () => {
          // positives first (they converge the source's paths), then the source's control,
          // then its negatives as bursts
          await Promise.all(row.map(async (cell, j) => {
            if (!cell.want) return;
            observed[i][j] = (await tryReach(cell.from, cell.to, "icmp", {})).ok;
          }));
          const control = controls[i];
          await Promise.all(row.map(async (cell, j) => {
            if (cell.want) return;
            if (control) {
              try {
                await expectBlocked(cell.from, cell.to, "icmp", { control });
                observed[i][j] = false;
              } catch (err) {
                if (!(err instanceof CaseFailure)) throw err;
                // a failed control is not a leak; it shows as the control's own cell
                observed[i][j] = !/: control /.test(err.message);
              }
            } else {
              const w = await witness(cell.to.at);
              const sent = await burst(cell.from, cell.to, "icmp", {});
              await sync(w);
              observed[i][j] = sent.tokens.some((t) => arrivalsOf(w, t, cell.to).length > 0);
            }
          }));
        });
      });
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(4, jobs.length) }, async () => {
        while (next < jobs.length) await jobs[next++]();
      }));
      return observed;
    }),
    async expectRefused(p, what, kinds) {
      const allowed = Array.isArray(kinds) ? kinds : [kinds];
      try {
        await p;
      } catch (err) {
        const e = err as Error & { kind?: string };
        if (!e.kind || !allowed.includes(e.kind as ErrorKind)) {
          fail(
            `${what}: refused as "${e.kind ?? "untyped error"}", expected ${allowed.join(" or ")}`,
            {
              expected: `an error of kind ${allowed.join(" or ")}`,
              observed: `${e.kind ?? "untyped"}: ${e.message}`,
            },
          );
        }
        return e;
      }
      return fail(`${what}: expected the implementation to refuse it, it succeeded`, {
        expected: `an error of kind ${allowed.join(" or ")}`,
        observed: "success",
      });
    },
    async finish() {
      while (inflight.size) await Promise.allSettled([...inflight]);
      const errors: string[] = [];
      while (deferred.length) {
        const fn = deferred.pop()!;
        try {
          await fn();
        } catch (err) {
          const e = err as Error & { kind?: string };
          // removing what the case itself already removed is fine
          if (e.kind !== "not-found") errors.push(e.message ?? String(err));
        }
      }
      return errors;
    },
  };
  return ctx;
}

/** Prints the difference list of a grid (for failure messages). */
export function gridDiffs(labels: string[], expected: boolean[][], observed: boolean[][]) {
  const diffs: { i: number; j: number; text: string }[] = [];
  expected.forEach((row, i) =>
    row.forEach((want, j) => {
      if (observed[i][j] !== want) {
        diffs.push({
          i,
          j,
          text: `${labels[i]} -> ${labels[j]}: expected ${want ? "reach" : "blocked"}`,
        });
      }
    })
  );
  return diffs;
}
