/**
 * Leak audit: what a run leaves behind. A run takes "before" snapshots (of the root
 * namespace and the shared places of the machine at the start, of each harness host
 * namespace once the implementation has adopted it), and "after" snapshots once the cases
 * and the implementation's own teardown are done, before any forced removal. Every
 * difference is residue: a run must leave the machine as it found it.
 *
 * A snapshot is a set of normalised, human-readable item strings, one per thing that could
 * leak (a link, an address, a route, an nft rule, a set element, an iptables line, a sysctl,
 * a mount, ...). Volatile detail (nft handles and counters, route expiry, MAC-derived IPv6
 * link-local addresses, sysctls measured to change on their own) is left out, so two
 * snapshots of an untouched namespace are equal. Every normaliser is a pure function over
 * captured command output, so it can be tested without root.
 *
 * ```ts
 * import { diffSnapshots, snapshotNetns } from "./conformance/harness/audit.ts";
 * const before = await snapshotNetns("/run/netns/cnmt-1a2b3c-h1");
 * // ... run and tear down ...
 * const residue = diffSnapshots(before, await snapshotNetns("/run/netns/cnmt-1a2b3c-h1"), "h1");
 * ```
 * @module
 */
import { exec, type ExecResult } from "./exec.ts";

/** A set of normalised items describing the state of a namespace or of the machine. */
export interface NsSnapshot {
  /** What was looked at: a namespace path, `root` or `machine`. */
  source: string;
  /** One normalised, readable string per thing (`link br0 kind=bridge mtu=1500 up`, ...). */
  items: Set<string>;
  /** Parts that could not be read (their items are missing), as stable one-liners. */
  errors: string[];
  /** How long taking the snapshot took. */
  ms: number;
}

/** An address family, for the normalisers that read one family's output. */
export type Family = "ipv4" | "ipv6";

/**
 * Sysctl keys under `net.` that change on their own, without anything being configured.
 * Measured (kernel 6.18): five snapshots of `/proc/sys/net`, 2 s apart, with ping, TCP
 * connects and unreachable pings in between, in the root namespace and in a namespace
 * with an nft nat table; only these keys ever differed.
 */
export const VOLATILE_SYSCTLS: readonly string[] = [
  "net.netfilter.nf_conntrack_count",
];

/** Route flags that follow carrier or hardware state rather than configuration. */
const VOLATILE_ROUTE_FLAGS = new Set(["linkdown", "offload", "trap", "offload_failed"]);

/** Gives repeated items (two identical rules in one chain) distinct names: `... [copy 2]`. */
function numberCopies(items: string[]): string[] {
  const seen = new Map<string, number>();
  return items.map((item) => {
    const n = (seen.get(item) ?? 0) + 1;
    seen.set(item, n);
    return n === 1 ? item : `${item} [copy ${n}]`;
  });
}

// ---------------------------------------------------------------------------------------
// links, addresses, routes, rules (iproute2)

interface IpLink {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: IpAddr[];
}

interface IpAddr {
  family?: string;
  local?: string;
  address?: string;
  prefixlen?: number;
  scope?: string;
  label?: string;
}

/**
 * `ip -j -d link show` → `link NAME kind=KIND [master=M] mtu=N up|down`. The kind is the
 * link's driver (`bridge`, `veth`, ...), or its link type when it has none (`loopback`,
 * `ether`); the state is the administrative one (the UP flag), not the carrier.
 */
export function normaliseLinks(json: string): string[] {
  return (JSON.parse(json) as IpLink[]).map((l) => {
    const kind = l.linkinfo?.info_kind ?? l.link_type ?? "none";
    const master = l.master ? ` master=${l.master}` : "";
    const up = l.flags?.includes("UP") ? "up" : "down";
    return `link ${l.ifname} kind=${kind}${master} mtu=${l.mtu} ${up}`;
  });
}

/**
 * `ip -j addr show` → `addr IFNAME ADDR/LEN` (plus ` peer P`, ` label=L` when set).
 * IPv6 link-local addresses (fe80::/10) are left out: the kernel derives them from the MAC
 * address, which is random for virtual links, so they are not configuration; a leaked link
 * is reported by its `link` item anyway. Lifetimes and DAD flags are left out too.
 */
export function normaliseAddrs(json: string): string[] {
  const out: string[] = [];
  for (const l of JSON.parse(json) as IpLink[]) {
    for (const a of l.addr_info ?? []) {
      if (!a.local) continue;
      if (a.family === "inet6" && /^fe[89ab]/i.test(a.local)) continue;
      const peer = a.address && a.address !== a.local ? ` peer ${a.address}` : "";
      const label = a.family === "inet" && a.label && a.label !== l.ifname
        ? ` label=${a.label}`
        : "";
      out.push(`addr ${l.ifname} ${a.local}/${a.prefixlen}${peer}${label}`);
    }
  }
  return out;
}

interface IpRoute {
  [k: string]: unknown;
  type?: string;
  dst?: string;
  gateway?: string;
  dev?: string;
  table?: string;
  flags?: string[];
}

/** The route fields written in `ip route` order; anything else is appended as `k=v`. */
const ROUTE_FIELDS: [key: string, word: string][] = [
  ["gateway", "via"],
  ["via", "via"],
  ["dev", "dev"],
  ["protocol", "proto"],
  ["scope", "scope"],
  ["prefsrc", "src"],
  ["metric", "metric"],
  ["pref", "pref"],
];

/**
 * `ip -j -4|-6 route show table all` → `route4 table TABLE: [TYPE ]DST via GW dev DEV
 * proto P scope S src A metric M ...`. Dropped: `expires` and `cache` (they count down),
 * carrier/offload flags, and the kernel's IPv6 `local` routes (`proto kernel`): they mirror
 * the addresses, which are items of their own, and appear only after duplicate address
 * detection, so a snapshot taken just after adding an address would differ from a later
 * one. The kernel's IPv4 `local` and `broadcast` routes are kept (they appear at once).
 */
export function normaliseRoutes(json: string, family: Family): string[] {
  const tag = family === "ipv4" ? "route4" : "route6";
  const out: string[] = [];
  for (const r of JSON.parse(json) as IpRoute[]) {
    const type = r.type ?? "unicast";
    const dst = r.dst ?? "default";
    // the kernel's own host routes to IPv6 addresses: they follow the addresses (reported
    // as `addr` items) and appear only once duplicate address detection is done
    if (family === "ipv6" && type === "local" && r.protocol === "kernel") continue;
    // and the kernel's per-link IPv6 routes (fe80::/64, ff00::/8 multicast, the anycast
    // fe80:: a forwarding link gets): they follow the links, which are items of their own,
    // and appear asynchronously once IPv6 comes up on a link (measured: seconds later)
    if (
      family === "ipv6" && r.protocol === "kernel" &&
      (type === "multicast" || type === "anycast" || dst === "fe80::/64")
    ) continue;
    let s = `${tag} table ${r.table ?? "main"}: ${type === "unicast" ? "" : `${type} `}${dst}`;
    for (const [key, word] of ROUTE_FIELDS) {
      if (r[key] !== undefined) s += ` ${word} ${plain(r[key])}`;
    }
    const flags = (r.flags ?? []).filter((f) => !VOLATILE_ROUTE_FLAGS.has(f));
    if (flags.length) s += ` flags=${flags.join(",")}`;
    const known = new Set(["type", "dst", "table", "flags", "expires", "cache"]);
    for (const [key] of ROUTE_FIELDS) known.add(key);
    for (const [k, v] of Object.entries(r)) {
      if (!known.has(k)) s += ` ${k}=${plain(v)}`;
    }
    out.push(s);
  }
  return out;
}

function plain(v: unknown): string {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && "host" in v) return String((v as { host: unknown }).host);
  return JSON.stringify(v);
}

/** `ip -4|-6 rule show` → `rule4 PRIO: SELECTOR ACTION` (whitespace collapsed). */
export function normaliseRules(text: string, family: Family): string[] {
  const tag = family === "ipv4" ? "rule4" : "rule6";
  return numberCopies(
    text.split("\n").map((l) => l.trim().replace(/\s+/g, " ")).filter(Boolean).map((l) =>
      `${tag} ${l}`
    ),
  );
}

// ---------------------------------------------------------------------------------------
// nftables

/** Per expression/object name, the keys holding run-time state rather than configuration. */
const NFT_STATE_KEYS: Record<string, string[]> = {
  counter: ["packets", "bytes"],
  quota: ["used", "used_unit"],
  last: ["used"],
};

/** Drops `handle` and `expires` everywhere, and counters' and quotas' running state. */
function stripNft(x: unknown, parent?: string): unknown {
  if (Array.isArray(x)) return x.map((v) => stripNft(v));
  if (x && typeof x === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) {
      if (k === "handle" || k === "expires") continue;
      if (parent && NFT_STATE_KEYS[parent]?.includes(k)) continue;
      out[k] = stripNft(v, k);
    }
    return out;
  }
  return x;
}

/** Meta keys nft writes without the `meta` keyword. */
const BARE_META = new Set([
  "iif",
  "oif",
  "iifname",
  "oifname",
  "iiftype",
  "oiftype",
  "iifgroup",
  "oifgroup",
  "skuid",
  "skgid",
  "rtclassid",
  "ibrname",
  "obrname",
  "cpu",
  "cgroup",
  "nftrace",
]);

function nftScalar(x: string | number | boolean): string {
  if (typeof x !== "string") return String(x);
  return /^[\w.:/@*$+-]+$/.test(x) ? x : JSON.stringify(x);
}

/** Readable text of an nft JSON expression (close to `nft list` syntax where common). */
function nftText(x: unknown): string {
  if (x === null || x === undefined) return "";
  if (typeof x === "string" || typeof x === "number" || typeof x === "boolean") {
    return nftScalar(x);
  }
  if (Array.isArray(x)) return `{ ${x.map(nftText).join(", ")} }`;
  const entries = Object.entries(x as Record<string, unknown>);
  if (entries.length !== 1) return nftFields(x as Record<string, unknown>);
  const [k, v] = entries[0];
  return nftExpr(k, v);
}

/** `k=v k2=v2` (values that read as several words in parentheses). */
function nftFields(o: Record<string, unknown>, skip: string[] = []): string {
  return Object.entries(o).filter(([k]) => !skip.includes(k)).map(([k, v]) => {
    if (Array.isArray(v) && v.every((e) => e === null || typeof e !== "object")) {
      return `${k}=${v.map((e) => nftText(e)).join(",")}`;
    }
    if (v === null || typeof v === "object" && !Object.keys(v as object).length) return k;
    const t = nftText(v);
    return `${k}=${/\s/.test(t) && !/^[{"(]/.test(t) ? `(${t})` : t}`;
  }).join(" ");
}

function withRest(head: string, o: Record<string, unknown>, known: string[]): string {
  const rest = nftFields(o, known);
  return rest ? `${head} ${rest}` : head;
}

function nftExpr(k: string, v: unknown): string {
  const o = (v && typeof v === "object" && !Array.isArray(v) ? v : {}) as Record<string, unknown>;
  switch (k) {
    case "match": {
      const op = o.op === "==" || o.op === undefined ? "" : `${o.op} `;
      return `${nftText(o.left)} ${op}${nftText(o.right)}`;
    }
    case "payload":
      if (o.protocol !== undefined && o.field !== undefined) {
        return withRest(`${o.protocol} ${o.field}`, o, ["protocol", "field"]);
      }
      break;
    case "meta":
      if (typeof o.key === "string") {
        return withRest(BARE_META.has(o.key) ? o.key : `meta ${o.key}`, o, ["key"]);
      }
      break;
    case "ct":
      if (typeof o.key === "string") {
        const dir = o.dir ? `${o.dir} ` : "";
        const fam = o.family ? `${o.family} ` : "";
        return withRest(`ct ${dir}${fam}${o.key}`, o, ["key", "dir", "family"]);
      }
      break;
    case "prefix":
      return `${nftText(o.addr)}/${o.len}`;
    case "range":
      if (Array.isArray(v)) return v.map(nftText).join("-");
      break;
    case "set":
      return Array.isArray(v) ? `{ ${v.map(nftText).join(", ")} }` : nftText(v);
    case "concat":
      if (Array.isArray(v)) return v.map(nftText).join(" . ");
      break;
    case "jump":
    case "goto":
      if (typeof o.target === "string") return `${k} ${o.target}`;
      break;
    case "counter":
      if (v === null || !Object.keys(o).length && typeof v === "object") return "counter";
      if (typeof v === "string") return `counter name ${nftScalar(v)}`;
      return `counter ${nftFields(o)}`;
    case "map":
    case "vmap":
      if (o.key !== undefined && o.data !== undefined) {
        return `${nftText(o.key)} ${k} ${nftText(o.data)}`;
      }
      break;
    case "&":
    case "|":
    case "^":
    case "<<":
    case ">>":
      if (Array.isArray(v)) return `(${v.map(nftText).join(` ${k} `)})`;
      break;
    case "elem":
      return withRest(nftText(o.val), o, ["val"]);
    case "xt":
      return `xt ${o.type} ${o.name}`;
    case "mangle":
      return `${nftText(o.key)} set ${nftText(o.value)}`;
  }
  if (v === null || v === undefined) return k;
  if (typeof v !== "object" || Array.isArray(v)) return `${k} ${nftText(v)}`;
  const fields = nftFields(o);
  return fields ? `${k} ${fields}` : k;
}

/**
 * `nft -j [-s] list ruleset` → one item per table, chain, rule, set/map, set/map element
 * and other object, with every `handle` stripped recursively and counters', quotas' and
 * timeouts' running state (`packets`, `bytes`, `used`, `expires`) dropped:
 *
 * - `nft table inet t`
 * - `nft chain inet t forward type=filter hook=forward prio=0 policy=accept`
 * - `nft rule inet t forward: ip saddr @allowed counter accept comment "allow listed"`
 * - `nft set inet t allowed type=ipv4_addr`, `nft set inet t allowed element 10.99.0.5`
 * - `nft map inet t ports type=inet_service map=ipv4_addr`,
 *   `nft map inet t ports element 80 : 10.99.0.5`
 *
 * Rules are compared by content (expressions and comment); an identical second rule in the
 * same chain gets ` [copy 2]`. The order of rules within a chain is not compared.
 */
export function normaliseNftJson(json: string): string[] {
  const doc = stripNft(JSON.parse(json)) as { nftables?: Record<string, unknown>[] };
  const out: string[] = [];
  for (const entry of doc.nftables ?? []) {
    for (const [kind, raw] of Object.entries(entry)) {
      if (kind === "metainfo") continue;
      if (!raw || typeof raw !== "object") {
        out.push(`nft ${kind} ${JSON.stringify(raw)}`);
        continue;
      }
      const o = raw as Record<string, unknown>;
      const fam = String(o.family ?? "?");
      switch (kind) {
        case "table":
          out.push(withRest(`nft table ${fam} ${o.name}`, o, ["family", "name"]));
          break;
        case "chain":
          out.push(withRest(`nft chain ${fam} ${o.table} ${o.name}`, o, [
            "family",
            "table",
            "name",
          ]));
          break;
        case "rule": {
          const expr = Array.isArray(o.expr) ? o.expr.map(nftText).join(" ") : "";
          const comment = typeof o.comment === "string"
            ? ` comment ${JSON.stringify(o.comment)}`
            : "";
          const rest = nftFields(o, ["family", "table", "chain", "expr", "comment"]);
          out.push(
            `nft rule ${fam} ${o.table} ${o.chain}: ${expr}${comment}${rest ? ` ${rest}` : ""}`,
          );
          break;
        }
        case "set":
        case "map": {
          const head = `nft ${kind} ${fam} ${o.table} ${o.name}`;
          out.push(withRest(head, o, ["family", "table", "name", "elem"]));
          const elems = Array.isArray(o.elem) ? o.elem : o.elem === undefined ? [] : [o.elem];
          for (const e of elems) {
            const text = kind === "map" && Array.isArray(e) && e.length === 2
              ? `${nftText(e[0])} : ${nftText(e[1])}`
              : nftText(e);
            out.push(`${head} element ${text}`);
          }
          break;
        }
        default:
          out.push(withRest(`nft ${kind} ${fam} ${o.table} ${o.name}`, o, [
            "family",
            "table",
            "name",
          ]));
      }
    }
  }
  return numberCopies(out);
}

// ---------------------------------------------------------------------------------------
// iptables

/**
 * `iptables-save` / `ip6tables-save` (with or without `-c`) → `iptables TABLE table`,
 * `iptables TABLE :CHAIN POLICY` and `iptables TABLE -A CHAIN ...` (`ip6tables` for IPv6).
 * Comment lines, `COMMIT` and every `[packets:bytes]` counter are dropped; an identical
 * second rule gets ` [copy 2]`.
 */
export function normaliseIptablesSave(text: string, family: Family): string[] {
  const tool = family === "ipv4" ? "iptables" : "ip6tables";
  const out: string[] = [];
  let table = "?";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line === "COMMIT") continue;
    if (line.startsWith("*")) {
      table = line.slice(1);
      out.push(`${tool} ${table} table`);
      continue;
    }
    // counters: `[p:b] -A ...` on rules (with -c), `:CHAIN POLICY [p:b]` on chains
    const bare = line.replace(/^\[\d+:\d+\]\s+/, "").replace(/^(:\S+\s+\S+)\s+\[\d+:\d+\]$/, "$1");
    out.push(`${tool} ${table} ${bare}`);
  }
  return numberCopies(out);
}

// ---------------------------------------------------------------------------------------
// sysctls

/** Subtrees whose next component is an interface name (or `all` / `default`). */
const PER_INTERFACE = new Set(["conf", "neigh"]);

/**
 * Per-interface sysctl key → the interface (`net.ipv4.conf.eth0/100.rp_filter` → `eth0.100`);
 * undefined for the other keys and for `all` / `default`.
 */
export function sysctlInterface(key: string): string | undefined {
  const c = key.split(".");
  if (c.length < 5 || c[0] !== "net" || !PER_INTERFACE.has(c[2])) return undefined;
  if (c[3] === "all" || c[3] === "default") return undefined;
  return c[3].replaceAll("/", ".");
}

/**
 * Sysctls under `net.` → `sysctl KEY=VALUE` (whitespace in values collapsed to one space).
 * Reads `sysctl -a` output (`key = value`) or `grep -r . /proc/sys/net` output
 * (`/proc/sys/net/...:value`); interface names with dots are written `eth0/100`, as
 * sysctl(8) does. Dropped: {@linkcode VOLATILE_SYSCTLS}, and the per-interface keys
 * (`net.{ipv4,ipv6,mpls}.conf.IF.*`, `net.{ipv4,ipv6}.neigh.IF.*`) of every interface
 * other than `all` / `default` that is not in `links`. Pass `[]` to drop every
 * interface's keys; {@linkcode snapshotNetns} passes the links it found, and
 * {@linkcode diffSnapshots} only compares those of links present on both sides.
 */
export function normaliseSysctl(text: string, links: string[]): string[] {
  const keep = new Set(links);
  const volatile = new Set(VOLATILE_SYSCTLS);
  const out: string[] = [];
  for (const line of text.split("\n")) {
    let parts: string[];
    let value: string;
    if (line.startsWith("/proc/sys/")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      parts = line.slice("/proc/sys/".length, colon).split("/").map((p) => p.replaceAll(".", "/"));
      value = line.slice(colon + 1);
    } else {
      const eq = line.indexOf(" = ");
      if (eq < 0) continue;
      parts = line.slice(0, eq).trim().split(".");
      value = line.slice(eq + 3);
    }
    const key = parts.join(".");
    if (parts[0] !== "net" || volatile.has(key)) continue;
    const ifname = sysctlInterface(key);
    if (ifname !== undefined && !keep.has(ifname)) continue;
    out.push(`sysctl ${key}=${value.trim().replace(/\s+/g, " ")}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// snapshots

/** Runs argv; undefined when the program is not installed. */
async function tryExec(argv: string[]): Promise<ExecResult | undefined> {
  try {
    return await exec(argv, { timeoutMs: 10_000 });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Snapshot of a network namespace (the root one when `netnsPath` is undefined; otherwise
 * entered with `nsenter --net=PATH`): links, addresses, routes of every table and ip rules
 * (IPv4 and IPv6), the full nft ruleset, iptables and ip6tables rules, and the sysctls
 * under `net.`. The commands run in parallel (about 30-60 ms in all). Throws when there is
 * no namespace at `netnsPath`; a command that fails leaves an entry in `errors`.
 */
export async function snapshotNetns(netnsPath?: string): Promise<NsSnapshot> {
  const t0 = performance.now();
  if (netnsPath !== undefined) {
    try {
      await Deno.stat(netnsPath);
    } catch {
      throw new Error(`cannot snapshot: no namespace at ${netnsPath}`);
    }
  }
  const inNs = (argv: string[]) =>
    netnsPath === undefined ? argv : ["nsenter", `--net=${netnsPath}`, ...argv];
  const errors: string[] = [];
  const run = async (
    what: string,
    argv: string[],
    ok: (r: ExecResult) => boolean = (r) => r.code === 0,
  ): Promise<string | undefined> => {
    const r = await tryExec(inNs(argv));
    // not installed (nsenter exits 127 when it cannot execute it): nothing to compare
    if (!r || netnsPath !== undefined && r.code === 127 && /No such file/.test(r.stderr)) {
      return undefined;
    }
    if (!ok(r)) {
      errors.push(`${what}: ${argv.join(" ")}: exit ${r.code}: ${lastLine(r.stderr)}`);
      return undefined;
    }
    return r.stdout;
  };
  const [links, addrs, r4, r6, rules4, rules6, nft, ipt, ip6t, sysctl] = await Promise.all([
    run("links", ["ip", "-j", "-d", "link", "show"]),
    run("addresses", ["ip", "-j", "addr", "show"]),
    run("routes", ["ip", "-j", "-4", "route", "show", "table", "all"]),
    run("routes", ["ip", "-j", "-6", "route", "show", "table", "all"]),
    run("rules", ["ip", "-4", "rule", "show"]),
    run("rules", ["ip", "-6", "rule", "show"]),
    run("nft", ["nft", "-j", "-s", "list", "ruleset"]),
    run("iptables", ["iptables-save"]),
    run("ip6tables", ["ip6tables-save"]),
    // grep exits 2 on the write-only files (route flush), which it skips
    run(
      "sysctl",
      ["grep", "-r", "-s", "-a", "-H", ".", "/proc/sys/net"],
      (r) => r.code === 0 || r.code === 2 && r.stdout.length > 0,
    ),
  ]);
  const items: string[] = [];
  const parse = (what: string, text: string | undefined, f: (t: string) => string[]) => {
    if (text === undefined) return;
    try {
      items.push(...f(text));
    } catch (err) {
      errors.push(`${what}: unreadable output: ${err instanceof Error ? err.message : err}`);
    }
  };
  const linkNames: string[] = [];
  parse("links", links, (t) => {
    const found = normaliseLinks(t);
    for (const l of JSON.parse(t) as IpLink[]) linkNames.push(l.ifname);
    return found;
  });
  parse("addresses", addrs, normaliseAddrs);
  parse("routes", r4, (t) => normaliseRoutes(t, "ipv4"));
  parse("routes", r6, (t) => normaliseRoutes(t, "ipv6"));
  parse("rules", rules4, (t) => normaliseRules(t, "ipv4"));
  parse("rules", rules6, (t) => normaliseRules(t, "ipv6"));
  parse("nft", nft, normaliseNftJson);
  parse("iptables", ipt, (t) => normaliseIptablesSave(t, "ipv4"));
  parse("ip6tables", ip6t, (t) => normaliseIptablesSave(t, "ipv6"));
  parse("sysctl", sysctl, (t) => normaliseSysctl(t, linkNames));
  return {
    source: netnsPath ?? "root",
    items: new Set(items),
    errors,
    ms: performance.now() - t0,
  };
}

function lastLine(s: string): string {
  return s.trim().split("\n").pop() ?? "";
}

async function entries(dir: string, errors: string[]): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) errors.push(`${dir}: ${err}`);
  }
  return names.sort();
}

/** Where the reference daemon keeps its prefix locks (`cnm daemon`'s run directory). */
export const RUN_DIR = "/run/cnm";

/** Directories where Docker looks for network/IPAM plugins (sockets and specs). */
const PLUGIN_DIRS = ["/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins"];

/**
 * Snapshot of the shared places of the machine (root-only state outside any namespace):
 *
 * - `netns NAME`: names under /run/netns
 * - `/etc/netns/NAME`: per-namespace configuration directories
 * - `mount TARGET FSTYPE`: mounts (from /proc/self/mounts; /run/netns itself, which
 *   iproute2 mounts once and keeps, is left out)
 * - `tmp DIR/NAME`: entries of `tmpDir` (default `$TMPDIR` or /tmp) starting with
 *   `tmpPrefix` (default `cnmt-`)
 * - `plugin DIR/NAME`: entries of Docker's plugin directories that exist
 * - `run /run/cnm/NAME`: entries of /run/cnm starting with `tmpPrefix` (a reference
 *   daemon's prefix lock, which a killed daemon leaves for its killer to remove)
 */
export async function snapshotMachine(
  opts: { tmpDir?: string; tmpPrefix?: string } = {},
): Promise<NsSnapshot> {
  const t0 = performance.now();
  const errors: string[] = [];
  const tmp = (opts.tmpDir ?? Deno.env.get("TMPDIR") ?? "/tmp").replace(/(.)\/$/, "$1");
  const tmpPrefix = opts.tmpPrefix ?? "cnmt-";
  const [netns, etc, tmpNames, runNames, plugins, mounts] = await Promise.all([
    entries("/run/netns", errors),
    entries("/etc/netns", errors),
    entries(tmp, errors),
    entries(RUN_DIR, errors),
    Promise.all(
      PLUGIN_DIRS.map(async (d) => (await entries(d, errors)).map((n) => `plugin ${d}/${n}`)),
    ),
    Deno.readTextFile("/proc/self/mounts").catch((err) => {
      errors.push(`/proc/self/mounts: ${err}`);
      return "";
    }),
  ]);
  const items = [
    ...netns.map((n) => `netns ${n}`),
    ...etc.map((n) => `/etc/netns/${n}`),
    ...tmpNames.filter((n) => n.startsWith(tmpPrefix)).map((n) => `tmp ${tmp}/${n}`),
    ...runNames.filter((n) => n.startsWith(tmpPrefix)).map((n) => `run ${RUN_DIR}/${n}`),
    ...plugins.flat(),
    ...numberCopies(normaliseMounts(mounts)),
  ];
  return { source: "machine", items: new Set(items), errors, ms: performance.now() - t0 };
}

/** /proc/self/mounts → `mount TARGET FSTYPE` (the /run/netns mount point itself left out). */
export function normaliseMounts(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 3) continue;
    if (f[1] === "/run/netns" || f[1] === "/var/run/netns") continue;
    out.push(`mount ${f[1]} ${f[2]}`);
  }
  return out;
}

/** The items a harness host legitimately holds on the machine until forced clean-up. */
export function harnessItems(host: { netns: string[]; dirs: string[] }): string[] {
  return [
    ...host.netns.flatMap((n) => [`netns ${n}`, `mount /run/netns/${n} nsfs`]),
    ...host.dirs.map((d) => `tmp ${d.replace(/\/$/, "")}`),
  ];
}

// ---------------------------------------------------------------------------------------
// processes

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  args: string;
  ns?: string;
}

async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const [stat, cmdline, ns] = await Promise.all([
      Deno.readTextFile(`/proc/${pid}/stat`),
      Deno.readTextFile(`/proc/${pid}/cmdline`),
      Deno.stat(`/proc/${pid}/ns/net`).then((s) => `${s.dev}:${s.ino}`).catch(() => undefined),
    ]);
    const after = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const args = cmdline.replace(/\0+$/, "").replaceAll("\0", " ");
    return { pid, ppid: Number(after[1]), state: after[0], args: args || `[${comm}]`, ns };
  } catch {
    return undefined; // gone meanwhile
  }
}

/**
 * Processes still alive that belong to the run: those that (a) carry `prefix` in their
 * command line, (b) live in one of `netnsPaths` (same namespace inode), or (c) descend
 * from `rootPid` (default: this process). Left out: this process, zombies, kernel threads,
 * and the pids in `exclude` with their descendants (the harness's own helpers). Each is
 * reported as `process PID ARGS [why, ...]`, ARGS cut at 160 characters. Reads /proc
 * directly (no `ps` child of its own to filter out).
 */
export async function processesOf(opts: {
  prefix: string;
  netnsPaths: string[];
  rootPid?: number;
  exclude?: number[];
}): Promise<string[]> {
  const rootPid = opts.rootPid ?? Deno.pid;
  const nsOf = new Map<string, string>();
  await Promise.all(opts.netnsPaths.map(async (p) => {
    try {
      const s = await Deno.stat(p);
      nsOf.set(`${s.dev}:${s.ino}`, p);
    } catch { /* namespace gone: nothing lives there */ }
  }));
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (/^\d+$/.test(e.name)) pids.push(Number(e.name));
  }
  const procs = (await Promise.all(pids.map(readProc))).filter((p): p is ProcInfo => !!p);
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const descendants = (roots: number[], self: boolean): Set<number> => {
    const out = new Set<number>(self ? roots : []);
    const todo = roots.flatMap((r) => children.get(r) ?? []);
    while (todo.length) {
      const pid = todo.pop()!;
      if (out.has(pid)) continue;
      out.add(pid);
      todo.push(...(children.get(pid) ?? []));
    }
    return out;
  };
  const excluded = descendants(opts.exclude ?? [], true);
  const mine = descendants([rootPid], false);
  const out: string[] = [];
  for (const p of procs.sort((a, b) => a.pid - b.pid)) {
    if (p.pid === Deno.pid || excluded.has(p.pid) || p.state === "Z" || p.state === "X") continue;
    if (p.ppid === 2 || p.pid === 2) continue; // kernel threads
    const why: string[] = [];
    if (opts.prefix && p.args.includes(opts.prefix)) why.push(`command line has ${opts.prefix}`);
    const ns = p.ns && nsOf.get(p.ns);
    if (ns) why.push(`in ${ns}`);
    if (mine.has(p.pid)) why.push(`descends from ${rootPid}`);
    if (why.length) out.push(`process ${p.pid} ${p.args.slice(0, 160)} [${why.join(", ")}]`);
  }
  return out;
}

/**
 * The data dir of an etcd command line (argv as in /proc/PID/cmdline: `--data-dir D` or
 * `--data-dir=D`), or undefined for any other program.
 */
export function etcdDataDir(argv: string[]): string | undefined {
  if (argv[0]?.split("/").pop() !== "etcd") return undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i].replace(/^--?/, "-");
    if (a === "-data-dir") return argv[i + 1];
    if (a.startsWith("-data-dir=")) return a.slice("-data-dir=".length);
  }
  return "default.etcd"; // etcd's default, relative to its working directory
}

/**
 * etcd processes whose data dir is one of the run's temp entries (`TMP/<prefix>...`, as
 * the underlay names it): a store started by us. They outlive their namespace's name
 * (`ip netns del` leaves a running process's namespace alive), so a clean-up by namespace
 * name alone misses them.
 */
export async function etcdProcessesOf(
  prefix: string,
  tmpDir = Deno.env.get("TMPDIR") ?? "/tmp",
): Promise<{ pid: number; dataDir: string }[]> {
  const under = `${tmpDir.replace(/(.)\/$/, "$1")}/${prefix}`;
  const out: { pid: number; dataDir: string }[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    const dataDir = etcdDataDir(cmdline.replace(/\0+$/, "").split("\0"));
    if (dataDir?.startsWith(under)) out.push({ pid: Number(e.name), dataDir });
  }
  return out.sort((a, b) => a.pid - b.pid);
}

// ---------------------------------------------------------------------------------------
// differences

/**
 * Options of {@linkcode diffSnapshots} for snapshots of shared places (the root namespace,
 * the machine), where other runs and other tools may be at work.
 */
export interface DiffOptions {
  /** The run's prefix (`cnmt-1a2b3c`). */
  prefix?: string;
  /**
   * Item kinds whose names are per run: an item of one of these kinds counts only when one
   * of its words or path components starts with `prefix`. A kind matches an item that
   * starts with it followed by a space or `/`: `netns`, `/etc/netns`, `tmp`, `mount`, ...
   * Default (when `prefix` is given): `netns`, `/etc/netns`, `tmp`.
   */
  kinds?: string[];
  /**
   * Names of the suite's runs in general (default `cnmt-`): any other item naming a
   * component that starts with it but not with `prefix` belongs to another run (its
   * mounts, say) and is ignored.
   */
  family?: string;
  /** Items that may differ (the harness's own, see {@linkcode harnessItems}). */
  allow?: Iterable<string>;
}

const SYSCTL_RE = /^sysctl ([^=]+)=/;

/**
 * The differences between two snapshots, sorted by item: `+ WHERE: ITEM` for an item that
 * appeared, `- WHERE: ITEM` for one that vanished (a changed value reads as a `-` line and a
 * `+` line for the same key), `! WHERE: could not read ...` for a part of `after` that
 * could not be read. All count as residue, except:
 *
 * - per-interface sysctls of an interface not present on both sides (its `link` item
 *   tells the story);
 * - with `opts.prefix`: items of `opts.kinds` not named with the run's prefix, items
 *   naming another run (see {@linkcode DiffOptions.family}), and `opts.allow`.
 *
 * A sysctl key that did not exist before (a kernel module was loaded meanwhile) is marked
 * `(new key: a module was loaded)`.
 */
export function diffSnapshots(
  before: NsSnapshot,
  after: NsSnapshot,
  where: string,
  opts: DiffOptions = {},
): string[] {
  const linksOf = (s: NsSnapshot) =>
    new Set([...s.items].filter((i) => i.startsWith("link ")).map((i) => i.split(" ")[1]));
  const keysOf = (s: NsSnapshot) =>
    new Set([...s.items].map((i) => SYSCTL_RE.exec(i)?.[1]).filter((k) => k !== undefined));
  const bothLinks = new Set([...linksOf(before)].filter((l) => linksOf(after).has(l)));
  const allow = new Set(opts.allow ?? []);
  const kinds = opts.kinds ?? ["netns", "/etc/netns", "tmp"];
  const family = opts.family ?? "cnmt-";
  const counts = (item: string): boolean => {
    const key = SYSCTL_RE.exec(item)?.[1];
    const ifname = key && sysctlInterface(key);
    if (ifname && !bothLinks.has(ifname)) return false;
    if (allow.has(item)) return false;
    if (opts.prefix === undefined) return true;
    const prefix = opts.prefix;
    const words = item.split(/[\s/]+/).filter(Boolean);
    const ours = words.some((w) => w.startsWith(prefix));
    if (kinds.some((k) => item.startsWith(`${k} `) || item.startsWith(`${k}/`))) return ours;
    return ours || !words.some((w) => w.startsWith(family));
  };
  const keysBefore = keysOf(before);
  const keysAfter = keysOf(after);
  const lines: [item: string, sign: string, note: string][] = [];
  for (const item of after.items) {
    if (before.items.has(item) || !counts(item)) continue;
    const key = SYSCTL_RE.exec(item)?.[1];
    const note = key && !keysBefore.has(key) ? " (new key: a module was loaded)" : "";
    lines.push([item, "+", note]);
  }
  for (const item of before.items) {
    if (after.items.has(item) || !counts(item)) continue;
    const key = SYSCTL_RE.exec(item)?.[1];
    const note = key && !keysAfter.has(key) ? " (key gone)" : "";
    lines.push([item, "-", note]);
  }
  lines.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const errs = after.errors.filter((e) => !before.errors.includes(e)).map((e) =>
    `! ${where}: could not read ${e}`
  );
  return [...errs, ...lines.map(([item, sign, note]) => `${sign} ${where}: ${item}${note}`)];
}
