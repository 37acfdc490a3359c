/**
 * Bridge driver options: Docker's keys (research/libnetwork.md §3.1), parsed strictly.
 * Unknown keys and bad values are errors (an intended divergence: Docker 20.10 accepts most
 * of them silently).
 * @module
 */
import { InvalidArgumentError, UnsupportedError } from "../../model/errors.ts";
import { formatIp, tryParseIp } from "../../model/ip.ts";
import { validateIfname } from "../../model/names.ts";

/** Option keys. */
export const OPT = {
  name: "com.docker.network.bridge.name",
  icc: "com.docker.network.bridge.enable_icc",
  masquerade: "com.docker.network.bridge.enable_ip_masquerade",
  mtu: "com.docker.network.driver.mtu",
  ifacePrefix: "com.docker.network.container_iface_prefix",
  hostBindingIpv4: "com.docker.network.bridge.host_binding_ipv4",
  gatewayModeIpv4: "com.docker.network.bridge.gateway_mode_ipv4",
} as const;

/** Docker keys cnm knows but does not implement yet: refused with a clear message. */
const NOT_YET = new Set([
  "com.docker.network.bridge.gateway_mode_ipv6",
  "com.docker.network.bridge.inhibit_ipv4",
  "com.docker.network.bridge.trusted_host_interfaces",
  "com.docker.network.bridge.default_bridge",
  "com.docker.network.host_ipv4",
  "com.docker.network.host_ipv6",
]);

/** Parsed options of a bridge network. */
export interface BridgeConfig {
  /** Linux bridge name. */
  bridgeName: string;
  /** The user named the bridge (an existing one is then used as is). */
  userBridgeName: boolean;
  icc: boolean;
  masquerade: boolean;
  mtu: number;
  /** The user gave the MTU (Docker sets an existing bridge's MTU only then). */
  userMtu: boolean;
  ifacePrefix: string;
  /** Default host address of published ports; `0.0.0.0` = every local address. */
  hostBindingIpv4: string;
  /**
   * `nat` (Docker's default): masquerade, and only published ports reachable from outside;
   * `routed`: no masquerade, and the subnet reachable by direct routing.
   */
  gatewayModeIpv4: "nat" | "routed";
}

function parseBool(key: string, value: string): boolean {
  // Go's strconv.ParseBool, which Docker uses for these options
  if (["1", "t", "T", "true", "TRUE", "True"].includes(value)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(value)) return false;
  throw new InvalidArgumentError(`option ${key}=${value}: expected true or false`);
}

/** Parses and checks the options; `networkId` names the default bridge `br-<id[:12]>`. */
export function parseBridgeOptions(
  networkId: string,
  options: Record<string, string>,
  enableIpv6: boolean,
): BridgeConfig {
  const cfg: BridgeConfig = {
    bridgeName: `br-${networkId.slice(0, 12)}`,
    userBridgeName: false,
    icc: true,
    masquerade: true,
    mtu: 1500,
    userMtu: false,
    ifacePrefix: "eth",
    hostBindingIpv4: "0.0.0.0",
    gatewayModeIpv4: "nat",
  };
  for (const [key, value] of Object.entries(options)) {
    switch (key) {
      case OPT.name:
        validateIfname(`bridge name (option ${key})`, value);
        cfg.bridgeName = value;
        cfg.userBridgeName = true;
        break;
      case OPT.icc:
        cfg.icc = parseBool(key, value);
        break;
      case OPT.masquerade:
        cfg.masquerade = parseBool(key, value);
        break;
      case OPT.mtu: {
        const min = enableIpv6 ? 1280 : 68;
        if (!/^\d{1,5}$/.test(value) || Number(value) < min || Number(value) > 65535) {
          throw new InvalidArgumentError(
            `option ${key}=${value}: MTU must be a number from ${min} to 65535`,
          );
        }
        cfg.mtu = Number(value);
        cfg.userMtu = true;
        break;
      }
      case OPT.ifacePrefix:
        if (!/^[a-zA-Z][a-zA-Z0-9_-]{0,9}$/.test(value)) {
          throw new InvalidArgumentError(
            `option ${key}=${value}: a prefix has 1 to 10 characters, a letter first`,
          );
        }
        cfg.ifacePrefix = value;
        break;
      case OPT.hostBindingIpv4: {
        const ip = tryParseIp(value);
        if (!ip || ip.family !== 4) {
          throw new InvalidArgumentError(`option ${key}=${value}: expected an IPv4 address`);
        }
        cfg.hostBindingIpv4 = formatIp(ip.family, ip.value);
        break;
      }
      case OPT.gatewayModeIpv4:
        if (value !== "nat" && value !== "routed") {
          throw new InvalidArgumentError(
            `option ${key}=${value}: expected nat or routed`,
          );
        }
        cfg.gatewayModeIpv4 = value;
        break;
      default:
        if (NOT_YET.has(key)) {
          throw new UnsupportedError(`option ${key} is not supported by cnm yet`);
        }
        throw new InvalidArgumentError(`unknown option "${key}" for driver "bridge"`);
    }
  }
  return cfg;
}
