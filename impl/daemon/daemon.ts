/**
 * `cnm daemon`: opens the controller for one host (a network namespace) and serves its API on
 * a unix socket. It writes a pidfile, logs one line per API call, and on SIGTERM or SIGINT
 * stops accepting, closes the controller and removes its socket and pidfile. Networks and
 * sandboxes stay in the kernel and the store, so a restarted daemon takes them over
 * (Docker's live restore).
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { openController } from "../open.ts";
import type { Controller, SandboxResolver } from "../controller/controller.ts";
import { Kernel } from "../kernel/kernel.ts";
import type { CommandRunner, Logger } from "../kernel/runner.ts";
import { CnmError } from "../model/errors.ts";
import { type ApiHandler, createApiHandler, type DaemonInfo } from "./api.ts";
import { type DaemonConfig, parseDaemonArgs, UsageError } from "./flags.ts";
import { acquirePrefixLock } from "./prefix_lock.ts";
import { currentNetnsInode, netnsInode } from "../kernel/setns.ts";

/** cnm's version, as deno.json states it. */
export const VERSION: string = denoJson.version;

/** A daemon that is serving. */
export interface RunningDaemon {
  /** The configuration it runs with. */
  readonly config: DaemonConfig;
  /** What `GET /info` reports. */
  readonly info: DaemonInfo;
  /** The controller it serves. */
  readonly controller: Controller;
  /** Path of the pidfile (`<state-dir>/cnm.pid`). */
  readonly pidfile: string;
  /**
   * Stops accepting, waits for requests under way, closes the controller and removes the
   * socket and the pidfile. Kernel objects and state stay. Idempotent.
   */
  shutdown(): Promise<void>;
}

/**
 * Programmatic hooks into a daemon, for a program that embeds it (the project's test-only
 * entry point testing/faulty_daemon.ts uses them to inject faults). `cnm daemon` passes
 * none, and nothing in the environment or on its command line sets them.
 */
export interface DaemonHooks {
  /** Wraps the embedded resolver the controller is given (see `openController`). */
  wrapResolver?: (resolver: SandboxResolver) => SandboxResolver;
  /**
   * Runs every kernel command the controller gives (testing/crash_daemon.ts wraps the real
   * runner to stop the daemon just before its k-th command, proving crash consistency).
   */
  runner?: CommandRunner;
  /**
   * Called once the controller is open (its state restored from the store and reconciled
   * with the kernel, the resolvers of the sandboxes it found re-armed), just before the API
   * starts serving.
   */
  onControllerOpen?: (controller: Controller) => void;
}

/** Options of {@linkcode startDaemon}. */
export interface StartDaemonOptions extends DaemonHooks {
  /** Where log lines go; default: stderr with a timestamp. */
  log?: Logger;
}

/** Options of {@linkcode runDaemon}. */
export interface RunDaemonOptions extends DaemonHooks {
  /** The socket when `--socket` is not given; default: `CNM_SOCKET`, else the default path. */
  socket?: string;
}

/** Writes one timestamped line to stderr. */
export function stderrLogger(line: string): void {
  const text = `${new Date().toISOString()} ${line}\n`;
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(text));
  } catch { /* stderr closed */ }
}

/** What is at a socket path. */
export type SocketState = "absent" | "stale" | "alive" | "not-a-socket";

/**
 * Looks at a socket path: nothing there, a socket nobody answers on (a crashed daemon's),
 * a socket something answers on, or another kind of file.
 */
export async function probeSocket(path: string, timeoutMs = 2000): Promise<SocketState> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "absent";
    throw err;
  }
  if (!info.isSocket) return "not-a-socket";
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
  try {
    const res = await fetch("http://cnm/info", {
      client,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    return "alive";
  } catch (err) {
    // Accepted but silent (timed out): something holds the socket; leave it alone.
    if (err instanceof DOMException && err.name === "TimeoutError") return "alive";
    return "stale";
  } finally {
    client.close();
  }
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i > 0 ? path.slice(0, i) : i === 0 ? "/" : ".";
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** The pid in a pidfile when that process still runs a daemon, else undefined. */
async function livePid(pidfile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(pidfile);
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || pid === Deno.pid) return undefined;
  try {
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return cmdline.split("\0").includes("daemon") ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Creates the state directory 0700 (dockerd's is 0710); an existing one is kept as it is,
 * with a line in the log when others may read it.
 */
async function makeStateDir(dir: string, log: Logger): Promise<void> {
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) {
      throw new CnmError("invalid", `Cannot use state directory ${dir}: it is not a directory`);
    }
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      log(`state directory ${dir} is mode ${(info.mode & 0o777).toString(8)}: others may read it`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.chmod(dir, 0o700);
  }
}

/**
 * Serves on the unix socket, created 0660 at once: the umask is tightened around bind(2),
 * so no client can connect in the moment before a chmod (the socket was 0755 until then).
 */
function listen(config: DaemonConfig, handler: ApiHandler): Deno.HttpServer<Deno.UnixAddr> {
  const old = Deno.umask(0o117);
  try {
    return Deno.serve({ path: config.socket, onListen() {} }, handler);
  } finally {
    Deno.umask(old);
  }
}

/** A group's id: a number as is, a name from /etc/group. */
async function groupId(group: string): Promise<number> {
  if (/^[0-9]+$/.test(group)) return Number(group);
  const text = await Deno.readTextFile("/etc/group").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && /^[0-9]+$/.test(gid ?? "")) return Number(gid);
  }
  throw new CnmError("invalid", `Cannot give the socket to group ${group}: no such group`);
}

/** Wraps the API handler with one log line per call: method, path, status, duration. */
function withAccessLog(handler: ApiHandler, log: Logger): ApiHandler {
  return async (req) => {
    const started = performance.now();
    const res = await handler(req);
    const ms = (performance.now() - started).toFixed(1);
    log(`api: ${req.method} ${new URL(req.url).pathname} ${res.status} ${ms}ms`);
    return res;
  };
}

/**
 * Starts a daemon: creates the host namespace if missing, refuses a socket another daemon
 * answers on (a stale one is removed), opens the controller (restoring its state), serves the
 * API and writes the pidfile. Throws a {@linkcode CnmError} when it cannot start.
 */
export async function startDaemon(
  config: DaemonConfig,
  options: StartDaemonOptions = {},
): Promise<RunningDaemon> {
  const baseLog = options.log ?? stderrLogger;
  const log: Logger = config.debug ? baseLog : (line) => {
    if (!line.startsWith("kernel: ")) baseLog(line);
  };
  const pidfile = `${config.stateDir}/cnm.pid`;

  const gid = config.socketGroup === undefined ? undefined : await groupId(config.socketGroup);
  const socketState = await probeSocket(config.socket);
  if (socketState === "alive") {
    throw new CnmError("conflict", `another daemon is running on ${config.socket}`);
  }
  if (socketState === "not-a-socket") {
    throw new CnmError("invalid", `Cannot listen on ${config.socket}: the file is not a socket`);
  }
  await makeStateDir(config.stateDir, log);
  const other = await livePid(pidfile);
  if (other !== undefined) {
    throw new CnmError(
      "conflict",
      `Another daemon (pid ${other}) uses the state directory ${config.stateDir}`,
    );
  }
  const lock = await acquirePrefixLock(config.prefix, config.stateDir);

  let controller: Controller;
  try {
    if (config.netns) {
      const kernel = new Kernel({ log });
      if (!(await kernel.netnsExists(config.netns))) {
        await kernel.createNetns(config.netns);
        log(`created host namespace ${config.netns}`);
      }
    }
    if (config.globalStore && config.netns) requireInNetns(new Kernel({ log }), config.netns);
    controller = await openController({
      globalStore: config.globalStore,
      hostNetns: config.netns,
      prefix: config.prefix,
      stateDir: config.stateDir,
      dns: config.dns.length > 0 ? config.dns : undefined,
      embeddedDns: true,
      wrapResolver: options.wrapResolver,
      runner: options.runner,
      defaultPools: config.defaultPools.length > 0 ? config.defaultPools : undefined,
      log,
    });
  } catch (err) {
    lock.release();
    throw err;
  }
  try {
    options.onControllerOpen?.(controller);
  } catch (err) {
    await controller.close();
    lock.release();
    throw err;
  }

  const info: DaemonInfo = {
    version: VERSION,
    hostNetns: config.netns ?? null,
    prefix: config.prefix,
    pid: Deno.pid,
    drivers: controller.driverNames,
  };
  let server: Deno.HttpServer<Deno.UnixAddr> | undefined;
  try {
    await Deno.mkdir(dirname(config.socket), { recursive: true });
    if (socketState === "stale") {
      log(`removing stale socket ${config.socket}`);
      await removeIfExists(config.socket);
    }
    server = listen(config, withAccessLog(createApiHandler(controller, info), log));
    if (gid !== undefined) await Deno.chown(config.socket, null, gid);
    await Deno.writeTextFile(pidfile, `${Deno.pid}\n`, { mode: 0o644 });
  } catch (err) {
    await server?.shutdown().catch(() => {});
    await removeIfExists(config.socket).catch(() => {});
    await controller.close();
    lock.release();
    const message = err instanceof Error ? err.message : String(err);
    throw new CnmError("internal", `Cannot serve on ${config.socket}: ${message}`, {
      cause: err,
    });
  }
  log(
    `cnm ${VERSION} listening on ${config.socket} (host ${
      config.netns ?? "root namespace"
    }, prefix ${config.prefix}, state ${config.stateDir}, pid ${Deno.pid})`,
  );

  let stopping: Promise<void> | undefined;
  const shutdown = () => {
    stopping ??= (async () => {
      log("shutting down: networks and sandboxes stay");
      await server!.shutdown();
      await controller.close();
      await removeIfExists(config.socket).catch(() => {});
      const ours = await Deno.readTextFile(pidfile).then(
        (t) => t.trim() === `${Deno.pid}`,
        () => false,
      );
      if (ours) await removeIfExists(pidfile).catch(() => {});
      lock.release();
      log("stopped");
    })();
    return stopping;
  };
  return { config, info, controller, pidfile, shutdown };
}

/**
 * Runs `cnm daemon ARGS` until SIGTERM or SIGINT; returns the exit status (0 after a clean
 * stop, 1 when it cannot start, 2 on a usage error). `socket` is the fallback socket (the
 * CLI's global `--socket`, else `CNM_SOCKET`); the {@linkcode DaemonHooks} are for programs
 * that embed the daemon (`cnm daemon` passes none).
 */
export async function runDaemon(
  args: string[],
  options: RunDaemonOptions = {},
): Promise<number> {
  let config: DaemonConfig;
  try {
    const parsed = parseDaemonArgs(args, {
      socket: options.socket ?? (Deno.env.get("CNM_SOCKET") || undefined),
    });
    if (parsed.help !== undefined) {
      console.log(parsed.help.trimEnd());
      return 0;
    }
    config = parsed.config;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`cnm: ${err.message}`);
      return 2;
    }
    throw err;
  }
  let daemon: RunningDaemon;
  try {
    daemon = await startDaemon(config, {
      wrapResolver: options.wrapResolver,
      onControllerOpen: options.onControllerOpen,
      runner: options.runner,
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`cnm: ${message.replace(/\s+/g, " ")}`);
    return 1;
  }
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const { promise: stopped, resolve } = Promise.withResolvers<Deno.Signal>();
  const listeners = signals.map((sig) => {
    const fn = () => resolve(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  const sig = await stopped;
  stderrLogger(`received ${sig}`);
  for (const [s, fn] of listeners) Deno.removeSignalListener(s, fn);
  await daemon.shutdown();
  return 0;
}

/**
 * The global store's connections leave from the namespace the process runs in (grpc-js
 * makes its sockets there; entering another namespace around them does not move them,
 * measured): with `--store` and `--netns`, the daemon must run inside that namespace.
 */
function requireInNetns(kernel: Kernel, netns: string): void {
  if (currentNetnsInode() !== netnsInode(kernel.netnsPath(netns))) {
    // nsenter, not `ip netns exec`: that one also gives the daemon a mount namespace of its
    // own, where the sandboxes' /run/netns mounts it makes are not seen from outside
    throw new CnmError(
      "invalid",
      `--store with --netns ${netns}: run the daemon inside ${netns} (nsenter --net=${
        kernel.netnsPath(netns)
      } cnm daemon ...), so its store connections leave from there`,
    );
  }
}
