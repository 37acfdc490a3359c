/**
 * Declarative topologies (YAML, see fixtures/README.md): networks, sandboxes attached to
 * them, and the reachability and egress they imply. Every file is validated at the
 * boundary (zod for shape, then cross references); errors are ONE line naming the file and
 * the field:
 * `fixtures/x.yaml: sandboxes[2].networks[0]: unknown network "blu"`.
 * @module
 */
import { parseDocument } from "yaml";
import type { NetworkSpec } from "../impl.ts";
import { z } from "zod";
import { type Cidr, contains, overlaps, parseCidr, parseIp, within } from "./cidr.ts";

/** Docker's rule for object names. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** The `to:` of an `expect` entry about the external world rather than a sandbox. */
export const OUTSIDE = "outside";

/** The option that turns inter-container communication off on a bridge network. */
export const ENABLE_ICC = "com.docker.network.bridge.enable_icc";

const name = z.string().regex(NAME, "must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 63)");
const optionValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const networkSchema = z.strictObject({
  name,
  driver: z.string().min(1).default("bridge"),
  host: z.string().min(1).optional(),
  subnet: z.string().optional(),
  gateway: z.string().optional(),
  ipRange: z.string().optional(),
  ipv6Subnet: z.string().optional(),
  internal: z.boolean().optional(),
  options: z.record(z.string(), optionValue).optional(),
});

const attachmentSchema = z.union([
  z.string(),
  z.strictObject({
    network: z.string(),
    ipv4: z.string().optional(),
    aliases: z.array(name).optional(),
  }),
]);

const sandboxSchema = z.strictObject({
  name,
  hostname: z.string().optional(),
  host: z.string().min(1).optional(),
  networks: z.array(attachmentSchema).default([]),
});

// `network` is required unless `to` is "outside", where it is forbidden (checked after
// the shape, with the file's field named; see `expectations`)
const expectSchema = z.strictObject({
  from: z.string(),
  to: z.string(),
  network: z.string().optional(),
  reach: z.boolean(),
});

const topologySchema = z.strictObject({
  name,
  description: z.string().min(1),
  mirrors: z.string().optional(),
  networks: z.array(networkSchema).min(1),
  sandboxes: z.array(sandboxSchema).min(1),
  expect: z.array(expectSchema).optional(),
});

/** A network of a topology: exactly what the suite asks an implementation to create. */
export type TopologyNetwork = NetworkSpec;

/** A sandbox's attachment to a network. */
export interface Attachment {
  network: string;
  ipv4?: string;
  aliases?: string[];
}

/** A sandbox of a topology. */
export interface TopologySandbox {
  name: string;
  hostname?: string;
  host?: string;
  networks: Attachment[];
}

/** An explicit expectation: can `from` reach `to`'s address on `network`? */
export interface Expectation {
  from: string;
  to: string;
  network: string;
  reach: boolean;
}

/**
 * An explicit egress expectation (`to: outside`, no `network`): does sandbox `from` reach
 * the external world (the harness's outside namespace) through the host?
 */
export interface EgressExpectation {
  from: string;
  to: typeof OUTSIDE;
  reach: boolean;
}

/** True when an `expect` entry is about the outside rather than a sandbox's address. */
export function isEgressExpectation(
  e: Expectation | EgressExpectation,
): e is EgressExpectation {
  return !("network" in e);
}

/** A validated topology. */
export interface Topology {
  name: string;
  description: string;
  mirrors?: string;
  networks: TopologyNetwork[];
  sandboxes: TopologySandbox[];
  /** The file's `expect:` entries in file order, sandbox targets and `to: outside` alike. */
  expect: (Expectation | EgressExpectation)[];
  /** The file it came from (as given to {@linkcode loadTopology}). */
  file: string;
}

/** A topology file that is not valid; `message` is one line: `FILE: FIELD: problem`. */
export class TopologyError extends Error {
  readonly file: string;
  readonly field: string;
  constructor(file: string, field: string, problem: string) {
    super(`${file}: ${field ? `${field}: ` : ""}${problem}`.replace(/\s*\n\s*/g, " "));
    this.name = "TopologyError";
    this.file = file;
    this.field = field;
  }
}

/** `["sandboxes", 2, "networks", 0]` → `sandboxes[2].networks[0]`. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

function zodProblem(issue: z.core.$ZodIssue): { field: string; problem: string } {
  const field = fieldPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => `"${k}"`).join(", ");
    return { field, problem: `unknown field${issue.keys.length > 1 ? "s" : ""} ${keys}` };
  }
  if (issue.code === "invalid_type" && /received undefined/.test(issue.message)) {
    return { field, problem: `missing (expected ${issue.expected})` };
  }
  if (issue.code === "invalid_union") {
    return { field, problem: "expected a network name or { network, ipv4?, aliases? }" };
  }
  return { field, problem: issue.message.replace(/^Invalid input: /, "") };
}

function parseBool(v: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  return undefined;
}

/** True unless the network turns inter-container communication off (`enable_icc=false`). */
export function iccEnabled(n: TopologyNetwork): boolean {
  const v = n.options?.[ENABLE_ICC];
  return v === undefined ? true : parseBool(v) !== false;
}

/** Validates cross references and addresses; throws the first problem. */
function check(t: Omit<Topology, "file">, file: string): void {
  const fail = (field: string, problem: string): never => {
    throw new TopologyError(file, field, problem);
  };
  const nets = new Map<string, { index: number; subnet?: Cidr; net: TopologyNetwork }>();
  t.networks.forEach((n, i) => {
    const at = `networks[${i}]`;
    if (nets.has(n.name)) fail(`${at}.name`, `duplicate network "${n.name}"`);
    let subnet: Cidr | undefined;
    if (n.subnet !== undefined) {
      const c = parseCidr(n.subnet, 4);
      if (typeof c === "string") return fail(`${at}.subnet`, c);
      subnet = c;
      for (const [other, o] of nets) {
        if (o.subnet && overlaps(o.subnet, c)) {
          fail(`${at}.subnet`, `${n.subnet} overlaps network "${other}" (${o.subnet.text})`);
        }
      }
    }
    if (n.gateway !== undefined) {
      const g = parseIp(n.gateway);
      if (!g || g.family !== 4) fail(`${at}.gateway`, `bad IPv4 address "${n.gateway}"`);
      if (!subnet) fail(`${at}.gateway`, "a gateway needs a subnet");
      if (!contains(subnet!, g!.value)) fail(`${at}.gateway`, `${n.gateway} is not in ${n.subnet}`);
    }
    if (n.ipRange !== undefined) {
      const r = parseCidr(n.ipRange, 4);
      if (typeof r === "string") return fail(`${at}.ipRange`, r);
      if (!subnet || !within(subnet, r)) fail(`${at}.ipRange`, `${n.ipRange} is not in the subnet`);
    }
    if (n.ipv6Subnet !== undefined) {
      const c6 = parseCidr(n.ipv6Subnet, 6);
      if (typeof c6 === "string") fail(`${at}.ipv6Subnet`, c6);
    }
    for (const [k, v] of Object.entries(n.options ?? {})) {
      if (k === ENABLE_ICC && parseBool(v) === undefined) {
        fail(`${at}.options.${k}`, `not a boolean: "${v}"`);
      }
    }
    nets.set(n.name, { index: i, subnet, net: n });
  });
  const boxes = new Map<string, TopologySandbox>();
  t.sandboxes.forEach((s, i) => {
    const at = `sandboxes[${i}]`;
    if (boxes.has(s.name)) fail(`${at}.name`, `duplicate sandbox "${s.name}"`);
    if (s.name === OUTSIDE) {
      fail(`${at}.name`, `"${OUTSIDE}" is reserved (expect entries use "to: ${OUTSIDE}")`);
    }
    const seen = new Set<string>();
    s.networks.forEach((a, j) => {
      const att = `${at}.networks[${j}]`;
      const net = nets.get(a.network);
      if (!net) return fail(att, `unknown network "${a.network}"`);
      if (seen.has(a.network)) fail(att, `sandbox "${s.name}" is on network "${a.network}" twice`);
      seen.add(a.network);
      if (a.ipv4 !== undefined) {
        const ip = parseIp(a.ipv4);
        if (!ip || ip.family !== 4) fail(`${att}.ipv4`, `bad IPv4 address "${a.ipv4}"`);
        if (!net.subnet) {
          fail(`${att}.ipv4`, `network "${a.network}" has no subnet to check against`);
        }
        if (!contains(net.subnet!, ip!.value)) {
          fail(`${att}.ipv4`, `${a.ipv4} is not in ${a.network}'s subnet ${net.subnet!.text}`);
        }
        if (net.net.gateway === a.ipv4) fail(`${att}.ipv4`, `${a.ipv4} is the gateway`);
        for (const other of boxes.values()) {
          if (other.networks.some((o) => o.network === a.network && o.ipv4 === a.ipv4)) {
            fail(`${att}.ipv4`, `${a.ipv4} is already "${other.name}"'s on "${a.network}"`);
          }
        }
      }
    });
    boxes.set(s.name, s);
  });
  t.expect.forEach((e, i) => {
    const at = `expect[${i}]`;
    const from = boxes.get(e.from);
    if (!from) return fail(`${at}.from`, `unknown sandbox "${e.from}"`);
    if (from.networks.length === 0) fail(`${at}.from`, `sandbox "${e.from}" is on no network`);
    if (isEgressExpectation(e)) return;
    const to = boxes.get(e.to);
    if (!to) return fail(`${at}.to`, `unknown sandbox "${e.to}"`);
    if (!nets.has(e.network)) fail(`${at}.network`, `unknown network "${e.network}"`);
    if (!to.networks.some((a) => a.network === e.network)) {
      fail(`${at}.network`, `sandbox "${e.to}" is not on network "${e.network}"`);
    }
  });
}

/**
 * The `expect:` entries as typed expectations: `to: outside` takes no `network`, any other
 * `to` needs one. Throws the first problem.
 */
function expectations(
  raw: { from: string; to: string; network?: string; reach: boolean }[],
  file: string,
): (Expectation | EgressExpectation)[] {
  return raw.map(({ from, to, network, reach }, i) => {
    if (to === OUTSIDE) {
      if (network !== undefined) {
        throw new TopologyError(
          file,
          `expect[${i}].network`,
          `not allowed with "to: ${OUTSIDE}" (the outside is reached through the host, not on a network)`,
        );
      }
      return { from, to: OUTSIDE, reach };
    }
    if (network === undefined) {
      throw new TopologyError(file, `expect[${i}].network`, "missing (expected string)");
    }
    return { from, to, network, reach };
  });
}

/**
 * Parses and validates a topology from YAML text; `file` names it in errors.
 * Throws {@linkcode TopologyError}.
 */
export function parseTopology(text: string, file: string): Topology {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const pos = e.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : "";
    throw new TopologyError(file, where, `YAML: ${e.message.split("\n")[0]}`);
  }
  const raw = doc.toJS();
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new TopologyError(file, "", "not a YAML mapping");
  }
  const parsed = topologySchema.safeParse(raw);
  if (!parsed.success) {
    const { field, problem } = zodProblem(parsed.error.issues[0]);
    throw new TopologyError(file, field, problem);
  }
  const d = parsed.data;
  const topology: Omit<Topology, "file"> = {
    name: d.name,
    description: d.description,
    ...(d.mirrors !== undefined ? { mirrors: d.mirrors } : {}),
    networks: d.networks.map((n) => ({ ...n })),
    sandboxes: d.sandboxes.map((s) => ({
      ...s,
      networks: s.networks.map((a) => typeof a === "string" ? { network: a } : { ...a }),
    })),
    expect: expectations(d.expect ?? [], file),
  };
  check(topology, file);
  return { ...topology, file };
}

/** Reads, parses and validates a topology file. Throws {@linkcode TopologyError}. */
export async function loadTopology(path: string): Promise<Topology> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new TopologyError(path, "", `cannot read: ${e instanceof Error ? e.message : e}`);
  }
  return parseTopology(text, path);
}

/** One row/column of {@linkcode impliedReachability}: a sandbox's address on a network. */
export interface EndpointRef {
  sandbox: string;
  network: string;
}

/**
 * The reachability a topology implies, over endpoints labelled `sandbox@network`
 * (grouped by network, in file order). `matrix[i][j]` is true when the SANDBOX of
 * endpoint i can reach the address of endpoint j:
 * - a sandbox always reaches its own addresses;
 * - otherwise only when it is on endpoint j's network too (no transit across networks,
 *   even through a multihomed sandbox) and that network has icc enabled
 *   (`com.docker.network.bridge.enable_icc=false` blocks all but self);
 * - `internal` changes nothing here (it only cuts the way out);
 * - the file's `expect:` entries then override or confirm cells (for every row of the
 *   `from` sandbox); `to: outside` entries are not cells of this matrix (see
 *   {@linkcode impliedEgress}).
 * Rows of one sandbox are therefore identical; the matrix is square so it fits `Grid`.
 */
export function impliedReachability(
  t: Topology,
): { labels: string[]; matrix: boolean[][]; endpoints: EndpointRef[] } {
  const endpoints: EndpointRef[] = [];
  for (const n of t.networks) {
    for (const s of t.sandboxes) {
      if (s.networks.some((a) => a.network === n.name)) {
        endpoints.push({ sandbox: s.name, network: n.name });
      }
    }
  }
  const net = new Map(t.networks.map((n) => [n.name, n]));
  const onNet = (sandbox: string, network: string) =>
    t.sandboxes.find((s) => s.name === sandbox)!.networks.some((a) => a.network === network);
  const matrix = endpoints.map((src) =>
    endpoints.map((dst) => {
      if (src.sandbox === dst.sandbox) return true;
      return onNet(src.sandbox, dst.network) && iccEnabled(net.get(dst.network)!);
    })
  );
  for (const e of t.expect) {
    if (isEgressExpectation(e)) continue;
    const j = endpoints.findIndex((d) => d.sandbox === e.to && d.network === e.network);
    endpoints.forEach((src, i) => {
      if (src.sandbox === e.from) matrix[i][j] = e.reach;
    });
  }
  return { labels: endpoints.map((e) => `${e.sandbox}@${e.network}`), matrix, endpoints };
}

/** One sandbox's row of {@linkcode impliedEgress}. */
export interface EgressRef {
  sandbox: string;
  /** Whether the sandbox reaches the outside (after the file's `to: outside` entries). */
  reach: boolean;
  /**
   * The sandbox's non-internal networks, in attachment order: the ways out the rules see
   * (Docker masquerades them through the host). Empty when the rules imply no egress; not
   * changed by `expect:` entries.
   */
  via: string[];
}

/**
 * The egress a topology implies, one entry per sandbox in file order: whether the sandbox
 * reaches the external world (the harness's outside namespace) through the host.
 * - a sandbox reaches outside iff at least one of its networks is not `internal` (Docker's
 *   bridge masquerades non-internal networks; an internal network has no way out, and a
 *   sandbox on no network has none either); icc does not matter;
 * - the file's `to: outside` entries then override or confirm it, as `expect:` entries do
 *   for {@linkcode impliedReachability}.
 */
export function impliedEgress(t: Topology): EgressRef[] {
  const internal = new Set(t.networks.filter((n) => n.internal).map((n) => n.name));
  const rows = t.sandboxes.map((s) => {
    const via = s.networks.map((a) => a.network).filter((n) => !internal.has(n));
    return { sandbox: s.name, reach: via.length > 0, via };
  });
  for (const e of t.expect) {
    if (!isEgressExpectation(e)) continue;
    const row = rows.find((r) => r.sandbox === e.from);
    if (row) row.reach = e.reach;
  }
  return rows;
}
