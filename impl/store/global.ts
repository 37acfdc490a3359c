/**
 * The global store: what every host of a multi-host deployment must agree on, in etcd
 * (Docker's classic `--cluster-store`, research/libnetwork.md §1.3: global networks live in
 * the cluster store, local ones in each host's own). It holds global networks with their
 * names, VNIs, pools and addresses, and each host's endpoints as peers under the host's
 * lease, so they vanish when the host dies.
 *
 * Key layout (under `/cnm/v1/`; the README shows it whole):
 *
 * - `networks/<id>`: the network record (JSON);
 * - `names/<name>`, `vnis/<vni>`, `pools/<subnet>`: the network id, claimed in the create's
 *   transaction, so two hosts creating the same name, VNI or subnet at once cannot both win;
 * - `addrs/<subnet>/<ip>`: one per allocated address (`{network, endpoint, host}`);
 * - `seq/<id>`: rewritten by every address allocation, so a network's removal (conditioned
 *   on its revision) cannot race a connect on another host;
 * - `peers/<network>/<endpoint>`: `PeerRecord`, under the publishing host's lease;
 * - `dns/<network>/<endpoint>`: `DnsRecord` (the endpoint's DNS names), the same way.
 *
 * Every write that must be unique is one etcd transaction conditioned on what it read; a
 * lost race is retried on fresh reads. Calls have a 2 s deadline and fail with an
 * {@linkcode UnavailableError} naming the store.
 * @module
 */
import { ExponentialBackoff, noop } from "cockatiel";
import { Etcd3, type IKeyValue, type Lease, type Watcher } from "etcd3";
import {
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../model/errors.ts";
import { formatIp, parseIp, Prefix } from "../model/ip.ts";
import type { IpamConfig, NetworkRecord } from "../model/objects.ts";

/** Where keys start. */
export const KEY_ROOT = "/cnm/v1/";
/** libnetwork's VNI range for overlay networks (ovmanager: 4096 to 2^24-1). */
export const VNI_MIN = 4096;
export const VNI_MAX = 2 ** 24 - 1;
/** The driver option that carries a network's VNI (libnetwork's name). */
export const VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list";
/** Docker's global default pool: 10.0.0.0/8 in /24s (research/libnetwork.md §2.5). */
const GLOBAL_POOL = { base: "10.0.0.0/8", size: 24 };
/** Deadline of one store call (issue: operations that need the store fail within 2 s). */
export const CALL_DEADLINE_MS = 2000;
/** Pause before a new lease or a new publishing round after a failure. */
const RETRY_MS = 500;
/** How often a transaction that lost a race is tried again on fresh reads. */
const RACE_RETRIES = 64;

/** One endpoint as the other hosts see it (libnetwork's `PeerRecord`, §3.2). */
export interface PeerRecord {
  networkId: string;
  endpointId: string;
  /** Endpoint address with prefix length. */
  ip: string;
  mac: string;
  /** The publishing host's advertise address (its VXLAN tunnel endpoint). */
  vtep: string;
}

/** An endpoint's DNS names as the other hosts' embedded DNS answer them (§4.2). */
export interface DnsRecord {
  networkId: string;
  endpointId: string;
  /** The publishing host's advertise address. */
  host: string;
  networkName: string;
  /** As the publishing host computed it (no gateway = no way out), so all hosts agree. */
  internal: boolean;
  sandboxName: string;
  hostname: string;
  aliases: string[];
  /** Address without prefix length. */
  ipv4?: string;
}

/** What hosts publish of their endpoints, by kind. */
export type SharedKind = "peers" | "dns";
/** The record of a kind. */
export type SharedRecord<K extends SharedKind> = K extends "peers" ? PeerRecord : DnsRecord;

/** What {@linkcode GlobalStore.createNetwork} takes: the record without IPAM, plus IPAM input. */
export interface GlobalNetworkRequest {
  network: Omit<NetworkRecord, "ipv4" | "ipv6">;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  /** Allocate a VNI into `options[VNI_OPTION]` (overlay); a VNI already there is claimed. */
  vni: boolean;
}

/** The parsed `--store` flag. */
export interface StoreAddress {
  /** `host:port` of each etcd member. */
  endpoints: string[];
  /** As the user wrote it, for messages. */
  url: string;
}

/** Parses `etcd://HOST:PORT[,HOST:PORT...]`; throws InvalidArgumentError. */
export function parseStoreUrl(url: string): StoreAddress {
  const m = /^etcd:\/\/(.+)$/.exec(url);
  if (!m) throw new InvalidArgumentError(`store ${url}: expected etcd://HOST:PORT[,HOST:PORT]`);
  const endpoints = m[1].split(",");
  for (const e of endpoints) {
    const hp = /^([a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(e);
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) {
      throw new InvalidArgumentError(`store ${url}: "${e}" is not HOST:PORT`);
    }
  }
  return { endpoints, url };
}

const subnetKey = (subnet: string) => subnet.replace("/", "_");
const json = (kv: IKeyValue) => JSON.parse(kv.value.toString());

/** The global store over one etcd cluster. */
export class GlobalStore {
  readonly url: string;
  /** This host's advertise address. */
  readonly host: string;
  readonly #client: Etcd3;
  readonly #ttl: number;
  #lease: Lease;
  /** Peers this host published, re-published under a new lease when the old one is lost. */
  readonly #mine = new Map<string, unknown>();
  readonly #watchers: Watcher[] = [];
  readonly #log: (line: string) => void;
  #closed = false;
  /** True from a lost lease until a new one is granted (logged once per outage). */
  #leaseDown = false;

  private constructor(
    client: Etcd3,
    addr: StoreAddress,
    host: string,
    ttl: number,
    log: (line: string) => void,
  ) {
    this.#client = client;
    this.url = addr.url;
    this.host = host;
    this.#ttl = ttl;
    this.#log = log;
    this.#lease = this.#newLease();
  }

  /**
   * Connects and checks that a real etcd answers (its cluster id and version): a client in
   * the wrong namespace would reach the root namespace's HTTP proxy, which answers anything.
   */
  static async open(
    addr: StoreAddress,
    options: { host: string; ttl: number; log?: (line: string) => void },
  ): Promise<GlobalStore> {
    const client = new Etcd3({
      hosts: addr.endpoints.map((e) => `http://${e}`),
      dialTimeout: CALL_DEADLINE_MS,
      // grpc-js backs off up to 120 s between reconnects by default: after an outage the
      // store would stay "unavailable" long after etcd is back
      grpcOptions: {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
      },
      // our own deadline and retries; no circuit breaker holding calls back after etcd returns
      // a watch reconnects within a second of etcd's return (the default backs off to 30 s)
      faultHandling: {
        host: () => noop,
        global: noop,
        // etcd3 calls next() on it as on its own default (an ExponentialBackoff); only the
        // declared types differ
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as never,
      },
      defaultCallOptions: (ctx) => ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS },
    });
    try {
      const status = await client.maintenance.status();
      const cluster = status.header?.cluster_id;
      if (!cluster || cluster === "0" || !/^3\.\d+/.test(status.version ?? "")) {
        throw new Error(`no etcd cluster id or version in its status`);
      }
      options.log?.(`store ${addr.url}: etcd ${status.version}, cluster ${cluster}`);
    } catch (err) {
      client.close();
      throw new UnavailableError(`store ${addr.url} is not a reachable etcd: ${reason(err)}`);
    }
    return new GlobalStore(client, addr, options.host, options.ttl, options.log ?? (() => {}));
  }

  /**
   * A lease with keep-alive. When it is lost (etcd away past the TTL, or a grant that
   * failed), a new one is made after a pause and this host's records are published under
   * it again, retried until they are: a restarted etcd gets them back without a restart
   * of the daemon.
   */
  #newLease(): Lease {
    const lease = this.#client.lease(this.#ttl, { autoKeepAlive: true });
    lease.on("lost", (err) => {
      if (this.#closed || lease !== this.#lease) return;
      if (!this.#leaseDown) this.#log(`store ${this.url}: lease lost (${reason(err)})`);
      this.#leaseDown = true;
      setTimeout(() => {
        if (this.#closed || lease !== this.#lease) return;
        this.#lease = this.#newLease();
        this.#republish();
      }, RETRY_MS);
    });
    // the lease is granted lazily; an unreachable store is reported by the calls using it
    lease.grant().then(() => {
      if (this.#leaseDown && lease === this.#lease) {
        this.#leaseDown = false;
        this.#log(`store ${this.url}: new lease granted`);
      }
    }, () => {});
    return lease;
  }

  /** Publishes this host's records again (after a new lease), retrying until it works. */
  #republish(): void {
    const lease = this.#lease;
    (async () => {
      for (const [k, v] of this.#mine) await this.#put(k, v);
    })().catch(() => {
      setTimeout(() => {
        if (!this.#closed && lease === this.#lease) this.#republish();
      }, RETRY_MS);
    });
  }

  /** Runs one store call, turning a transport failure into an error naming the store. */
  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ConflictError || err instanceof ForbiddenError) throw err;
      if (err instanceof NotFoundError || err instanceof InvalidArgumentError) throw err;
      throw new UnavailableError(`store ${this.url} unavailable (${what}): ${reason(err)}`);
    }
  }

  /** Every global network. */
  listNetworks(): Promise<NetworkRecord[]> {
    return this.#call("list networks", async () => {
      const res = await this.#client.getAll().prefix(`${KEY_ROOT}networks/`).exec();
      return res.kvs.map((kv) => json(kv) as NetworkRecord);
    });
  }

  /**
   * Creates a global network: picks its pool (the user's subnet, or the first free /24 of
   * 10.0.0.0/8), its gateway and its VNI, and claims name, VNI and pool in one transaction
   * with the record; a lost race is retried with fresh reads.
   */
  createNetwork(req: GlobalNetworkRequest): Promise<NetworkRecord> {
    return this.#call(`create network ${req.network.name}`, async () => {
      for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
        const taken = await this.#claims();
        const owner = taken.names.get(req.network.name);
        if (owner) {
          throw new ConflictError(`network with name ${req.network.name} already exists`);
        }
        const subnet = req.subnet ? Prefix.parse(req.subnet, "subnet") : freePool(taken.pools);
        for (const [p, id] of taken.pools) {
          if (Prefix.parse(p).overlaps(subnet)) {
            throw new ForbiddenError(`subnet ${subnet} overlaps global network ${id.slice(0, 12)}`);
          }
        }
        const options = { ...req.network.options };
        if (req.vni) options[VNI_OPTION] = String(pickVni(options[VNI_OPTION], taken.vnis));
        const gateway = req.gateway ?? formatIp(4, subnet.network + 1n);
        const cfg: IpamConfig = {
          subnet: subnet.toString(),
          ipRange: req.ipRange,
          gateway,
          poolId: `GlobalDefault/${subnet}`,
          userSubnet: !!req.subnet,
        };
        const record: NetworkRecord = { ...req.network, options, ipv4: [cfg], ipv6: [] };
        const id = record.id;
        const keys = [
          `${KEY_ROOT}names/${record.name}`,
          `${KEY_ROOT}pools/${subnetKey(cfg.subnet)}`,
          ...(req.vni ? [`${KEY_ROOT}vnis/${options[VNI_OPTION]}`] : []),
        ];
        let txn = this.#client.if(`${KEY_ROOT}networks/${id}`, "Create", "==", 0);
        for (const k of keys) txn = txn.and(k, "Create", "==", 0);
        const res = await txn.then(
          this.#client.put(`${KEY_ROOT}networks/${id}`).value(JSON.stringify(record)),
          ...keys.map((k) => this.#client.put(k).value(id)),
          this.#client.put(`${KEY_ROOT}addrs/${subnetKey(cfg.subnet)}/${gateway}`)
            .value(JSON.stringify({ network: id, endpoint: "gateway", host: this.host })),
          this.#client.put(`${KEY_ROOT}seq/${id}`).value("0"),
        ).commit();
        if (res.succeeded) return record;
      }
      throw new ConflictError(`network ${req.network.name}: too many concurrent creates`);
    });
  }

  /** Names, VNIs and pools claimed now. */
  async #claims() {
    const get = async (what: string) => {
      const res = await this.#client.getAll().prefix(`${KEY_ROOT}${what}/`).strings();
      const out = new Map<string, string>();
      for (const [k, v] of Object.entries(res)) out.set(k.slice(`${KEY_ROOT}${what}/`.length), v);
      return out;
    };
    const [names, vnis, pools] = await Promise.all([get("names"), get("vnis"), get("pools")]);
    return {
      names,
      vnis: new Set([...vnis.keys()].map(Number)),
      pools: new Map([...pools].map(([k, v]) => [k.replace("_", "/"), v])),
    };
  }

  /**
   * Removes a global network, refused while any host holds an address on it. Conditioned on
   * the network's allocation revision, so a connect on another host cannot slip in between.
   */
  removeNetwork(net: NetworkRecord): Promise<void> {
    return this.#call(`remove network ${net.name}`, async () => {
      const cfg = net.ipv4[0];
      for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
        const seq = await this.#client.get(`${KEY_ROOT}seq/${net.id}`).exec();
        if (seq.kvs.length === 0) return; // gone already
        const addrs = await this.#addresses(cfg.subnet);
        const used = [...addrs.values()].filter((a) => a.endpoint !== "gateway");
        if (used.length > 0) {
          throw new ForbiddenError(
            `network ${net.name} id ${net.id} has active endpoints (${used.length} on ${
              new Set(used.map((u) => u.host)).size
            } host(s))`,
          );
        }
        const keys = [
          `${KEY_ROOT}networks/${net.id}`,
          `${KEY_ROOT}names/${net.name}`,
          `${KEY_ROOT}pools/${subnetKey(cfg.subnet)}`,
          `${KEY_ROOT}seq/${net.id}`,
          ...(net.options[VNI_OPTION] ? [`${KEY_ROOT}vnis/${net.options[VNI_OPTION]}`] : []),
        ];
        const res = await this.#client
          .if(`${KEY_ROOT}seq/${net.id}`, "Mod", "==", seq.kvs[0].mod_revision)
          .then(
            ...keys.map((k) => this.#client.delete().key(k)),
            this.#client.delete().prefix(`${KEY_ROOT}addrs/${subnetKey(cfg.subnet)}/`),
            this.#client.delete().prefix(`${KEY_ROOT}peers/${net.id}/`),
            this.#client.delete().prefix(`${KEY_ROOT}dns/${net.id}/`),
          ).commit();
        if (res.succeeded) return;
      }
      throw new ConflictError(`network ${net.name}: too many concurrent changes`);
    });
  }

  async #addresses(subnet: string): Promise<Map<string, { endpoint: string; host: string }>> {
    const prefix = `${KEY_ROOT}addrs/${subnetKey(subnet)}/`;
    const res = await this.#client.getAll().prefix(prefix).strings();
    return new Map(Object.entries(res).map(([k, v]) => [k.slice(prefix.length), JSON.parse(v)]));
  }

  /**
   * Allocates an address in a global network's pool (the preferred one, or the first free
   * one of `range`), unique across every host; returns it with the prefix length. Fails
   * once the network is gone (its pool's claim is checked in the same transaction).
   */
  requestAddress(subnetText: string, preferred?: string, rangeText?: string): Promise<string> {
    return this.#call(`address in ${subnetText}`, async () => {
      const subnet = Prefix.parse(subnetText);
      const range = rangeText ? Prefix.parse(rangeText) : subnet;
      if (preferred && !subnet.contains(parseIp(preferred, "address"))) {
        throw new InvalidArgumentError(`address ${preferred} is outside subnet ${subnet}`);
      }
      const poolKey = `${KEY_ROOT}pools/${subnetKey(subnetText)}`;
      for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
        const [pool, used] = await Promise.all([
          this.#client.get(poolKey).string(),
          this.#addresses(subnetText),
        ]);
        if (pool === null) throw new NotFoundError(`no global network has pool ${subnetText}`);
        let ip: string | undefined = preferred;
        if (ip && used.has(ip)) throw new ForbiddenError(`address ${ip} is already in use`);
        if (!ip) {
          // the first free one, skipping the subnet's network and broadcast addresses
          for (let n = range.network; n <= range.last; n++) {
            if (n === subnet.network || n === subnet.last) continue;
            const cand = formatIp(4, n);
            if (!used.has(cand)) {
              ip = cand;
              break;
            }
          }
        }
        if (!ip) throw new ForbiddenError(`no free address in ${subnetText}`);
        const key = `${KEY_ROOT}addrs/${subnetKey(subnetText)}/${ip}`;
        const res = await this.#client
          .if(poolKey, "Value", "==", pool)
          .and(key, "Create", "==", 0)
          .then(
            this.#client.put(key).value(JSON.stringify({ endpoint: "", host: this.host })),
            this.#client.put(`${KEY_ROOT}seq/${pool}`).value(ip),
          ).commit();
        if (res.succeeded) return `${ip}/${subnet.bits}`;
      }
      throw new ConflictError(`pool ${subnetText}: too many concurrent connects`);
    });
  }

  /** Gives an address back (idempotent). */
  releaseAddress(subnet: string, ip: string): Promise<void> {
    return this.#call(`release ${ip} in ${subnet}`, async () => {
      await this.#client.delete().key(`${KEY_ROOT}addrs/${subnetKey(subnet)}/${ip}`).exec();
    });
  }

  async #put(key: string, value: unknown): Promise<void> {
    await this.#lease.put(key).value(JSON.stringify(value)).exec();
  }

  /**
   * Publishes a record of one of this host's endpoints under its lease: `peers` (the
   * overlay's data plane) or `dns` (the embedded DNS's records, libnetwork's separate
   * service-discovery table). Kept here too, to publish again under a new lease.
   */
  publish<K extends SharedKind>(kind: K, rec: SharedRecord<K>): Promise<void> {
    const key = `${KEY_ROOT}${kind}/${rec.networkId}/${rec.endpointId}`;
    return this.#call(`publish ${kind} of ${rec.endpointId.slice(0, 12)}`, async () => {
      this.#mine.set(key, rec);
      await this.#put(key, rec);
    });
  }

  /** Withdraws a record of one of this host's endpoints (idempotent). */
  withdraw(kind: SharedKind, networkId: string, endpointId: string): Promise<void> {
    const key = `${KEY_ROOT}${kind}/${networkId}/${endpointId}`;
    return this.#call(`withdraw ${kind} of ${endpointId.slice(0, 12)}`, async () => {
      this.#mine.delete(key);
      await this.#client.delete().key(key).exec();
    });
  }

  /** Every published record of a kind now, and the revision they were read at. */
  list<K extends SharedKind>(kind: K): Promise<{ records: SharedRecord<K>[]; revision: string }> {
    return this.#call(`list ${kind}`, async () => {
      const res = await this.#client.getAll().prefix(`${KEY_ROOT}${kind}/`).exec();
      return { records: res.kvs.map((kv) => json(kv)), revision: res.header.revision };
    });
  }

  /**
   * Lists the records of a kind, then watches them from the next revision: `onEvent` sees
   * each one as a put, then every change. The client resumes from the last revision it saw
   * after a reconnect, so no event is lost.
   */
  async follow<K extends SharedKind>(
    kind: K,
    onEvent: (type: "put" | "delete", rec: SharedRecord<K>) => void,
  ): Promise<void> {
    const { records, revision } = await this.list(kind);
    for (const r of records) onEvent("put", r);
    const w = await this.#client.watch().prefix(`${KEY_ROOT}${kind}/`).withPreviousKV()
      .startRevision(String(BigInt(revision) + 1n)).create();
    // a record that does not parse, or a handler that throws, is logged, never fatal
    const deliver = (type: "put" | "delete", kv: IKeyValue) => {
      try {
        onEvent(type, json(kv));
      } catch (err) {
        this.#log(`store ${this.url}: ${kind} ${kv.key.toString()}: ${reason(err)}`);
      }
    };
    w.on("put", (kv) => deliver("put", kv));
    w.on("delete", (_kv, prev) => {
      if (prev) deliver("delete", prev);
    });
    w.on("error", (err) => this.#log(`store ${this.url}: watch ${kind}: ${reason(err)}`));
    this.#watchers.push(w);
  }

  /** Stops the watches and the lease's keep-alive (peers expire with the TTL) and closes. */
  async close(options: { revoke?: boolean } = {}): Promise<void> {
    this.#closed = true;
    for (const w of this.#watchers) await w.cancel().catch(() => {});
    if (options.revoke) await this.#lease.revoke().catch(() => {});
    else this.#lease.release();
    this.#client.close();
  }
}

/** The first free /24 of 10.0.0.0/8 that overlaps no claimed pool. */
function freePool(pools: Map<string, string>): Prefix {
  const base = Prefix.parse(GLOBAL_POOL.base);
  const step = 1n << BigInt(32 - GLOBAL_POOL.size);
  const claimed = [...pools.keys()].map((p) => Prefix.parse(p));
  for (let n = base.network; n <= base.last; n += step) {
    const cand = Prefix.parse(`${formatIp(4, n)}/${GLOBAL_POOL.size}`);
    if (!claimed.some((c) => c.overlaps(cand))) return cand;
  }
  throw new ForbiddenError(`no free pool left in ${GLOBAL_POOL.base}`);
}

/** The VNI asked for (checked free), or the lowest free one of libnetwork's range. */
function pickVni(asked: string | undefined, taken: Set<number>): number {
  if (asked !== undefined) {
    const v = Number(asked);
    if (!/^\d+$/.test(asked) || v < 1 || v > VNI_MAX) {
      throw new InvalidArgumentError(`${VNI_OPTION} ${asked} is not a VNI (1 to ${VNI_MAX})`);
    }
    if (taken.has(v)) throw new ForbiddenError(`VNI ${v} is in use by another network`);
    return v;
  }
  for (let v = VNI_MIN; v <= VNI_MAX; v++) if (!taken.has(v)) return v;
  throw new ForbiddenError(`no free VNI`);
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
