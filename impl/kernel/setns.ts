/**
 * Entering a network namespace from this process, for the length of one synchronous call:
 * libc `setns(2)` through `Deno.dlopen` (DESIGN.md, "Verified facts": Deno 2 exposes no file
 * descriptors, so the namespace files are opened with libc `open()` too).
 *
 * A socket belongs to the namespace of the thread that creates it and stays there. So a
 * listener inside a sandbox is made by entering the sandbox's namespace on the thread that
 * runs JavaScript, creating the socket with a synchronous API (`Deno.listenDatagram`,
 * `Deno.listen`), and going back: this is how Docker's embedded DNS gets its sockets
 * (research/libnetwork.md §4.1, `resolver.SetupFunc`), and how ours does.
 *
 * Needs `--allow-ffi` (`-A`). The library is opened on first use, so importing this module
 * needs no permission.
 * @module
 */

/** `CLONE_NEWNET` from <sched.h>: the namespace type given to setns(2). */
export const CLONE_NEWNET = 0x40000000;
const O_RDONLY_CLOEXEC = 0o2000000;

const libcSymbols = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

let libc: Libc | undefined;

/** Opens libc once; throws a readable error when FFI is not allowed. */
function getLibc(): Libc {
  if (libc) return libc;
  try {
    libc = Deno.dlopen("libc.so.6", libcSymbols).symbols;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`Cannot load libc.so.6 for setns(2) (run with --allow-ffi or -A): ${why}`, {
      cause: err,
    });
  }
  return libc;
}

/** The text of the calling thread's current errno (`"No such file or directory (errno 2)"`). */
function lastError(c: Libc): string {
  const p = c.__errno_location();
  if (p === null) return "unknown error";
  const errno = new Deno.UnsafePointerView(p).getInt32();
  const msg = c.strerror(errno);
  const text = msg === null ? "unknown error" : Deno.UnsafePointerView.getCString(msg);
  return `${text} (errno ${errno})`;
}

const encoder = new TextEncoder();

/** Opens `path` read-only with libc; throws an error naming the path on failure. */
function openPath(c: Libc, path: string, what: string): number {
  const fd = c.open(encoder.encode(path + "\0"), O_RDONLY_CLOEXEC);
  if (fd < 0) throw new Error(`Cannot open ${what} "${path}": ${lastError(c)}`);
  return fd;
}

/**
 * Runs `fn` synchronously with the calling thread inside the network namespace at
 * `netnsPath` (a file such as `/run/netns/NAME` or `/proc/PID/ns/net`), then puts the thread
 * back into the namespace it was in, even when `fn` throws. Sockets `fn` creates
 * synchronously stay in the target namespace.
 *
 * `fn` must not await: only what it does before returning runs inside the namespace. Nesting
 * works (each call returns to the namespace it found). Throws an error naming the path when
 * the namespace cannot be opened or entered; if the way back fails (which leaves the thread
 * in the wrong namespace) it throws too, and the process should not go on using the network.
 */
export function withNetns<T>(netnsPath: string, fn: () => T): T {
  const c = getLibc();
  const home = openPath(c, "/proc/thread-self/ns/net", "this thread's network namespace");
  let target = -1;
  try {
    target = openPath(c, netnsPath, "network namespace");
    if (c.setns(target, CLONE_NEWNET) !== 0) {
      throw new Error(`Cannot enter network namespace "${netnsPath}": setns: ${lastError(c)}`);
    }
    try {
      return fn();
    } finally {
      if (c.setns(home, CLONE_NEWNET) !== 0) {
        // deno-lint-ignore no-unsafe-finally
        throw new Error(
          `Cannot return from network namespace "${netnsPath}": setns: ${lastError(c)}`,
        );
      }
    }
  } finally {
    if (target >= 0) c.close(target);
    c.close(home);
  }
}

/**
 * The inode of the calling thread's network namespace (`net:[4026531840]` → 4026531840),
 * from /proc/thread-self/ns/net. Lets callers and tests check which namespace they are in.
 */
export function currentNetnsInode(): number {
  return Deno.statSync("/proc/thread-self/ns/net").ino ?? -1;
}

/** The inode of the network namespace file at `netnsPath` (comparable with the above). */
export function netnsInode(netnsPath: string): number {
  return Deno.statSync(netnsPath).ino ?? -1;
}
