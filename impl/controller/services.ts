/**
 * Services (issue 8): a name on a network over a set of backend endpoints, in VIP mode (a
 * virtual IP from the network's IPAM, balanced by nftables, see impl/lb) or DNS round robin.
 * The controller runs these under its lock and undo stack; this module holds the rules.
 * @module
 */
import type { IpamDriver } from "../driver_api/mod.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { UndoStack } from "../kernel/undo.ts";
import {
  lbSandboxScript,
  type LbService,
  lbTableScript,
  vipAddLine,
  vipDelLine,
} from "../lb/plan.ts";
import {
  ConflictError,
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
} from "../model/errors.ts";
import { newId, validateName } from "../model/names.ts";
import type {
  EndpointRecord,
  NetworkRecord,
  ServicePort,
  ServiceRecord,
} from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import type { DnsEndpoint } from "../dns/records.ts";

/** What `createService` takes (the flags of `cnm service create`). */
export interface ServiceCreateOptions {
  name: string;
  network: string;
  mode?: string;
  ports?: { port: number; protocol?: string }[];
  affinity?: string;
}

/** A service as `service inspect` shows it: backends by sandbox name and address. */
export interface ServiceView extends ServiceRecord {
  networkName: string;
  backendDetails: { endpointId: string; sandbox: string; ipv4?: string }[];
}

/** What the service logic needs of its controller. */
export interface ServiceContext {
  store: Store;
  ipam: IpamDriver;
  kernel: Kernel;
  hostNetns?: string;
  /** The nft table the services own. */
  table: string;
  findNetwork(ref: string): NetworkRecord;
  /** Re-tells the resolver about an endpoint (its service names follow). */
  republish(ep: EndpointRecord): void;
  /** The resolver's upsert/remove, when there is one. */
  dnsUpsert?(ep: DnsEndpoint): void;
  dnsRemove?(sandboxId: string, networkId: string): void;
}

const BRIDGE_NAME_OPTION = "com.docker.network.bridge.name";

/** The bridge of a network (the bridge driver's default name, or the one given). */
export function bridgeOf(net: NetworkRecord): string {
  return net.options[BRIDGE_NAME_OPTION] ?? `br-${net.id.slice(0, 12)}`;
}

function phantomId(svc: ServiceRecord): string {
  return `svc:${svc.id}`;
}

/** The service logic of one controller. */
export class Services {
  readonly #c: ServiceContext;

  constructor(ctx: ServiceContext) {
    this.#c = ctx;
  }

  /** Finds a service by name or id. */
  find(ref: string): ServiceRecord {
    const all = this.#c.store.list("service");
    const hit = all.find((s) => s.name === ref) ?? all.find((s) => s.id === ref);
    if (!hit) throw new NotFoundError(`service "${ref}" not found`);
    return hit;
  }

  list(): ServiceRecord[] {
    return this.#c.store.list("service");
  }

  view(ref: string): ServiceView {
    const svc = this.find(ref);
    const net = this.#c.store.get("network", svc.networkId);
    return {
      ...svc,
      networkName: net?.name ?? svc.networkId,
      backendDetails: svc.backends.map((id) => {
        const ep = this.#c.store.get("endpoint", id);
        const sb = ep?.sandboxId ? this.#c.store.get("sandbox", ep.sandboxId) : undefined;
        return { endpointId: id, sandbox: sb?.name ?? "", ipv4: ep?.ipv4 };
      }),
    };
  }

  /** Extra DNS aliases of an endpoint: `tasks.NAME` of its services, and NAME for dnsrr. */
  aliasesOf(endpointId: string): string[] {
    return this.list().filter((s) => s.backends.includes(endpointId)).flatMap((s) =>
      s.mode === "dnsrr" ? [`tasks.${s.name}`, s.name] : [`tasks.${s.name}`]
    );
  }

  async create(opts: ServiceCreateOptions, undo: UndoStack): Promise<ServiceRecord> {
    validateName("service", opts.name);
    const mode = opts.mode ?? "vip";
    if (mode !== "vip" && mode !== "dnsrr") {
      throw new InvalidArgumentError(`invalid mode "${mode}" (vip or dnsrr)`);
    }
    if (opts.affinity !== undefined && opts.affinity !== "client-ip") {
      throw new InvalidArgumentError(`invalid affinity "${opts.affinity}" (client-ip)`);
    }
    const ports: ServicePort[] = [];
    for (const p of opts.ports ?? []) {
      const protocol = p.protocol ?? "tcp";
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
        throw new InvalidArgumentError(`port ${p.port} is out of range (1-65535)`);
      }
      if (protocol !== "tcp" && protocol !== "udp") {
        throw new InvalidArgumentError(`invalid protocol "${protocol}" (tcp or udp)`);
      }
      if (!ports.some((q) => q.port === p.port && q.protocol === protocol)) {
        ports.push({ port: p.port, protocol });
      }
    }
    const net = this.#c.findNetwork(opts.network);
    if (this.list().some((s) => s.name === opts.name)) {
      throw new ConflictError(`service with name ${opts.name} already exists`);
    }
    this.#checkNameClash(opts.name, net);
    const id = newId();
    let vip: string | undefined;
    if (mode === "vip") {
      const cfg = net.ipv4[0];
      if (net.driver !== "bridge" || !cfg?.gateway) {
        throw new ForbiddenError(
          `VIP mode needs a bridge network with an IPv4 gateway; network ${net.name} is ${net.driver}`,
        );
      }
      const addr = await this.#c.ipam.requestAddress(cfg.poolId);
      vip = addr.split("/")[0];
      undo.push(`release VIP ${vip}`, () => this.#c.ipam.releaseAddress(cfg.poolId, vip!));
    }
    const record: ServiceRecord = {
      id,
      name: opts.name,
      networkId: net.id,
      mode,
      vip,
      ports,
      ...(opts.affinity ? { affinity: "client-ip" as const } : {}),
      backends: [],
      created: new Date().toISOString(),
    };
    if (vip) {
      await this.#c.kernel.ip(this.#c.hostNetns, [vipAddLine(vip, bridgeOf(net))]);
      undo.push(
        `VIP ${vip} off the bridge`,
        async () => {
          await this.#c.kernel.ipForce(this.#c.hostNetns, [vipDelLine(vip!, bridgeOf(net))]);
        },
      );
    }
    this.#c.store.transaction((tx) => tx.put("service", record));
    undo.push(`service record ${id}`, () => {
      this.#c.store.transaction((tx) => tx.delete("service", id));
      return this.program();
    });
    await this.program();
    this.#publishPhantom(record, net);
    return record;
  }

  #checkNameClash(name: string, net: NetworkRecord): void {
    const lower = name.toLowerCase();
    for (const ep of this.#c.store.list("endpoint")) {
      if (ep.networkId !== net.id) continue;
      const sb = ep.sandboxId ? this.#c.store.get("sandbox", ep.sandboxId) : undefined;
      const names = [sb?.name, sb?.hostname, ...ep.aliases].filter((n): n is string => !!n);
      if (names.some((n) => n.toLowerCase() === lower)) {
        throw new ConflictError(
          `name ${name} is already used on network ${net.name} by sandbox ${sb?.name ?? ep.name}`,
        );
      }
    }
  }

  async remove(ref: string): Promise<void> {
    const svc = this.find(ref);
    const net = this.#c.store.get("network", svc.networkId);
    this.#c.store.transaction((tx) => tx.delete("service", svc.id));
    await this.program(this.#sandboxesOf(svc.backends));
    this.#c.dnsRemove?.(phantomId(svc), svc.networkId);
    for (const id of svc.backends) this.#republish(id);
    if (svc.vip && net) {
      await this.#c.kernel.ipForce(this.#c.hostNetns, [vipDelLine(svc.vip, bridgeOf(net))]);
      await this.#c.ipam.releaseAddress(net.ipv4[0].poolId, svc.vip).catch(() => {});
    }
  }

  async addBackend(ref: string, sandboxRef: string, undo: UndoStack): Promise<void> {
    const svc = this.find(ref);
    const sb = this.#findSandbox(sandboxRef);
    const net = this.#c.store.get("network", svc.networkId);
    const ep = sb.endpoints.map((id) => this.#c.store.get("endpoint", id))
      .find((e) => e?.networkId === svc.networkId);
    if (!ep) {
      throw new ForbiddenError(
        `sandbox ${sb.name} is not connected to network ${net?.name ?? svc.networkId}`,
      );
    }
    if (svc.backends.includes(ep.id)) return;
    const updated = { ...svc, backends: [...svc.backends, ep.id] };
    this.#c.store.transaction((tx) => tx.put("service", updated));
    undo.push(`backend ${ep.id}`, () => {
      this.#c.store.transaction((tx) => tx.put("service", svc));
      return this.program([sb.id]);
    });
    await this.program();
    this.#c.republish(ep);
  }

  async removeBackend(ref: string, sandboxRef: string): Promise<void> {
    const svc = this.find(ref);
    const sb = this.#findSandbox(sandboxRef);
    const id = svc.backends.find((b) => sb.endpoints.includes(b));
    if (!id) {
      throw new NotFoundError(`sandbox ${sb.name} is not a backend of service ${svc.name}`);
    }
    this.#c.store.transaction((tx) =>
      tx.put("service", { ...svc, backends: svc.backends.filter((b) => b !== id) })
    );
    await this.program([sb.id]);
    this.#republish(id);
  }

  /** Drops an endpoint that is going away from every service (no re-publish: it is gone). */
  async dropEndpoint(endpointId: string): Promise<void> {
    const hit = this.list().filter((s) => s.backends.includes(endpointId));
    if (hit.length === 0) return;
    this.#c.store.transaction((tx) => {
      for (const s of hit) {
        tx.put("service", { ...s, backends: s.backends.filter((b) => b !== endpointId) });
      }
    });
    await this.program(this.#sandboxesOf([endpointId]));
  }

  /** Services on a network (a network with services cannot be removed). */
  onNetwork(networkId: string): ServiceRecord[] {
    return this.list().filter((s) => s.networkId === networkId);
  }

  /** Replays the VIPs into the IPAM after a start. */
  async restoreAddresses(): Promise<void> {
    for (const s of this.list()) {
      const net = this.#c.store.get("network", s.networkId);
      if (s.vip && net?.ipv4[0]) {
        await this.#c.ipam.requestAddress(net.ipv4[0].poolId, s.vip).catch(() => {});
      }
    }
  }

  /**
   * Makes the kernel and the resolver match the records: drops backends whose endpoint is
   * gone, puts the VIPs on their bridges, writes the table, publishes the VIP names.
   */
  async reconcile(): Promise<void> {
    for (const s of this.list()) {
      const live = s.backends.filter((id) => this.#c.store.get("endpoint", id));
      if (live.length !== s.backends.length) {
        this.#c.store.transaction((tx) => tx.put("service", { ...s, backends: live }));
      }
      const net = this.#c.store.get("network", s.networkId);
      if (s.vip && net) {
        await this.#c.kernel.ip(this.#c.hostNetns, [vipAddLine(s.vip, bridgeOf(net))]);
      }
    }
    await this.program();
    this.syncDns();
  }

  /** Publishes every VIP name (after a start: the resolver keeps nothing). */
  syncDns(): void {
    for (const s of this.list()) {
      const net = this.#c.store.get("network", s.networkId);
      if (net) this.#publishPhantom(s, net);
    }
  }

  /**
   * Writes the whole host table in one transaction, then the table of every backend's
   * sandbox (hairpin) and of the sandboxes in `extra` (former backends: emptied).
   */
  async program(extra: string[] = []): Promise<void> {
    const services: LbService[] = [];
    const bySandbox = new Map<string, LbService[]>(extra.map((id) => [id, []]));
    for (const s of this.list()) {
      if (s.mode !== "vip" || !s.vip) continue;
      const backends = s.backends.map((id) => this.#c.store.get("endpoint", id)?.ipv4)
        .filter((a): a is string => !!a).map((a) => a.split("/")[0]);
      const lb: LbService = {
        id: s.id,
        name: s.name,
        vip: s.vip,
        ports: s.ports,
        affinity: s.affinity,
        backends,
      };
      services.push(lb);
      for (const id of s.backends) {
        const sbId = this.#c.store.get("endpoint", id)?.sandboxId;
        if (!sbId) continue;
        if (!bySandbox.has(sbId)) bySandbox.set(sbId, []);
        bySandbox.get(sbId)!.push(lb);
      }
    }
    await this.#c.kernel.nft(this.#c.hostNetns, lbTableScript(this.#c.table, services));
    for (const [sbId, lbServices] of bySandbox) {
      const sb = this.#c.store.get("sandbox", sbId);
      if (sb) await this.#c.kernel.nft(sb.netnsName, lbSandboxScript(this.#c.table, lbServices));
    }
  }

  #sandboxesOf(endpointIds: string[]): string[] {
    return endpointIds.map((id) => this.#c.store.get("endpoint", id)?.sandboxId)
      .filter((s): s is string => !!s);
  }

  #publishPhantom(svc: ServiceRecord, net: NetworkRecord): void {
    if (!svc.vip || !this.#c.dnsUpsert) return;
    this.#c.dnsUpsert({
      sandboxId: phantomId(svc),
      sandboxName: svc.name,
      hostname: svc.name,
      networkId: net.id,
      networkName: net.name,
      internal: net.internal || !net.ipv4[0]?.gateway,
      aliases: [],
      ipv4: svc.vip,
    });
  }

  #republish(endpointId: string): void {
    const ep = this.#c.store.get("endpoint", endpointId);
    if (ep) this.#c.republish(ep);
  }

  #findSandbox(ref: string) {
    const all = this.#c.store.list("sandbox");
    const hit = all.find((s) => s.name === ref) ?? all.find((s) => s.id === ref);
    if (!hit) throw new NotFoundError(`sandbox "${ref}" not found`);
    return hit;
  }
}
