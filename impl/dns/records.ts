/**
 * The embedded resolver's records: which names exist on which network, and what a sandbox
 * sees. Pure data, no I/O.
 *
 * Docker 20.10's semantics (research/libnetwork.md §4.2-4.3):
 * - records are per network; an endpoint's names there are its sandbox's name, its hostname
 *   and its aliases on that network, stored lower-case (matching is case-insensitive);
 * - a sandbox sees only the networks it has endpoints on, walked in join order; for a name
 *   `a.b.c` the candidates are `a.b.c` on any of them, then `a.b` on network `c`, then `a`
 *   on network `b.c`, so `NAME.NETWORK` works for every name; the first network where the
 *   name exists wins;
 * - a name held by several endpoints of a network (a shared alias) has all their addresses,
 *   duplicates removed;
 * - every endpoint address has a PTR record naming `SANDBOXNAME.NETWORK.` (only the sandbox
 *   name gets one, as only Docker's first DNS name does);
 * - a name "exists" when it is on the network at all, whatever address families it has:
 *   asking for a family it lacks gives NODATA, not NXDOMAIN (§4.3, §4.4).
 * - a sandbox forwards unknown names only when one of its networks is not internal (§4.4,
 *   `TestInternalNetworkDNS`).
 * @module
 */
import { InvalidArgumentError } from "../model/errors.ts";
import { formatIp, tryParseIp } from "../model/ip.ts";
import { reverseName } from "./wire.ts";

/** One endpoint, as the resolver needs it. */
export interface DnsEndpoint {
  /** The sandbox the endpoint is joined to. */
  sandboxId: string;
  /** The sandbox's (container's) name: a DNS name, and the PTR target's first label. */
  sandboxName: string;
  /** The sandbox's hostname: also a DNS name on each of its networks. */
  hostname: string;
  networkId: string;
  /** The network's name: the suffix of qualified names (`NAME.NETWORK`) and PTR targets. */
  networkName: string;
  /**
   * True when the network gives no external access (Docker's `--internal`, or any network
   * without a gateway). A sandbox whose networks are all internal never forwards.
   */
  internal: boolean;
  /** Network-scoped aliases (`connect --alias`). */
  aliases: string[];
  /** IPv4 address without prefix length (a `/len` suffix is tolerated and dropped). */
  ipv4?: string;
  /** IPv6 address without prefix length (a `/len` suffix is tolerated and dropped). */
  ipv6?: string;
}

/** The addresses a name has on one network. */
export interface NameRecord {
  v4: string[];
  v6: string[];
}

/** One network's table, rebuilt from its endpoints when they change. */
export class NetworkTable {
  readonly id: string;
  name = "";
  nameLower = "";
  internal = false;
  /** Endpoints on this network by sandbox id, in the order they were first added. */
  readonly endpoints: Map<string, DnsEndpoint> = new Map();
  #names = new Map<string, NameRecord>();
  #ptr = new Map<string, string>();
  #dirty = true;

  constructor(id: string) {
    this.id = id;
  }

  /** Marks the derived tables stale after an endpoint change. */
  touch(): void {
    this.#dirty = true;
    const any = this.endpoints.values().next();
    if (!any.done) {
      this.name = any.value.networkName;
      this.nameLower = this.name.toLowerCase();
      this.internal = any.value.internal;
    }
  }

  #rebuild(): void {
    this.#names = new Map();
    this.#ptr = new Map();
    for (const ep of this.endpoints.values()) {
      const names = new Set<string>();
      for (const n of [ep.sandboxName, ep.hostname, ...ep.aliases]) {
        const key = normalizeName(n);
        if (key) names.add(key);
      }
      for (const key of names) {
        let rec = this.#names.get(key);
        if (!rec) this.#names.set(key, rec = { v4: [], v6: [] });
        if (ep.ipv4 && !rec.v4.includes(ep.ipv4)) rec.v4.push(ep.ipv4);
        if (ep.ipv6 && !rec.v6.includes(ep.ipv6)) rec.v6.push(ep.ipv6);
      }
      const target = `${ep.sandboxName}.${this.name}.`;
      for (const ip of [ep.ipv4, ep.ipv6]) {
        if (!ip || !ep.sandboxName) continue; // an anonymous endpoint has no PTR either
        const parsed = tryParseIp(ip)!;
        const rev = reverseName(parsed.family, parsed.value);
        if (!this.#ptr.has(rev)) this.#ptr.set(rev, target);
      }
    }
    this.#dirty = false;
  }

  /** The record of a lower-case name on this network, if it exists here. */
  lookup(name: string): NameRecord | undefined {
    if (this.#dirty) this.#rebuild();
    return this.#names.get(name);
  }

  /** The PTR target (`name.network.`) of a lower-case reverse name, if it is ours. */
  lookupPtr(reverse: string): string | undefined {
    if (this.#dirty) this.#rebuild();
    return this.#ptr.get(reverse);
  }

  /** Every name on the network (lower-case), for inspection and tests. */
  names(): string[] {
    if (this.#dirty) this.#rebuild();
    return [...this.#names.keys()].sort();
  }
}

/** Lower-cases a name and drops one trailing dot; `""` for an empty name. */
export function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

/**
 * What one sandbox sees: its networks in join order, whether it may forward, and a cache of
 * encoded answers. Sandboxes with the same networks in the same order share one view, so
 * they share the cache too.
 */
export class View {
  readonly key: string;
  readonly networks: NetworkTable[];
  /** True when at least one network is not internal: unknown names may be forwarded. */
  proxy: boolean;
  /** Sandboxes using this view. */
  refs = 0;
  /** Encoded answers by query type, then lower-case name; owned by the resolver. */
  readonly cache: Map<number, Map<string, unknown>> = new Map();
  /** Number of entries in `cache`, to bound it. */
  cacheSize = 0;

  constructor(key: string, networks: NetworkTable[]) {
    this.key = key;
    this.networks = networks;
    this.proxy = networks.some((n) => !n.internal);
  }

  /** Drops the cached answers (after a record change on one of the networks). */
  invalidate(): void {
    this.cache.clear();
    this.cacheSize = 0;
    this.proxy = this.networks.some((n) => !n.internal);
  }

  /**
   * Resolves a lower-case name without trailing dot, Docker's way (§4.3): the whole name on
   * each network in order, then `a.b` on network `c`, then `a` on network `b.c`; the first
   * network where the name exists wins. Undefined when it exists nowhere here.
   */
  resolve(name: string): NameRecord | undefined {
    for (const n of this.networks) {
      const rec = n.lookup(name);
      if (rec) return rec;
    }
    for (let dot = name.lastIndexOf("."); dot > 0; dot = name.lastIndexOf(".", dot - 1)) {
      const netName = name.slice(dot + 1);
      const short = name.slice(0, dot);
      for (const n of this.networks) {
        if (n.nameLower !== netName) continue;
        const rec = n.lookup(short);
        if (rec) return rec;
      }
    }
    return undefined;
  }

  /** The PTR target of a lower-case reverse name on this sandbox's networks. */
  resolvePtr(reverse: string): string | undefined {
    for (const n of this.networks) {
      const t = n.lookupPtr(reverse);
      if (t !== undefined) return t;
    }
    return undefined;
  }
}

/** Strips an optional `/len` and checks the address family; returns the canonical text. */
function cleanAddress(ep: DnsEndpoint, ip: string | undefined, family: 4 | 6): string | undefined {
  if (ip === undefined || ip === "") return undefined;
  const text = ip.includes("/") ? ip.slice(0, ip.indexOf("/")) : ip;
  const parsed = tryParseIp(text);
  if (!parsed || parsed.family !== family) {
    throw new InvalidArgumentError(
      `Cannot record DNS names of sandbox "${ep.sandboxName}" on network "${ep.networkName}": ` +
        `"${ip}" is not an IPv${family} address`,
    );
  }
  return formatIp(family, parsed.value);
}

/**
 * Every endpoint the resolver knows, its per-network tables and the per-sandbox views.
 * Changes take effect at once: the tables of the network concerned are rebuilt on next use
 * and the cached answers of every view that includes it are dropped.
 */
export class DnsRecords {
  /** Endpoints by sandbox, then network, in join order. */
  readonly #bySandbox = new Map<string, Map<string, DnsEndpoint>>();
  readonly #networks = new Map<string, NetworkTable>();
  readonly #views = new Map<string, View>();
  readonly #sandboxViews = new Map<string, View>();

  /** Adds or replaces the endpoint of `ep.sandboxId` on `ep.networkId`. */
  upsert(ep: DnsEndpoint): void {
    const clean: DnsEndpoint = {
      sandboxId: ep.sandboxId,
      sandboxName: ep.sandboxName,
      hostname: ep.hostname,
      networkId: ep.networkId,
      networkName: ep.networkName,
      internal: ep.internal,
      aliases: [...ep.aliases],
      ipv4: cleanAddress(ep, ep.ipv4, 4),
      ipv6: cleanAddress(ep, ep.ipv6, 6),
    };
    let eps = this.#bySandbox.get(ep.sandboxId);
    if (!eps) this.#bySandbox.set(ep.sandboxId, eps = new Map());
    eps.set(ep.networkId, clean);
    let table = this.#networks.get(ep.networkId);
    if (!table) this.#networks.set(ep.networkId, table = new NetworkTable(ep.networkId));
    table.endpoints.set(ep.sandboxId, clean);
    table.touch();
    // A network's name or internal flag comes with every endpoint: keep them all in step.
    for (const other of table.endpoints.values()) {
      other.networkName = clean.networkName;
      other.internal = clean.internal;
    }
    this.#changed(ep.sandboxId, ep.networkId);
  }

  /** Removes the endpoint of a sandbox on a network; unknown pairs are ignored. */
  remove(sandboxId: string, networkId: string): void {
    const eps = this.#bySandbox.get(sandboxId);
    if (!eps?.delete(networkId)) return;
    if (eps.size === 0) this.#bySandbox.delete(sandboxId);
    const table = this.#networks.get(networkId);
    if (table) {
      table.endpoints.delete(sandboxId);
      if (table.endpoints.size === 0) this.#networks.delete(networkId);
      else table.touch();
    }
    this.#changed(sandboxId, networkId);
  }

  /** Removes every endpoint of a sandbox. */
  removeSandbox(sandboxId: string): void {
    for (const networkId of [...(this.#bySandbox.get(sandboxId)?.keys() ?? [])]) {
      this.remove(sandboxId, networkId);
    }
  }

  #changed(sandboxId: string, networkId: string): void {
    this.#release(sandboxId);
    for (const v of this.#views.values()) {
      if (v.networks.some((n) => n.id === networkId)) v.invalidate();
    }
  }

  #release(sandboxId: string): void {
    const v = this.#sandboxViews.get(sandboxId);
    if (!v) return;
    this.#sandboxViews.delete(sandboxId);
    if (--v.refs === 0) this.#views.delete(v.key);
  }

  /** The view of a sandbox (its networks in join order); empty when it has no endpoints. */
  viewOf(sandboxId: string): View {
    const cached = this.#sandboxViews.get(sandboxId);
    if (cached) return cached;
    const eps = this.#bySandbox.get(sandboxId);
    const ids = eps ? [...eps.keys()] : [];
    const key = ids.join("\n");
    let v = this.#views.get(key);
    if (!v) {
      v = new View(key, ids.map((id) => this.#networks.get(id)!));
      this.#views.set(key, v);
    }
    v.refs++;
    this.#sandboxViews.set(sandboxId, v);
    return v;
  }

  /** The endpoints of a sandbox, in join order. */
  endpointsOf(sandboxId: string): DnsEndpoint[] {
    return [...(this.#bySandbox.get(sandboxId)?.values() ?? [])];
  }

  /** The table of a network, if any endpoint is on it. */
  network(networkId: string): NetworkTable | undefined {
    return this.#networks.get(networkId);
  }

  /** Number of distinct views (for tests: sandboxes with equal networks share one). */
  get viewCount(): number {
    return this.#views.size;
  }
}
