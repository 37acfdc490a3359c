/**
 * TEST-ONLY daemon faults: deliberate bugs inside the reference daemon, for the conformance
 * suite's self-validation (`--fault NAME`, reference only), where a fault cannot be injected
 * from outside the daemon (the others live in conformance/adapters/faults.ts). Each one is
 * modelled on a real bug and breaks the embedded resolver through the daemon's programmatic
 * {@linkcode DaemonHooks}; only testing/faulty_daemon.ts applies them. Nothing under impl/
 * imports this module, and `cnm daemon` has no way (flag, environment) to turn one on.
 * @module
 */
import type { SandboxResolver } from "../impl/controller/controller.ts";
import type { DaemonHooks } from "../impl/daemon/daemon.ts";
import type { DnsEndpoint } from "../impl/dns/records.ts";

/** The names of the daemon faults. */
export const DAEMON_FAULT_NAMES = [
  "dns-cross-network-leak",
  "dns-wrong-answer",
  "dns-stale-record",
  "dns-not-rearmed",
] as const;

/** A daemon fault's name. */
export type DaemonFaultName = typeof DAEMON_FAULT_NAMES[number];

/** A fault injected inside the daemon. */
export interface DaemonFault {
  readonly name: DaemonFaultName;
  /** What it breaks, as a user would see it. */
  readonly breaks: string;
  /** The real bug it is modelled on. */
  readonly modelledOn: string;
  /** Fresh hooks for one daemon process (some faults keep state). */
  hooks(): DaemonHooks;
}

/** A fault name this module does not know. */
export class UnknownFaultError extends Error {
  override readonly name = "UnknownFaultError";
  constructor(readonly fault: string) {
    super(`unknown daemon fault "${fault}" (known: ${DAEMON_FAULT_NAMES.join(", ")})`);
  }
}

/** A resolver that forwards every call to `inner` (the faults override some). */
function passThrough(inner: SandboxResolver): SandboxResolver {
  return {
    addSandbox: (id, path) => inner.addSandbox(id, path),
    removeSandbox: (id) => inner.removeSandbox(id),
    upsertEndpoint: (ep) => inner.upsertEndpoint(ep),
    removeEndpoint: (sb, net) => inner.removeEndpoint(sb, net),
  };
}

/**
 * `dns-cross-network-leak`: every sandbox resolves the names of every network, not only of
 * the networks it is connected to (Docker scopes names per network by design, moby#23370).
 * The resolver is told that each sandbox with an endpoint also has an endpoint on every
 * other network that has endpoints: a phantom with no name and no address (so it hides no
 * real record), which only puts the network in the sandbox's view. The phantoms follow the
 * real endpoints.
 */
export function crossNetworkLeak(inner: SandboxResolver): SandboxResolver {
  /** Real endpoints: sandbox id -> network id -> endpoint. */
  const real = new Map<string, Map<string, DnsEndpoint>>();
  /** Phantom endpoints given to `inner`, keyed `sandbox network`. */
  const phantoms = new Set<string>();
  const key = (sandboxId: string, networkId: string) => `${sandboxId} ${networkId}`;
  const sync = () => {
    const nets = new Map<string, DnsEndpoint>();
    for (const eps of real.values()) for (const ep of eps.values()) nets.set(ep.networkId, ep);
    const want = new Map<string, DnsEndpoint>();
    for (const [sandboxId, eps] of real) {
      const own = eps.values().next().value;
      if (!own) continue;
      for (const [networkId, net] of nets) {
        if (eps.has(networkId)) continue;
        want.set(key(sandboxId, networkId), {
          ...own,
          sandboxName: "",
          hostname: "",
          networkId,
          networkName: net.networkName,
          internal: net.internal,
          aliases: [],
          ipv4: undefined,
          ipv6: undefined,
        });
      }
    }
    for (const k of [...phantoms]) {
      if (want.has(k)) continue;
      const [sandboxId, networkId] = k.split(" ");
      inner.removeEndpoint(sandboxId, networkId);
      phantoms.delete(k);
    }
    for (const [k, ep] of want) {
      if (phantoms.has(k)) continue;
      inner.upsertEndpoint(ep);
      phantoms.add(k);
    }
  };
  return {
    ...passThrough(inner),
    upsertEndpoint(ep) {
      inner.upsertEndpoint(ep);
      // a real endpoint replaces the phantom it may have had there
      phantoms.delete(key(ep.sandboxId, ep.networkId));
      const eps = real.get(ep.sandboxId) ?? new Map<string, DnsEndpoint>();
      eps.set(ep.networkId, ep);
      real.set(ep.sandboxId, eps);
      sync();
    },
    removeEndpoint(sandboxId, networkId) {
      inner.removeEndpoint(sandboxId, networkId);
      const eps = real.get(sandboxId);
      eps?.delete(networkId);
      if (eps?.size === 0) real.delete(sandboxId);
      sync();
    },
    async removeSandbox(sandboxId) {
      await inner.removeSandbox(sandboxId);
      real.delete(sandboxId);
      sync();
    },
  };
}

/** The IPv4 address with its last octet plus one (255 wraps to 0); a `/len` is kept. */
export function nextIpv4(ip: string): string {
  const [addr, len] = ip.split("/");
  const p = addr.split(".").map(Number);
  p[3] = (p[3] + 1) % 256;
  return len === undefined ? p.join(".") : `${p.join(".")}/${len}`;
}

/**
 * `dns-wrong-answer`: names resolve to a wrong address, the endpoint's IPv4 address with
 * its last octet plus one (stale or mixed-up addresses handed out by a container DNS, as in
 * podman#22407). IPv6 answers are left alone.
 */
export function wrongAnswer(inner: SandboxResolver): SandboxResolver {
  return {
    ...passThrough(inner),
    upsertEndpoint: (ep) =>
      inner.upsertEndpoint(ep.ipv4 === undefined ? ep : { ...ep, ipv4: nextIpv4(ep.ipv4) }),
  };
}

/**
 * `dns-stale-record`: records are never removed, so other sandboxes keep resolving a
 * sandbox that disconnected or was removed (moby#24800, "Removed containers are still
 * DNS-resolved"). `removeEndpoint` is dropped; `removeSandbox` still closes the sandbox's
 * listeners (they would keep its namespace alive), which removes no record.
 */
export function staleRecords(inner: SandboxResolver): SandboxResolver {
  return {
    ...passThrough(inner),
    removeEndpoint() {},
  };
}

/**
 * `dns-not-rearmed`: after a daemon restart, the sandboxes that existed before it get no
 * resolver at 127.0.0.11 (libnetwork#2049, "resolver not started"); sandboxes created after
 * the restart get one. The `addSandbox` calls made while the controller opens (its restore,
 * `syncResolver`) are dropped; the ones after `onControllerOpen` go through.
 */
export function notRearmed(): DaemonHooks & { readonly skipped: ReadonlySet<string> } {
  let open = false;
  const skipped = new Set<string>();
  return {
    skipped,
    wrapResolver: (inner) => ({
      ...passThrough(inner),
      addSandbox(sandboxId, netnsPath) {
        if (open) return inner.addSandbox(sandboxId, netnsPath);
        skipped.add(sandboxId);
        return Promise.resolve();
      },
    }),
    onControllerOpen() {
      open = true;
    },
  };
}

/** Every daemon fault. */
export const DAEMON_FAULTS: readonly DaemonFault[] = [
  {
    name: "dns-cross-network-leak",
    breaks: "a sandbox resolves the names of every network, not only of its own networks",
    modelledOn: "per-network name scoping lost (Docker scopes names by design: moby#23370)",
    hooks: () => ({ wrapResolver: crossNetworkLeak }),
  },
  {
    name: "dns-wrong-answer",
    breaks: "names resolve to a wrong address (the endpoint's IPv4 with its last octet + 1)",
    modelledOn: "a container DNS answering stale or mixed-up addresses (podman#22407)",
    hooks: () => ({ wrapResolver: wrongAnswer }),
  },
  {
    name: "dns-stale-record",
    breaks: "a sandbox that disconnected or was removed still resolves from other sandboxes",
    modelledOn: "moby#24800, removed containers still resolved in bridge networks",
    hooks: () => ({ wrapResolver: staleRecords }),
  },
  {
    name: "dns-not-rearmed",
    breaks: "after a daemon restart, sandboxes that existed before it have no 127.0.0.11",
    modelledOn: "libnetwork#2049, the embedded resolver not started for a container",
    hooks: () => notRearmed(),
  },
];

/** The fault called `name`; throws {@linkcode UnknownFaultError} for another name. */
export function daemonFault(name: string): DaemonFault {
  const fault = DAEMON_FAULTS.find((f) => f.name === name);
  if (!fault) throw new UnknownFaultError(name);
  return fault;
}
