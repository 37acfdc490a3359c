/**
 * The flags of `cnm daemon`, parsed and validated without side effects:
 * `cnm daemon [--netns NAME] [--prefix P] [--state-dir DIR] [--socket PATH]
 * [--socket-group GROUP] [--dns IP]... [--default-pool CIDR/SIZE]... [--store etcd://HOST:PORT
 * --advertise-address IP [--store-ttl SECONDS]] [--debug]`. Defaults are dockerd's: the root namespace,
 * /var/lib/cnm, /run/cnm/cnm.sock, and the prefix "cnm".
 * @module
 */
import { Command, CommanderError } from "commander";
import { parseDefaultPool, type PredefinedPool } from "../ipam/mod.ts";
import { CnmError } from "../model/errors.ts";
import { parseIp } from "../model/ip.ts";
import { parseStoreUrl, type StoreAddress } from "../store/global.ts";
import { validateName } from "../model/names.ts";

/** Where the daemon keeps its state by default (dockerd: /var/lib/docker). */
export const DEFAULT_STATE_DIR = "/var/lib/cnm";
/** The daemon's default API socket (dockerd: /run/docker.sock). */
export const DEFAULT_SOCKET = "/run/cnm/cnm.sock";
/** The default prefix of names in shared places. */
export const DEFAULT_PREFIX = "cnm";
/** Prefixes: a letter or digit, then letters, digits, `_` and `-`; at most 32 characters. */
export const PREFIX_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$/;

/** A command-line mistake: unknown flag, missing argument, bad value (exit status 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The validated configuration of a daemon. */
export interface DaemonConfig {
  /** Host namespace under /run/netns (created if missing); absent = the root namespace. */
  netns?: string;
  /** Start of every name the daemon creates in shared places (`--prefix`). */
  prefix: string;
  /** State directory: state.db and cnm.pid (`--state-dir`). */
  stateDir: string;
  /** Path of the API socket (`--socket`). */
  socket: string;
  /** Group (name or gid) the socket is given to (`--socket-group`); absent = root's. */
  socketGroup?: string;
  /** DNS servers for sandboxes' resolv.conf (`--dns`); empty = the host's. */
  dns: string[];
  /** Predefined local pools (`--default-pool`); empty = Docker's. */
  defaultPools: PredefinedPool[];
  /**
   * The global store for multi-host (overlay) networks (`--store`), this host's underlay
   * address (`--advertise-address`) and the lease TTL (`--store-ttl`, default 5 s).
   */
  globalStore?: { address: StoreAddress; advertise: string; ttl: number };
  /** Also log every kernel command. */
  debug: boolean;
}

/** The default lease TTL of a host's peers in the global store, in seconds. */
export const DEFAULT_STORE_TTL = 5;

/** The result of parsing the daemon's arguments: a config, or help text to print. */
export type DaemonArgs = { config: DaemonConfig; help?: undefined } | { help: string };

/** Raw flag values as commander gives them. */
interface RawDaemonFlags {
  netns?: string;
  prefix?: string;
  stateDir?: string;
  socket?: string;
  socketGroup?: string;
  dns: string[];
  defaultPool: string[];
  store?: string;
  advertiseAddress?: string;
  storeTtl?: string;
  debug?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** One line: commander's messages may carry a suggestion on a second line. */
export function commanderMessage(err: CommanderError): string {
  return err.message.replace(/^error:\s*/, "").split("\n").map((l) => l.trim()).filter(Boolean)
    .join(" ");
}

function daemonCommand(): Command {
  return new Command("cnm daemon")
    .description("Run the cnm daemon: the controller and its API on a unix socket.")
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .allowExcessArguments(false)
    .option("--netns <name>", "host network namespace (created if missing); default: root")
    .option("--prefix <prefix>", `prefix of names in shared places (default "${DEFAULT_PREFIX}")`)
    .option("--state-dir <dir>", `state directory (default ${DEFAULT_STATE_DIR})`)
    .option("--socket <path>", `API socket (default $CNM_SOCKET or ${DEFAULT_SOCKET})`)
    .option("--socket-group <group>", "group (name or gid) that may use the socket (mode 0660)")
    .option("--dns <ip>", "DNS server for sandboxes (repeatable)", collect, [])
    .option(
      "--default-pool <cidr/size>",
      "predefined local pool, e.g. 10.10.0.0/16/24 (repeatable)",
      collect,
      [],
    )
    .option("--store <etcd://host:port,...>", "global store for multi-host (overlay) networks")
    .option("--advertise-address <ip>", "this host's underlay address (with --store)")
    .option(
      "--store-ttl <seconds>",
      `lease TTL of this host's endpoints (default ${DEFAULT_STORE_TTL})`,
    )
    .option("--debug", "also log every kernel command");
}

/** The `cnm daemon --help` text. */
export function daemonHelp(): string {
  return daemonCommand().helpInformation();
}

/**
 * Parses `cnm daemon` arguments. `socket` is the fallback socket (the global `--socket`, else
 * `CNM_SOCKET`); the daemon's own `--socket` wins over it. Throws {@linkcode UsageError}.
 */
export function parseDaemonArgs(args: string[], options: { socket?: string } = {}): DaemonArgs {
  const cmd = daemonCommand();
  try {
    cmd.parse(args, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.help") {
        return { help: cmd.helpInformation() };
      }
      throw new UsageError(commanderMessage(err));
    }
    throw err;
  }
  return { config: validateDaemonFlags(cmd.opts<RawDaemonFlags>(), options.socket) };
}

/** `--store`, `--advertise-address` and `--store-ttl`: all or none of the first two. */
function storeFlags(raw: RawDaemonFlags): DaemonConfig["globalStore"] {
  if (raw.store === undefined) {
    if (raw.advertiseAddress !== undefined || raw.storeTtl !== undefined) {
      throw new UsageError("--advertise-address and --store-ttl need --store");
    }
    return undefined;
  }
  const address = parseStoreUrl(raw.store);
  if (raw.advertiseAddress === undefined) {
    throw new UsageError("--store needs --advertise-address (this host's underlay address)");
  }
  const ip = parseIp(raw.advertiseAddress, "advertise address");
  if (ip.family !== 4) throw new UsageError("--advertise-address must be an IPv4 address");
  const ttlText = raw.storeTtl ?? String(DEFAULT_STORE_TTL);
  const ttl = Number(ttlText);
  if (!/^\d+$/.test(ttlText) || ttl < 2 || ttl > 3600) {
    throw new UsageError(`Invalid --store-ttl ${JSON.stringify(ttlText)}: 2 to 3600 seconds`);
  }
  return { address, advertise: raw.advertiseAddress, ttl };
}

function validateDaemonFlags(raw: RawDaemonFlags, fallbackSocket?: string): DaemonConfig {
  try {
    if (raw.netns !== undefined) validateName("host namespace", raw.netns);
    const prefix = raw.prefix ?? DEFAULT_PREFIX;
    if (!PREFIX_RE.test(prefix)) {
      throw new UsageError(
        `Invalid prefix ${
          JSON.stringify(prefix)
        }: use 1 to 32 characters from [a-zA-Z0-9_-], starting with a letter or digit`,
      );
    }
    const stateDir = raw.stateDir ?? DEFAULT_STATE_DIR;
    if (stateDir === "") throw new UsageError("Invalid state directory: the path is empty");
    const socket = raw.socket ?? (fallbackSocket || DEFAULT_SOCKET);
    if (socket === "") throw new UsageError("Invalid socket: the path is empty");
    const group = raw.socketGroup;
    if (group !== undefined && !/^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$/.test(group)) {
      throw new UsageError(`Invalid socket group ${JSON.stringify(group)}: not a group name or id`);
    }
    for (const ip of raw.dns) parseIp(ip, "DNS server");
    const defaultPools = raw.defaultPool.map((p) => parseDefaultPool(p));
    const globalStore = storeFlags(raw);
    return {
      netns: raw.netns,
      prefix,
      stateDir,
      socket,
      ...(group !== undefined ? { socketGroup: group } : {}),
      dns: [...raw.dns],
      defaultPools,
      ...(globalStore ? { globalStore } : {}),
      debug: !!raw.debug,
    };
  } catch (err) {
    if (err instanceof CnmError) throw new UsageError(err.message);
    throw err;
  }
}
