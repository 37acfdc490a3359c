/**
 * A daemon as a subprocess, for the project's own tests: `cnm daemon` (or a test-only entry
 * point such as testing/crash_daemon.ts) with its stderr collected, a client for its unix
 * socket, and a wait for it to answer. Test-only code.
 * @module
 */

import { removeDeadBatchFiles } from "../impl/kernel/runner.ts";

const ROOT_URL = new URL("../", import.meta.url);
const ROOT = ROOT_URL.pathname;
const CONFIG = new URL("deno.json", ROOT_URL).pathname;
/** `deno run` arguments for a script of this repository (a path from its root). */
export function denoRun(script: string): string[] {
  return [
    "run",
    "-A",
    "--unstable-net",
    "--v8-flags=--max-semi-space-size=1",
    "--config",
    CONFIG,
    new URL(script, ROOT_URL).pathname,
  ];
}
/** `deno run ... impl/cli/main.ts`: the cnm CLI. */
export const CNM = denoRun("impl/cli/main.ts");

/** What a finished command printed. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with a bounded time (CNM_SOCKET cleared). */
export async function runCommand(
  cmd: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<Output> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { CNM_SOCKET: "" },
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Polls `check` until it returns true or the deadline passes. */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * The flags of a throwaway daemon: its own host namespace, prefix, socket and (when given)
 * state directory, and a documentation-range DNS server (nothing is ever sent there).
 */
export function throwawayDaemonArgs(
  o: { host: string; prefix: string; socket: string; stateDir?: string },
): string[] {
  return [
    "--netns",
    o.host,
    "--prefix",
    o.prefix,
    "--socket",
    o.socket,
    ...(o.stateDir ? ["--state-dir", o.stateDir] : []),
    "--dns",
    "192.0.2.53",
  ];
}

/** A JSON client for a daemon's unix socket. */
export class UnixApi {
  readonly #client: Deno.HttpClient;
  constructor(socket: string) {
    this.#client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  }
  /** One call; the body is parsed when there is one. */
  async call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: any }> {
    const res = await fetch(`http://cnm${path}`, {
      method,
      client: this.#client,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch { /* not JSON: kept as text */ }
    return { status: res.status, json };
  }
  /** One call that must succeed (a status below 300): returns the parsed body. */
  async ok(method: string, path: string, body?: unknown): Promise<any> {
    const r = await this.call(method, path, body);
    if (r.status >= 300) {
      throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    return r.json;
  }
  close(): void {
    this.#client.close();
  }
}

/** A daemon subprocess whose stderr is collected (never left to fill a pipe). */
export class DaemonProcess {
  readonly child: Deno.ChildProcess;
  log = "";
  readonly #drained: Promise<void>;
  exited: Deno.CommandStatus | undefined;

  /**
   * Starts `deno <denoArgs...> <args...>`; default: `cnm daemon ARGS`. With `netns`, the
   * process runs inside that namespace (nsenter enters the network namespace only, then
   * execs deno: the pid is the daemon's), as a daemon with `--store` must.
   */
  constructor(
    args: string[],
    denoArgs: string[] = [...CNM, "daemon"],
    options: { netns?: string } = {},
  ) {
    const argv = [Deno.execPath(), ...denoArgs, ...args];
    const [cmd, ...rest] = options.netns
      ? ["nsenter", `--net=/run/netns/${options.netns}`, ...argv]
      : argv;
    const child = new Deno.Command(cmd, {
      args: rest,
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { CNM_SOCKET: "" },
    }).spawn();
    this.child = child;
    this.#drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.log += dec.decode(chunk, { stream: true });
    })();
    child.status.then((s) => this.exited = s);
  }

  /** Waits until it answers `GET /info` on `api` (throws with its log if it exits). */
  async ready(api: UnixApi, timeoutMs = 20_000): Promise<void> {
    await until("the daemon's socket", async () => {
      if (this.exited) throw new Error(`The daemon exited (${this.exited.code}): ${this.log}`);
      try {
        return (await api.call("GET", "/info")).status === 200;
      } catch {
        return false;
      }
    }, timeoutMs);
  }

  /** Waits for the exit status and the end of its log. */
  async wait(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#drained;
    return status;
  }

  /**
   * SIGKILLs it if it still runs, and waits; removes the batch file a command it was
   * running may have left (a kill -9 skips the daemon's own clean-up).
   */
  async kill(): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.wait();
    await removeDeadBatchFiles(this.child.pid);
  }

  /** SIGTERMs it (a clean stop) and waits. */
  async stop(): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* already gone */ }
    }
    return await this.wait();
  }
}
