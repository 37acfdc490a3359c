/**
 * THE DAEMON'S ONE TEST HOOK — deliberate faults for the conformance suite's
 * self-validation, for faults that cannot be injected from outside the daemon (the other
 * faults live in conformance/adapters/faults.ts). Enabled only by the environment variable
 * `CNM_TEST_FAULT`, which the reference adapter sets for `--fault NAME`; never set it
 * otherwise.
 * @module
 */
import type { SandboxResolver } from "../controller/controller.ts";
import type { DnsEndpoint } from "../dns/records.ts";

/** Faults this hook knows. */
export const DAEMON_FAULTS = ["dns-all-networks"] as const;

/**
 * `dns-all-networks`: every sandbox resolves names of every network, not only its own. The
 * resolver is told that each sandbox also has an (addressless) endpoint on every network.
 */
function allNetworks(inner: SandboxResolver): SandboxResolver {
  const sandboxes = new Map<string, DnsEndpoint>();
  const networks = new Map<string, string>();
  const phantom = (sb: DnsEndpoint, networkId: string, networkName: string): DnsEndpoint => ({
    ...sb,
    networkId,
    networkName,
    internal: false,
    aliases: [],
    ipv4: undefined,
    ipv6: undefined,
  });
  return {
    addSandbox: (id, path) => inner.addSandbox(id, path),
    removeSandbox: (id) => inner.removeSandbox(id),
    removeEndpoint: (sb, net) => inner.removeEndpoint(sb, net),
    upsertEndpoint(ep) {
      inner.upsertEndpoint(ep);
      const newNetwork = !networks.has(ep.networkId);
      networks.set(ep.networkId, ep.networkName);
      if (!sandboxes.has(ep.sandboxId)) {
        sandboxes.set(ep.sandboxId, ep);
        for (const [id, name] of networks) {
          if (id !== ep.networkId) inner.upsertEndpoint(phantom(ep, id, name));
        }
      }
      if (newNetwork) {
        for (const sb of sandboxes.values()) {
          if (sb.sandboxId !== ep.sandboxId) {
            inner.upsertEndpoint(phantom(sb, ep.networkId, ep.networkName));
          }
        }
      }
    },
  };
}

/** The resolver wrapper for `CNM_TEST_FAULT`, or undefined when unset. */
export function faultyResolver(
  name: string | undefined,
): ((r: SandboxResolver) => SandboxResolver) | undefined {
  if (!name) return undefined;
  if (name === "dns-all-networks") return allNetworks;
  throw new Error(`CNM_TEST_FAULT=${name}: unknown fault (known: ${DAEMON_FAULTS.join(", ")})`);
}
