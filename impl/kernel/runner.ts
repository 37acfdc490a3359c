/**
 * The one place in impl/ that runs commands: a {@linkcode CommandRunner} that spawns them
 * directly (`Deno.Command`, an argv and never a shell string), with timeouts and logging,
 * and the {@linkcode Command} shape that fakes record.
 *
 * It used dax until the connect path was measured (bench/main.ts): a dax spawn of
 * `ip -batch -` with stdin cost about 4.1 ms here against 1.5 ms for `Deno.Command`, and a
 * connect runs two of them. dax's conveniences (escaping, shell syntax) were not used:
 * commands are argv arrays and batches go on stdin.
 *
 * Commands addressed to a network namespace (`ip -n NAME ...`, `nsenter --net=PATH ...`)
 * are started inside it directly when the process may use FFI: the spawning thread enters
 * the namespace with setns(2) ({@linkcode withNetns}), spawns, and comes back, so the child
 * is born in the namespace. `ip -n` otherwise unshares a mount namespace and
 * remounts /sys on every call, which costs more the more namespaces (mounts) the machine
 * has (3.2 ms against 2.0 ms per `ip -batch` with 200 namespaces, measured), and `nsenter`
 * is one more exec. The argv in logs and in test transcripts stays the same.
 * @module
 */
import { KernelCommandError } from "../model/errors.ts";
import { runNftInProcess } from "./libnftables.ts";
import { runNetnsInProcess } from "./netns_native.ts";
import { currentNetnsInode, withNetns } from "./setns.ts";

/** A command to run: argv (never a shell string) and optional standard input. */
export interface Command {
  argv: string[];
  stdin?: string;
  /** Milliseconds before the command is killed; default 10 s. */
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; the caller looks at `code`. */
  allowFail?: boolean;
}

/** What a command printed and how it ended. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs commands. The process runner runs them for real; tests inject fakes or fault wrappers. */
export interface CommandRunner {
  run(cmd: Command): Promise<CommandResult>;
}

/** A log sink: one line per event. */
export type Logger = (line: string) => void;

/** Logs nothing. */
export function quietLogger(_line: string): void {}

/** Options of {@linkcode createProcessRunner}. */
export interface ProcessRunnerOptions {
  /** Called with each command and its duration (debug-level). */
  log?: Logger;
  /** Default timeout in ms (10 000). */
  timeoutMs?: number;
}

/** @deprecated Use {@linkcode ProcessRunnerOptions}. */
export type DaxRunnerOptions = ProcessRunnerOptions;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Start of batch file names: `cnm-batch-<pid>-`, so a dead process's are known. */
export const BATCH_PREFIX = "cnm-batch-";
/** Where batch files go: /tmp, whatever the environment says (it sets no behaviour). */
const BATCH_DIR = "/tmp";
let swept = false;

/**
 * A new batch file in the temporary directory, 0600, named after this process. The first
 * call removes the files of processes that are gone (a daemon killed while `ip` ran).
 */
async function batchFile(): Promise<string> {
  if (!swept) {
    swept = true;
    await removeDeadBatchFiles().catch(() => {});
  }
  return await Deno.makeTempFile({ dir: BATCH_DIR, prefix: `${BATCH_PREFIX}${Deno.pid}-` });
}

/** Removes batch files whose process is gone (or, with `pid`, that process's). */
export async function removeDeadBatchFiles(pid?: number): Promise<void> {
  const dir = BATCH_DIR;
  for await (const e of Deno.readDir(dir)) {
    const m = new RegExp(`^${BATCH_PREFIX}(\\d+)-`).exec(e.name);
    if (!m) continue;
    const owner = Number(m[1]);
    const gone = pid === undefined
      ? await Deno.stat(`/proc/${owner}`).then(() => false, () => true)
      : owner === pid;
    if (gone) await Deno.remove(`${dir}/${e.name}`).catch(() => {});
  }
}

/** Whether this process may use FFI (setns); asked once, without prompting. */
let ffiGranted: boolean | undefined;
/** The process's own network namespace (inode), where every spawn comes back to. */
let homeInode: number | undefined;

function mayEnterNamespaces(): boolean {
  if (ffiGranted === undefined) {
    try {
      ffiGranted = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
    } catch {
      ffiGranted = false;
    }
  }
  return ffiGranted;
}

/**
 * The namespace path and the command to run in it, for `ip -n NAME ARGS` (NAME under
 * /run/netns, where `ip` looks) and `nsenter --net=PATH CMD`; undefined for other argv.
 */
export function splitNetnsArgv(argv: string[]): { path: string; argv: string[] } | undefined {
  if (argv[0] === "ip" && argv[1] === "-n" && argv.length > 3 && /^[^/]+$/.test(argv[2])) {
    return { path: `/run/netns/${argv[2]}`, argv: ["ip", ...argv.slice(3)] };
  }
  if (argv[0] === "nsenter" && argv[1]?.startsWith("--net=") && argv.length > 2) {
    return { path: argv[1].slice("--net=".length), argv: argv.slice(2) };
  }
  return undefined;
}

/** Spawns `argv`, inside its namespace directly when it names one and setns is usable. */
function spawnCommand(
  argv: string[],
  options: Omit<Deno.CommandOptions, "args">,
): Deno.ChildProcess {
  return inNamespaceOf(
    argv,
    (a) => new Deno.Command(a[0], { ...options, args: a.slice(1) }).spawn(),
  );
}

/**
 * Runs `argv` to its end with `output()` (no streams), born in its namespace like
 * {@linkcode spawnCommand}: output() forks before it returns its promise.
 */
function runCommand(
  argv: string[],
  options: Omit<Deno.CommandOptions, "args">,
): Promise<Deno.CommandOutput> {
  return inNamespaceOf(
    argv,
    (a) => new Deno.Command(a[0], { ...options, args: a.slice(1) }).output(),
  );
}

/** Calls `spawn` with the argv to start, inside the namespace the argv names when it can. */
function inNamespaceOf<T>(argv: string[], spawn: (argv: string[]) => T): T {
  const split = splitNetnsArgv(argv);
  if (split && mayEnterNamespaces()) {
    homeInode ??= currentNetnsInode();
    try {
      return withNetns(split.path, () => spawn(split.argv));
    } catch (err) {
      // Never go on in another namespace than our own.
      if (currentNetnsInode() !== homeInode) throw err;
      // The namespace could not be entered: run the command as given, so its own error
      // message says why.
    }
  }
  return spawn(argv);
}

/**
 * Creates the real runner: spawns the argv with a timeout (the command is killed when it
 * passes) and logs one line per command with its exit code and duration.
 */
export function createProcessRunner(options: ProcessRunnerOptions = {}): CommandRunner {
  const log = options.log ?? quietLogger;
  const defaultTimeout = options.timeoutMs ?? 10_000;
  return {
    async run(cmd: Command): Promise<CommandResult> {
      const started = performance.now();
      const timeoutMs = cmd.timeoutMs ?? defaultTimeout;
      const signal = AbortSignal.timeout(timeoutMs);
      let result: CommandResult;
      let batch: string | undefined;
      // namespaces made, removed and looked into with the calls `ip` makes (netns_native.ts:
      // an `ip` process costs about 5 ms to start here, and a sandbox took four)
      const native = mayEnterNamespaces() ? runNetnsInProcess(cmd.argv, cmd.stdin) : undefined;
      if (native) return finish(native);
      try {
        // A batch (`ip -batch -`, `nft -f -`) is read from a file: piping stdin needs
        // spawn(), whose streams leak native memory in Deno (denoland/deno#24674: RSS grew
        // 114 -> 365 MiB over 2,000 connect/disconnect cycles, measured by bench/soak.ts),
        // where output() does not.
        let argv = cmd.argv;
        if (cmd.stdin !== undefined && argv.at(-1) === "-") {
          batch = await batchFile();
          await Deno.writeTextFile(batch, cmd.stdin);
          argv = [...argv.slice(0, -1), batch];
        }
        // nft transactions and listings run through libnftables when they can
        // (libnftables.ts: 1.4 ms against 20-28 ms for an `nft` process, measured); there
        // is no timeout to enforce, a transaction being one netlink exchange
        const split = splitNetnsArgv(argv);
        const inProcess = mayEnterNamespaces()
          ? runNftInProcess(split?.path, split?.argv ?? argv)
          : undefined;
        if (inProcess) result = await inProcess;
        else result = await runProcess(argv, cmd.stdin, batch !== undefined, signal, timeoutMs);
      } catch (err) {
        // Spawning itself failed (command not found, ...): report it as a failed command.
        result = {
          code: 127,
          stdout: "",
          stderr: err instanceof Error ? err.message : String(err),
        };
      } finally {
        if (batch) await Deno.remove(batch).catch(() => {});
      }
      return finish(result);

      function finish(result: CommandResult): CommandResult {
        const ms = (performance.now() - started).toFixed(1);
        log(`kernel: ${cmd.argv.join(" ")} -> ${result.code} (${ms} ms)`);
        if (result.code !== 0 && !cmd.allowFail) {
          throw new KernelCommandError(cmd.argv, result.code, result.stderr || result.stdout);
        }
        return result;
      }
    },
  };
}

/** Runs `argv` as a process to its end (its input from `stdin` unless it is in a file). */
async function runProcess(
  argv: string[],
  stdin: string | undefined,
  inFile: boolean,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<CommandResult> {
  const options: Omit<Deno.CommandOptions, "args"> = {
    stdin: stdin === undefined || inFile ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal,
  };
  let out: Deno.CommandOutput;
  if (options.stdin === "piped") {
    const child = spawnCommand(argv, options);
    const writer = child.stdin.getWriter();
    try {
      await writer.write(encoder.encode(stdin));
      await writer.close();
    } catch {
      // The command exited without reading all of its input (e.g. a missing
      // namespace): its exit code and stderr say why.
    }
    out = await child.output();
  } else {
    out = await runCommand(argv, options);
  }
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: signal.aborted
      ? `timed out after ${timeoutMs} ms${out.stderr.length ? "; " : ""}${
        decoder.decode(out.stderr)
      }`
      : decoder.decode(out.stderr),
  };
}

/**
 * @deprecated The runner no longer uses dax; this is {@linkcode createProcessRunner} under its
 * old name.
 */
export const createDaxRunner: (options?: ProcessRunnerOptions) => CommandRunner =
  createProcessRunner;

/** A recorded call of a {@linkcode FakeRunner}. */
export interface RecordedCommand {
  argv: string[];
  stdin?: string;
}

/**
 * A runner that runs nothing: it records each command and answers from a script
 * (`respond`), so plans and drivers are tested without root.
 */
export class FakeRunner implements CommandRunner {
  readonly calls: RecordedCommand[] = [];
  #respond: (cmd: Command) => Partial<CommandResult> | undefined;
  constructor(respond?: (cmd: Command) => Partial<CommandResult> | undefined) {
    this.#respond = respond ?? (() => undefined);
  }
  run(cmd: Command): Promise<CommandResult> {
    this.calls.push({ argv: [...cmd.argv], stdin: cmd.stdin });
    const r = { code: 0, stdout: "", stderr: "", ...this.#respond(cmd) };
    if (r.code !== 0 && !cmd.allowFail) {
      return Promise.reject(new KernelCommandError(cmd.argv, r.code, r.stderr));
    }
    return Promise.resolve(r);
  }
  /** The recorded commands as text, one per line, stdin indented below its command. */
  transcript(): string {
    return this.calls.map((c) =>
      c.argv.join(" ") +
      (c.stdin ? "\n" + c.stdin.trimEnd().split("\n").map((l) => "  | " + l).join("\n") : "")
    ).join("\n") + "\n";
  }
}

/**
 * Wraps a runner and makes the commands that `match` selects fail, as if the kernel had
 * refused them. The one fault-injection point for "a failed operation leaves nothing behind"
 * tests.
 */
export class FaultyRunner implements CommandRunner {
  #inner: CommandRunner;
  #match: (cmd: Command) => boolean;
  /** How many commands were made to fail. */
  injected = 0;
  constructor(inner: CommandRunner, match: (cmd: Command) => boolean) {
    this.#inner = inner;
    this.#match = match;
  }
  run(cmd: Command): Promise<CommandResult> {
    if (this.#match(cmd)) {
      this.injected++;
      if (cmd.allowFail) return Promise.resolve({ code: 1, stdout: "", stderr: "injected fault" });
      return Promise.reject(new KernelCommandError(cmd.argv, 1, "injected fault"));
    }
    return this.#inner.run(cmd);
  }
}
