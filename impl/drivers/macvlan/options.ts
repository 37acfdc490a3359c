/**
 * Macvlan driver options: Docker's keys (research/libnetwork.md §3.3), parsed strictly.
 * Unknown keys and bad values are errors (an intended divergence: Docker 20.10 accepts
 * unknown keys silently).
 * @module
 */
import { InvalidArgumentError } from "../../model/errors.ts";
import { validateIfname } from "../../model/names.ts";

/** Option keys. */
export const OPT = {
  parent: "parent",
  mode: "macvlan_mode",
  /** Generic libnetwork option (any driver): the sandbox's interface name prefix. */
  ifacePrefix: "com.docker.network.container_iface_prefix",
} as const;

/** The kernel's macvlan modes, as Docker names them. */
export const MODES = ["bridge", "private", "vepa", "passthru"] as const;

/** A macvlan mode. */
export type MacvlanMode = typeof MODES[number];

/** Parsed options of a macvlan network. */
export interface MacvlanConfig {
  /**
   * The link endpoints hang off: the user's `parent`, or the private parent the driver
   * makes for a network without one.
   */
  parent: string;
  /** The user named the parent (it exists already; never created or deleted by us). */
  userParent: boolean;
  /** The other end of the private parent's veth pair (absent with a user parent). */
  peer?: string;
  mode: MacvlanMode;
  ifacePrefix: string;
}

/**
 * Names of the private parent of a network without `parent`: a veth pair
 * `mv-<id[:12]>` / `mvp-<id[:11]>` (Docker makes a dummy link `dm-<id[:12]>`; this kernel has
 * no dummy links).
 */
export function privateParentNames(networkId: string): { parent: string; peer: string } {
  return { parent: `mv-${networkId.slice(0, 12)}`, peer: `mvp-${networkId.slice(0, 11)}` };
}

/** Parses and checks the options of a macvlan network. */
export function parseMacvlanOptions(
  networkId: string,
  options: Record<string, string>,
): MacvlanConfig {
  let parent: string | undefined;
  let mode: MacvlanMode = "bridge";
  let ifacePrefix = "eth";
  for (const [key, value] of Object.entries(options)) {
    switch (key) {
      case OPT.parent:
        // `-o parent=` (empty) means no parent, as in Docker
        if (value === "") break;
        validateIfname(`parent interface (option ${key})`, value);
        if (value === "lo") {
          // Docker's text (libnetwork macvlan parseNetworkOptions)
          throw new InvalidArgumentError(`loopback interface is not a valid macvlan parent link`);
        }
        parent = value;
        break;
      case OPT.mode:
        if (!(MODES as readonly string[]).includes(value)) {
          throw new InvalidArgumentError(
            `option ${key}=${value}: expected bridge, private, vepa or passthru (bridge is the default)`,
          );
        }
        mode = value as MacvlanMode;
        break;
      case OPT.ifacePrefix:
        if (!/^[a-zA-Z][a-zA-Z0-9_-]{0,9}$/.test(value)) {
          throw new InvalidArgumentError(
            `option ${key}=${value}: a prefix has 1 to 10 characters, a letter first`,
          );
        }
        ifacePrefix = value;
        break;
      default:
        throw new InvalidArgumentError(`unknown option "${key}" for driver "macvlan"`);
    }
  }
  if (parent) return { parent, userParent: true, mode, ifacePrefix };
  const names = privateParentNames(networkId);
  return { parent: names.parent, peer: names.peer, userParent: false, mode, ifacePrefix };
}
