/**
 * One daemon per prefix on a machine: sandbox namespaces (/run/netns) are machine-wide and
 * named after the prefix, so two daemons on one prefix would take each other's for orphans.
 * The daemon holds an exclusive flock(2) on `/run/cnm/<prefix>.lock` for its life: closing
 * the file (a clean exit) or the process dying (kill -9) releases it, so a crash never
 * leaves a stale lock. The file holds the holder's pid and state directory, for the refusal.
 * @module
 */
import { CnmError } from "../model/errors.ts";

/** Where the prefix locks live (machine-wide, whatever the state directory). */
export const LOCK_DIR = "/run/cnm";

/** A held prefix lock. */
export interface PrefixLock {
  /** The lock file's path. */
  readonly path: string;
  /** Releases the lock and removes its file. Idempotent. */
  release(): void;
}

function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Takes the lock of `prefix` for a daemon using `stateDir`, or throws a conflict naming the
 * other daemon's pid and state directory. `dir` is for tests.
 */
export async function acquirePrefixLock(
  prefix: string,
  stateDir: string,
  dir: string = LOCK_DIR,
): Promise<PrefixLock> {
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${prefix}.lock`;
  for (let attempt = 0;; attempt++) {
    const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
    if (!(await file.tryLock(true))) {
      const holder = (await Deno.readTextFile(path).catch(() => "")).split("\n");
      file.close();
      const pid = holder[0] || "unknown";
      const where = holder[1] || "unknown";
      throw new CnmError(
        "conflict",
        `Another daemon (pid ${pid}, state directory ${where}) uses the prefix "${prefix}"`,
      );
    }
    // The holder we waited on may have removed the file before we locked it: a lock on an
    // unlinked file guards nothing, so lock the file that is at the path now.
    const now = await Deno.stat(path).catch(() => undefined);
    if (!now || !sameFile(now, await file.stat())) {
      file.close();
      if (attempt < 10) continue;
      throw new CnmError("internal", `Cannot lock ${path}: it keeps being replaced`);
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n${stateDir}\n`));
    let held = true;
    return {
      path,
      release() {
        if (!held) return;
        held = false;
        // removed while still locked, so nobody locks the old file after us
        try {
          Deno.removeSync(path);
        } catch { /* already gone */ }
        file.close();
      },
    };
  }
}
