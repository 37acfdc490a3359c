/**
 * Process plumbing of the probes: run a command inside a namespace (always
 * `nsenter --net=PATH`), with a hard deadline, optionally stopping as soon as a first line
 * of output arrived; quote argv for paste-able reproducers; kill a process tree.
 * @module
 */

/** What {@linkcode runInNs} observed. */
export interface RunOutcome {
  /** Exit code (or 128+signal when killed). */
  code: number;
  stdout: string;
  stderr: string;
  /** True when the deadline killed the process. */
  timedOut: boolean;
  /** True when the process was stopped early because a first line arrived. */
  stoppedEarly: boolean;
  /** Wall time in milliseconds. */
  ms: number;
}

/** Options of {@linkcode runInNs}. */
export interface RunOptions {
  /** Standard input to write (then closed); default: none (/dev/null). */
  stdin?: string;
  /** Hard deadline in ms after which the process is killed. */
  deadlineMs: number;
  /** Stop the process as soon as stdout holds a complete line. */
  untilLine?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

const SAFE_ARG = /^[A-Za-z0-9_./:=@%+,^-]+$/;

/** Quotes one argument for a POSIX shell (single quotes unless plainly safe). */
export function shellQuote(arg: string): string {
  if (arg !== "" && SAFE_ARG.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** Joins an argv into a command line a user can paste into a shell. */
export function commandLine(argv: string[]): string {
  return argv.map(shellQuote).join(" ");
}

/**
 * The namespace file of `ns`: an absolute path is taken as is (`/run/netns/X`,
 * `/proc/PID/ns/net`); a bare name means `/run/netns/NAME`.
 */
export function netnsPath(ns: string): string {
  if (ns === "" || ns.includes("\0")) {
    throw new TypeError(`invalid namespace ${JSON.stringify(ns)}`);
  }
  if (ns.startsWith("/")) return ns;
  if (!/^[A-Za-z0-9_.-]+$/.test(ns) || ns === "." || ns === "..") {
    throw new TypeError(`invalid namespace name ${JSON.stringify(ns)}`);
  }
  return `/run/netns/${ns}`;
}

/** `nsenter --net=PATH` followed by `argv`. */
export function nsArgv(ns: string, argv: string[]): string[] {
  return ["nsenter", `--net=${netnsPath(ns)}`, ...argv];
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  onChunk?: (text: string) => void,
  limit = 1 << 20,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    if (text.length < limit) {
      const part = decoder.decode(chunk, { stream: true });
      text += part;
      onChunk?.(text);
    }
  }
  return text + decoder.decode();
}

/**
 * Runs `argv` inside namespace `ns` (via `nsenter --net`), never longer than
 * `deadlineMs`; with `untilLine`, stops it once the first line of output arrived. Never
 * throws on a failing command; throws only when the program cannot be started.
 */
export async function runInNs(ns: string, argv: string[], opts: RunOptions): Promise<RunOutcome> {
  return await runCommand(nsArgv(ns, argv), opts);
}

/** As {@linkcode runInNs}, for a full argv (no namespace). */
export async function runCommand(argv: string[], opts: RunOptions): Promise<RunOutcome> {
  const started = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
  }).spawn();
  let timedOut = false;
  let stoppedEarly = false;
  let exited = false;
  const kill = (signal: Deno.Signal) => {
    if (exited) return;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill("SIGKILL");
  }, opts.deadlineMs);
  try {
    const writing = (async () => {
      if (opts.stdin === undefined) return;
      const w = child.stdin.getWriter();
      try {
        await w.write(new TextEncoder().encode(opts.stdin));
        await w.close();
      } catch { /* the program closed its input early */ }
    })();
    const [stdout, stderr, status] = await Promise.all([
      drain(child.stdout, (text) => {
        if (opts.untilLine && !stoppedEarly && text.includes("\n")) {
          stoppedEarly = true;
          kill("SIGTERM");
        }
      }),
      drain(child.stderr),
      child.status.then((s) => {
        exited = true;
        return s;
      }),
      writing,
    ]);
    const code = status.signal ? 128 + signalNumber(status.signal) : status.code;
    return {
      code,
      stdout,
      stderr,
      timedOut: timedOut && !stoppedEarly,
      stoppedEarly,
      ms: performance.now() - started,
    };
  } finally {
    clearTimeout(timer);
  }
}

function signalNumber(signal: Deno.Signal): number {
  const table: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGPIPE: 13,
    SIGALRM: 14,
    SIGTERM: 15,
  };
  return table[signal] ?? 0;
}

/** Parent pid of every process, read from /proc (missing processes skipped). */
async function processParents(): Promise<Map<number, number>> {
  const parents = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid ...; comm may contain spaces and parentheses
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry.name), Number(rest[1]));
    } catch { /* exited meanwhile */ }
  }
  return parents;
}

/** Every descendant of `pid` (children, grandchildren, ...), deepest last. */
export async function descendants(pid: number): Promise<number[]> {
  const parents = await processParents();
  const children = new Map<number, number[]>();
  for (const [child, parent] of parents) {
    const list = children.get(parent) ?? [];
    list.push(child);
    children.set(parent, list);
  }
  const out: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length) {
    const next = queue.shift()!;
    out.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return out;
}

/** True while `/proc/PID` exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function trySignal(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* gone */ }
}

/**
 * Kills `child` and everything it forked: stops it (so it forks no more), kills its
 * descendants and then it, awaits its status, and waits (bounded) until the descendants
 * are gone. Returns the pids still alive after `deadlineMs` (normally none).
 */
export async function killTree(child: Deno.ChildProcess, deadlineMs = 3000): Promise<number[]> {
  const pid = child.pid;
  trySignal(pid, "SIGSTOP");
  const below = await descendants(pid);
  for (const p of below.reverse()) trySignal(p, "SIGKILL");
  trySignal(pid, "SIGKILL");
  await child.status;
  const result = await pollUntil(
    async () => {
      const alive: number[] = [];
      for (const p of below) if (await isAlive(p)) alive.push(p);
      return alive;
    },
    (alive) => alive.length === 0,
    { deadlineMs, intervalMs: 20 },
  );
  return result.value;
}

/** Options of {@linkcode pollUntil}. */
export interface PollOptions {
  /** Give up after this many milliseconds (counted from the first try). */
  deadlineMs: number;
  /** Pause between tries (default 50 ms). */
  intervalMs?: number;
}

/**
 * Bounded convergence polling: calls `fn` until `accept` holds for its value or the
 * deadline passes. Returns the last value, whether it was accepted, and how many tries it
 * took. Errors thrown by `fn` propagate.
 */
export async function pollUntil<T>(
  fn: () => Promise<T>,
  accept: (v: T) => boolean,
  opts: PollOptions,
): Promise<{ value: T; ok: boolean; tries: number }> {
  const interval = opts.intervalMs ?? 50;
  const end = performance.now() + opts.deadlineMs;
  let tries = 0;
  while (true) {
    tries++;
    const value = await fn();
    if (accept(value)) return { value, ok: true, tries };
    const left = end - performance.now();
    if (left <= 0) return { value, ok: false, tries };
    await new Promise((r) => setTimeout(r, Math.min(interval, left)));
  }
}
