/**
 * `ip netns add`, `ip netns del`, `ip netns pids` and bringing a new namespace's loopback up,
 * done in this process with the libc calls iproute2 makes (ip/ipnetns.c), instead of an `ip`
 * process each.
 *
 * Why (measured here): every `ip` process costs about 5 ms to start on these machines
 * (`ip -n X link show lo` 4.4-5.4 ms by hand), and a sandbox took four of them: create
 * (`ip netns add`, then `lo` up) and remove (`ip netns pids`, then `ip netns del`). Done so,
 * the four take well under a millisecond each.
 *
 * - add: /run/netns made shared (as `ip` does each time), the file created exclusively, a
 *   new namespace made on the calling thread with unshare(2), bind-mounted on the file from
 *   /proc/thread-self/ns/net, and the thread put back with setns(2): nothing else runs on the
 *   thread meanwhile (all synchronous). When /run/netns is not a mount point yet, `ip`
 *   (which makes it one) is used instead.
 * - del: umount2(MNT_DETACH) and unlink, as `ip netns del`.
 * - pids: the processes whose /proc/PID/ns/net is that namespace, as `ip netns pids`.
 * - links up or down (a new sandbox's loopback, a removed sandbox's interfaces): SIOCSIFFLAGS
 *   on a socket made inside the namespace, for an `ip -batch` of nothing but such lines.
 * - `sysctl -qw net.KEY=VALUE` (alone or after `nsenter --net=PATH`): the file under
 *   /proc/sys/net written from inside the namespace, which is the one it then names.
 *
 * Messages and exit codes are the command's, so callers (and their tests) cannot tell.
 * @module
 */
import { CLONE_NEWNET, withNetns } from "./setns.ts";

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  unshare: { parameters: ["i32"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "pointer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

const O_RDONLY = 0, O_CREAT = 0o100, O_EXCL = 0o200, O_CLOEXEC = 0o2000000;
const MS_BIND = 0x1000, MS_REC = 0x4000, MS_SHARED = 1 << 20;
const MNT_DETACH = 2;
const EINVAL = 22;
const AF_INET = 2, SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914, IFF_UP = 0x1;
/** sizeof(struct ifreq) on Linux x86-64 and arm64. */
const IFREQ_SIZE = 40;

let libc: Libc | null | undefined;

function lib(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = Deno.dlopen("libc.so.6", symbols).symbols;
  } catch {
    libc = null;
  }
  return libc;
}

const encoder = new TextEncoder();
const cstr = (s: string) => encoder.encode(s + "\0");

function errno(c: Libc): number {
  const p = c.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function strerror(c: Libc, e: number): string {
  const p = c.strerror(e);
  return p === null ? `errno ${e}` : Deno.UnsafePointerView.getCString(p);
}

/** What a command would have printed and how it would have ended. */
export interface NativeResult {
  code: number;
  stdout: string;
  stderr: string;
}

const ok = (stdout = ""): NativeResult => ({ code: 0, stdout, stderr: "" });
const fail = (stderr: string): NativeResult => ({ code: 1, stdout: "", stderr });

/** The directory `ip netns` keeps its names in. */
const NETNS_DIR = "/run/netns";
const NAME = /^[^/\0]+$/;

/**
 * The in-process equivalent of `argv` (with `stdin`) when it is one of the forms above,
 * else undefined (the caller runs the command). The up/down form is
 * `ip -n NAME [-force] -batch -` whose every line is `link set dev IF up|down`.
 */
export function runNetnsInProcess(
  argv: string[],
  stdin: string | undefined,
): NativeResult | undefined {
  const c = lib();
  if (!c) return undefined;
  const sysctl = sysctlOf(argv);
  if (sysctl) return writeSysctl(sysctl);
  if (argv[0] !== "ip") return undefined;
  if (argv[1] === "netns" && argv.length === 4 && NAME.test(argv[3])) {
    const path = `${NETNS_DIR}/${argv[3]}`;
    switch (argv[2]) {
      case "add":
        return add(c, path);
      case "del":
      case "delete":
        return del(c, path);
      case "pids":
        return pids(path);
    }
    return undefined;
  }
  if (argv[1] === "-n" && NAME.test(argv[2] ?? "") && argv.at(-1) === "-" && stdin) {
    const force = argv.length === 6 && argv[3] === "-force" && argv[4] === "-batch";
    const plain = argv.length === 5 && argv[3] === "-batch";
    const lines = force || plain ? upDownLines(stdin) : undefined;
    if (lines) return setUpDown(c, `${NETNS_DIR}/${argv[2]}`, lines, force);
  }
  return undefined;
}

function add(c: Libc, path: string): NativeResult | undefined {
  try {
    Deno.mkdirSync(NETNS_DIR, { recursive: true, mode: 0o755 });
  } catch { /* ip's own error says why */ }
  if (c.mount(cstr(""), cstr(NETNS_DIR), cstr("none"), BigInt(MS_SHARED | MS_REC), null) !== 0) {
    // EINVAL: not a mount point yet; `ip` makes it one
    if (errno(c) === EINVAL) return undefined;
    return fail(`mount --make-shared ${NETNS_DIR} failed: ${strerror(c, errno(c))}\n`);
  }
  const fd = c.open(cstr(path), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    return fail(`Cannot create namespace file "${path}": ${strerror(c, errno(c))}\n`);
  }
  c.close(fd);
  const home = c.open(cstr("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC, 0);
  if (home < 0) {
    c.unlink(cstr(path));
    return fail(`Cannot open this thread's network namespace: ${strerror(c, errno(c))}\n`);
  }
  try {
    if (c.unshare(CLONE_NEWNET) !== 0) {
      const why = strerror(c, errno(c));
      c.unlink(cstr(path));
      return fail(`Failed to create a new network namespace "${path}": ${why}\n`);
    }
    let bound = true;
    let why = "";
    if (
      c.mount(cstr("/proc/thread-self/ns/net"), cstr(path), cstr("none"), BigInt(MS_BIND), null) !==
        0
    ) {
      bound = false;
      why = strerror(c, errno(c));
    }
    if (c.setns(home, CLONE_NEWNET) !== 0) {
      // never go on in another namespace than our own
      throw new Error(
        `Cannot return from network namespace "${path}": setns: ${strerror(c, errno(c))}`,
      );
    }
    if (!bound) {
      c.unlink(cstr(path));
      return fail(`Bind /proc/self/ns/net -> ${path} failed: ${why}\n`);
    }
    return ok();
  } finally {
    c.close(home);
  }
}

function del(c: Libc, path: string): NativeResult {
  c.umount2(cstr(path), MNT_DETACH);
  if (c.unlink(cstr(path)) !== 0) {
    return fail(`Cannot remove namespace file "${path}": ${strerror(c, errno(c))}\n`);
  }
  return ok();
}

function pids(path: string): NativeResult {
  let target: Deno.FileInfo;
  try {
    target = Deno.statSync(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "No such file or directory" : String(err);
    return fail(`Cannot open network namespace "${path}": ${why}\n`);
  }
  const found: string[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const s = Deno.statSync(`/proc/${e.name}/ns/net`);
      if (s.ino === target.ino && s.dev === target.dev) found.push(e.name);
    } catch { /* gone meanwhile, or a kernel thread */ }
  }
  return ok(found.map((p) => `${p}\n`).join(""));
}

/** `link set dev IF up|down` lines, parsed; undefined unless every line is one. */
export function upDownLines(stdin: string): { ifname: string; up: boolean }[] | undefined {
  const lines = stdin.split("\n").filter((l) => l.trim() !== "");
  const out = lines.map((l) => /^link set dev ([^\s/]{1,15}) (up|down)$/.exec(l.trim()));
  if (out.length === 0 || out.some((m) => !m)) return undefined;
  return out.map((m) => ({ ifname: m![1], up: m![2] === "up" }));
}

/** Sets links up or down inside the namespace at `path`, as `ip [-force] -batch` would. */
function setUpDown(
  c: Libc,
  path: string,
  lines: { ifname: string; up: boolean }[],
  force: boolean,
): NativeResult {
  const target = c.open(cstr(path), O_RDONLY | O_CLOEXEC, 0);
  if (target < 0) {
    return fail(`Cannot open network namespace "${path}": ${strerror(c, errno(c))}\n`);
  }
  const home = c.open(cstr("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC, 0);
  let sock = -1;
  try {
    if (home < 0 || c.setns(target, CLONE_NEWNET) !== 0) {
      return fail(`setting the network namespace "${path}" failed: ${strerror(c, errno(c))}\n`);
    }
    sock = c.socket(AF_INET, SOCK_DGRAM, 0);
    if (c.setns(home, CLONE_NEWNET) !== 0) {
      throw new Error(
        `Cannot return from network namespace "${path}": setns: ${strerror(c, errno(c))}`,
      );
    }
  } finally {
    c.close(target);
    if (home >= 0) c.close(home);
  }
  if (sock < 0) return fail(`Cannot open a socket in "${path}": ${strerror(c, errno(c))}\n`);
  let stderr = "";
  try {
    for (const [n, l] of lines.entries()) {
      const ifr = new Uint8Array(IFREQ_SIZE);
      ifr.set(encoder.encode(l.ifname));
      const flags = new DataView(ifr.buffer, 16, 2);
      let why = "";
      if (c.ioctl(sock, BigInt(SIOCGIFFLAGS), ifr) !== 0) {
        why = `Cannot find device "${l.ifname}"`;
      } else {
        const now = flags.getUint16(0, true);
        flags.setUint16(0, l.up ? now | IFF_UP : now & ~IFF_UP, true);
        if (c.ioctl(sock, BigInt(SIOCSIFFLAGS), ifr) !== 0) {
          why = `RTNETLINK answers: ${strerror(c, errno(c))}`;
        }
      }
      if (why) {
        stderr += `${why}\nCommand failed -:${n + 1}\n`;
        if (!force) break;
      }
    }
    return { code: stderr ? 1 : 0, stdout: "", stderr };
  } finally {
    c.close(sock);
  }
}

/** `{ path, file, value }` for `[nsenter --net=PATH] sysctl -qw net.KEY=VALUE`. */
function sysctlOf(argv: string[]): { path?: string; file: string; value: string } | undefined {
  let path: string | undefined;
  let rest = argv;
  if (argv[0] === "nsenter" && argv[1]?.startsWith("--net=")) {
    path = argv[1].slice("--net=".length);
    rest = argv.slice(2);
  }
  if (rest.length !== 3 || rest[0] !== "sysctl" || rest[1] !== "-qw") return undefined;
  const m = /^(net\.[A-Za-z0-9_.-]+)=(\S*)$/.exec(rest[2]);
  // a dotted interface name (eth0.10) would be ambiguous in the key: the command decides
  if (!m || m[1].split(".").some((p) => p === "")) return undefined;
  return { path, file: `/proc/sys/${m[1].replaceAll(".", "/")}`, value: m[2] };
}

function writeSysctl(s: { path?: string; file: string; value: string }): NativeResult {
  const write = () => Deno.writeTextFileSync(s.file, s.value + "\n");
  const key = s.file.slice("/proc/sys/".length).replaceAll("/", ".");
  try {
    if (s.path) withNetns(s.path, write);
    else write();
    return ok();
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? `cannot stat ${s.file}: No such file or directory`
      : `setting key "${key}": ${err instanceof Error ? err.message : err}`;
    return { code: 255, stdout: "", stderr: `sysctl: ${why}\n` };
  }
}
