/**
 * Long-lived processes an adapter starts (a cnm daemon, dockerd, containerd): spawned with
 * their output appended to a log file, waited for with a bounded readiness check, and
 * stopped with a signal and a SIGKILL deadline.
 * @module
 */

/** Spawns argv with stdout and stderr appended to `logFile`. */
export async function spawnLogged(
  argv: string[],
  logFile: string,
  env?: Record<string, string>,
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (const stream of [child.stdout, child.stderr]) {
    const file = await Deno.open(logFile, { append: true, create: true, write: true });
    stream.pipeTo(file.writable).catch(() => {});
  }
  return child;
}

/**
 * Polls `ready` until it answers true, the process exits, or `deadlineMs` passes. Throws
 * `onFailure(tail of the log)` unless ready.
 */
export async function waitReady(
  child: Deno.ChildProcess,
  ready: () => Promise<boolean>,
  opts: { deadlineMs: number; logFile: string; onFailure: (tail: string) => Error },
): Promise<void> {
  const deadline = Date.now() + opts.deadlineMs;
  let exited = false;
  child.status.then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      if (await ready()) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = (await Deno.readTextFile(opts.logFile).catch(() => "")).trim().split("\n")
    .slice(-4).join(" | ");
  throw opts.onFailure(tail);
}

/** True when an HTTP GET over the client answers 2xx within a second. */
export async function answers(client: Deno.HttpClient, url: string): Promise<boolean> {
  const r = await fetch(url, { client, signal: AbortSignal.timeout(1000) });
  await r.body?.cancel();
  return r.ok;
}

/** Sends `signal`, then SIGKILL after `graceMs`, and waits for the exit. */
export async function stopProcess(
  child: Deno.ChildProcess,
  signal: Deno.Signal,
  graceMs = 10_000,
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}
