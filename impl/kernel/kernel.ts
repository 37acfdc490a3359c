/**
 * The kernel façade: applies plans through a {@linkcode CommandRunner}, reads state as JSON
 * (`ip -j`, `nft -j`), and manages namespaces and the files under /etc/netns. Everything in
 * impl/ that touches the kernel goes through here.
 * @module
 */
import { KernelCommandError } from "../model/errors.ts";
import { type Op, type Plan, renderPlan } from "./plan.ts";
import { type CommandRunner, createProcessRunner, type Logger, quietLogger } from "./runner.ts";
import { UndoStack } from "./undo.ts";

/** File operations, injectable so unit tests need no root. */
export interface FileSystem {
  writeTextFile(path: string, content: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** Removes a file or directory tree; missing is fine. */
  remove(path: string): Promise<void>;
  readTextFile(path: string): Promise<string | undefined>;
  /** Names of the entries of a directory; [] when it does not exist. */
  readDir(path: string): Promise<string[]>;
}

/** The real file system. */
export const realFs: FileSystem = {
  writeTextFile: (p, c) => Deno.writeTextFile(p, c),
  mkdir: (p) => Deno.mkdir(p, { recursive: true }),
  async remove(p) {
    try {
      await Deno.remove(p, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  },
  async readTextFile(p) {
    try {
      return await Deno.readTextFile(p);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  },
  async readDir(p) {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(p)) names.push(e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return names.sort();
  },
};

/** An in-memory file system for unit tests. */
export class MemoryFs implements FileSystem {
  readonly files = new Map<string, string>();
  writeTextFile(p: string, c: string): Promise<void> {
    this.files.set(p, c);
    return Promise.resolve();
  }
  mkdir(_p: string): Promise<void> {
    return Promise.resolve();
  }
  remove(p: string): Promise<void> {
    for (const k of [...this.files.keys()]) {
      if (k === p || k.startsWith(p + "/")) this.files.delete(k);
    }
    return Promise.resolve();
  }
  readTextFile(p: string): Promise<string | undefined> {
    return Promise.resolve(this.files.get(p));
  }
  readDir(p: string): Promise<string[]> {
    const names = new Set<string>();
    for (const k of this.files.keys()) {
      if (k.startsWith(p + "/")) names.add(k.slice(p.length + 1).split("/")[0]);
    }
    return Promise.resolve([...names].sort());
  }
}

/** Options of {@linkcode Kernel}. */
export interface KernelOptions {
  runner?: CommandRunner;
  fs?: FileSystem;
  log?: Logger;
  /** Where named namespaces live (/run/netns). */
  netnsDir?: string;
  /** Where per-namespace files live (/etc/netns). */
  etcNetnsDir?: string;
}

/** A link as `ip -j link` reports it (the fields we use). */
export interface LinkInfo {
  ifname: string;
  ifindex: number;
  address?: string;
  mtu?: number;
  master?: string;
  operstate?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  /** Addresses, when read with `ip -j addr` ({@linkcode Kernel.addrs}). */
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** A route as `ip -j route` reports it (the fields we use). */
export interface RouteInfo {
  dst: string;
  gateway?: string;
  dev?: string;
}

/**
 * Where the links {@linkcode Kernel.deleteLinkLater} deletes in the background are recorded
 * (durably: the controller's store), so that a process killed before a deletion finished
 * has the next one finish it ({@linkcode Kernel.settleRetired}).
 */
export interface RetiredLinks {
  add(netns: string | undefined, link: string): void;
  remove(netns: string | undefined, link: string): void;
  list(): { netns?: string; link: string }[];
}

/** True when an `ip -batch` failed on its first line, so it changed nothing. */
function failedOnFirstLine(err: unknown): boolean {
  return err instanceof KernelCommandError && /^Command failed -:1$/m.test(err.stderr);
}

/** Runs plans and reads kernel state. */
export class Kernel {
  readonly runner: CommandRunner;
  readonly fs: FileSystem;
  readonly log: Logger;
  readonly netnsDir: string;
  readonly etcNetnsDir: string;

  constructor(options: KernelOptions = {}) {
    this.log = options.log ?? quietLogger;
    this.runner = options.runner ?? createProcessRunner({ log: this.log });
    this.fs = options.fs ?? realFs;
    this.netnsDir = options.netnsDir ?? "/run/netns";
    this.etcNetnsDir = options.etcNetnsDir ?? "/etc/netns";
  }

  /** Path of a named namespace. */
  netnsPath(name: string): string {
    return `${this.netnsDir}/${name}`;
  }

  /** `ip` argv for a namespace (root when absent). */
  ipArgv(netns: string | undefined, ...args: string[]): string[] {
    return netns ? ["ip", "-n", netns, ...args] : ["ip", ...args];
  }

  /** argv that runs `cmd` inside a namespace without touching mounts (nsenter). */
  inNetns(netns: string | undefined, cmd: string[]): string[] {
    return netns ? ["nsenter", `--net=${this.netnsPath(netns)}`, ...cmd] : cmd;
  }

  /** Runs one op. */
  async #runOp(op: Op): Promise<void> {
    switch (op.kind) {
      case "ip":
        await this.runner.run({
          argv: this.ipArgv(op.netns, "-batch", "-"),
          stdin: op.lines.join("\n") + "\n",
        });
        return;
      case "bridge":
        await this.runner.run({
          argv: this.inNetns(op.netns, ["bridge", "-batch", "-"]),
          stdin: op.lines.join("\n") + "\n",
        });
        return;
      case "nft":
        await this.runner.run({
          argv: this.inNetns(op.netns, ["nft", "-f", "-"]),
          stdin: op.script,
        });
        return;
      case "netns-add":
        await this.runner.run({ argv: ["ip", "netns", "add", op.name] });
        return;
      case "sysctl":
        await this.runner.run({
          argv: this.inNetns(op.netns, ["sysctl", "-qw", `${op.key}=${op.value}`]),
        });
        return;
      case "write": {
        await this.fs.mkdir(op.path.slice(0, op.path.lastIndexOf("/")));
        await this.fs.writeTextFile(op.path, op.content);
        return;
      }
    }
  }

  /** The compensation of an op, if it has one. Compensations never throw on "not there". */
  #undoOf(op: Op): (() => Promise<void>) | undefined {
    switch (op.kind) {
      case "ip":
        if (!op.undo?.length) return undefined;
        return async () => {
          await this.runner.run({
            argv: this.ipArgv(op.netns, "-force", "-batch", "-"),
            stdin: op.undo!.join("\n") + "\n",
            allowFail: true,
          });
        };
      case "bridge":
        if (!op.undo?.length) return undefined;
        return async () => {
          await this.runner.run({
            argv: this.inNetns(op.netns, ["bridge", "-force", "-batch", "-"]),
            stdin: op.undo!.join("\n") + "\n",
            allowFail: true,
          });
        };
      case "nft":
        if (!op.undo) return undefined;
        return async () => {
          await this.runner.run({
            argv: this.inNetns(op.netns, ["nft", "-f", "-"]),
            stdin: op.undo,
            allowFail: true,
          });
        };
      case "netns-add":
        return () => this.deleteNetns(op.name);
      case "write":
        return op.undoDir ? () => this.fs.remove(op.undoDir!) : undefined;
      default:
        return undefined;
    }
  }

  /**
   * Applies a plan. Each op's compensation is pushed on `undo` once the op has started, so a
   * failure halfway through an `ip -batch` is taken back too; an op that failed without
   * changing anything (an `ip -batch` that failed on its first line, or a single command:
   * `ip netns add`, an atomic `nft -f`) gets no compensation, so the undo never removes
   * something that was there before (an existing namespace or link of the same name).
   * Without an `undo` stack, a failed plan unwinds itself before the error is rethrown.
   */
  async apply(p: Plan, undo?: UndoStack): Promise<void> {
    const own = undo ?? new UndoStack(this.log);
    try {
      for (const op of p.ops) {
        const comp = this.#undoOf(op);
        const label = `${op.kind} ${renderPlan({ ops: [op] }).split("\n")[0]}`;
        try {
          await this.#runOp(op);
        } catch (err) {
          const batch = op.kind === "ip" || op.kind === "bridge";
          if (comp && batch && !failedOnFirstLine(err)) own.push(label, comp);
          throw err;
        }
        if (comp) own.push(label, comp);
      }
    } catch (err) {
      if (!undo) await own.unwind();
      throw err;
    }
    if (!undo) own.commit();
  }

  /** Reads `ip -j ARGS` in a namespace. */
  async ipJson<T>(netns: string | undefined, ...args: string[]): Promise<T> {
    const r = await this.runner.run({ argv: this.ipArgv(netns, "-j", ...args) });
    return (r.stdout.trim() ? JSON.parse(r.stdout) : []) as T;
  }

  /** Links of a namespace; [] when the namespace does not exist. */
  async links(netns: string | undefined): Promise<LinkInfo[]> {
    if (netns && !(await this.netnsExists(netns))) return [];
    return await this.ipJson<LinkInfo[]>(netns, "-d", "link", "show");
  }

  /**
   * Links of a namespace with their details (kind, master, flags) and addresses, in one
   * `ip -j -d addr show`; [] when the namespace does not exist.
   */
  async addrs(netns: string | undefined): Promise<LinkInfo[]> {
    if (netns && !(await this.netnsExists(netns))) return [];
    return await this.ipJson<LinkInfo[]>(netns, "-d", "addr", "show");
  }

  /**
   * Runs read-only `ip -j` commands in one `ip -j -batch -` (one process for several
   * reads); returns one parsed answer per line.
   */
  async ipJsonBatch(netns: string | undefined, lines: string[]): Promise<unknown[]> {
    if (lines.length === 0) return [];
    const r = await this.runner.run({
      argv: this.ipArgv(netns, "-j", "-batch", "-"),
      stdin: lines.join("\n") + "\n",
    });
    const out = r.stdout.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    while (out.length < lines.length) out.push([]);
    return out;
  }

  /**
   * Runs an ip batch in a namespace, continuing past errors (for idempotent deletes).
   * Resolves to true when every line succeeded.
   */
  ipForce(netns: string | undefined, lines: string[]): Promise<boolean> {
    return this.#forceBatch(this.ipArgv(netns, "-force", "-batch", "-"), lines);
  }

  /** Runs a `bridge -force -batch` in a namespace; true when every line succeeded. */
  bridgeForce(netns: string | undefined, lines: string[]): Promise<boolean> {
    return this.#forceBatch(this.inNetns(netns, ["bridge", "-force", "-batch", "-"]), lines);
  }

  /**
   * Set by the composition root: {@linkcode deleteLinkLater} then defers the deletion and
   * journals it here; unset, it deletes at once.
   */
  retired?: RetiredLinks;
  /** Links waiting for their deletion, by namespace (`""`: our own). */
  readonly #retiredQueue = new Map<string, Set<string>>();
  #retiring: Promise<void> = Promise.resolve();

  /**
   * Deletes a link in the background, journaled (deleted once the call returns; an earlier
   * process's unfinished ones at the next start, {@linkcode settleRetired}): for the host
   * end of a veth whose other end is in a namespace being deleted. The namespace's
   * deletion normally takes the pair with it (the host end was gone 9 ms after it,
   * measured), but a namespace can outlive its name (orphaned TCP sockets keep it, seen in
   * a fault run), and then only this deletion takes the host end off its bridge. Links
   * queued while a deletion runs go in one call after it. Unset journal: deleted at once.
   */
  async deleteLinkLater(netns: string | undefined, link: string): Promise<void> {
    const journal = this.retired;
    if (!journal) {
      await this.ipForce(netns, [`link del dev ${link}`]);
      return;
    }
    journal.add(netns, link);
    const idle = this.#retiredQueue.size === 0;
    this.#queueRetired(netns, link);
    if (idle) this.#deleteRetired();
  }

  #queueRetired(netns: string | undefined, link: string): void {
    const key = netns ?? "";
    let set = this.#retiredQueue.get(key);
    if (!set) this.#retiredQueue.set(key, set = new Set());
    set.add(link);
  }

  /** Deletes every queued link (one `ip -force -batch` per namespace). */
  #deleteRetired(): Promise<void> {
    const run = async () => {
      const batches = [...this.#retiredQueue.entries()];
      this.#retiredQueue.clear();
      for (const [key, links] of batches) {
        const netns = key || undefined;
        try {
          // -force: one that is gone already does not stop the others
          await this.ipForce(netns, [...links].map((l) => `link del dev ${l}`));
          for (const l of links) this.retired?.remove(netns, l);
        } catch (err) {
          this.log(`links ${[...links].join(", ")}: not deleted: ${err}`);
        }
      }
    };
    this.#retiring = this.#retiring.then(run, run);
    return this.#retiring;
  }

  /**
   * Deletes the links an earlier process journaled and did not delete, and resolves once
   * every queued link is deleted (at start, and before a clean stop).
   */
  async settleRetired(): Promise<void> {
    for (const r of this.retired?.list() ?? []) {
      if (r.netns && !(await this.netnsExists(r.netns))) this.retired?.remove(r.netns, r.link);
      else this.#queueRetired(r.netns, r.link);
    }
    await this.#deleteRetired();
  }

  /** Runs a `-force -batch` command on `lines`; true when every line succeeded. */
  async #forceBatch(argv: string[], lines: string[]): Promise<boolean> {
    if (lines.length === 0) return true;
    const r = await this.runner.run({ argv, stdin: lines.join("\n") + "\n", allowFail: true });
    return r.code === 0;
  }

  /** Runs an ip batch in a namespace, throwing on the first error. */
  async ip(netns: string | undefined, lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await this.runner.run({
      argv: this.ipArgv(netns, "-batch", "-"),
      stdin: lines.join("\n") + "\n",
    });
  }

  /** Sets one sysctl in a namespace. */
  async sysctl(netns: string | undefined, key: string, value: string): Promise<void> {
    await this.runner.run({ argv: this.inNetns(netns, ["sysctl", "-qw", `${key}=${value}`]) });
  }

  /** Runs one nft transaction in a namespace. */
  async nft(netns: string | undefined, script: string, allowFail = false): Promise<void> {
    await this.runner.run({
      argv: this.inNetns(netns, ["nft", "-f", "-"]),
      stdin: script,
      allowFail,
    });
  }

  /** Names of the nft tables of a namespace, as `family name`. */
  async nftTables(netns: string | undefined): Promise<string[]> {
    const r = await this.runner.run({ argv: this.inNetns(netns, ["nft", "-j", "list", "tables"]) });
    const parsed = JSON.parse(r.stdout || "{}") as {
      nftables?: { table?: { family: string; name: string } }[];
    };
    return (parsed.nftables ?? []).flatMap((e) =>
      e.table ? [`${e.table.family} ${e.table.name}`] : []
    );
  }

  /** Names of the namespaces under /run/netns. */
  async netnsList(): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(this.netnsDir)) names.push(e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return names.sort();
  }

  /** Names of the per-namespace directories under /etc/netns. */
  etcNetnsList(): Promise<string[]> {
    return this.fs.readDir(this.etcNetnsDir);
  }

  /** True when a namespace of that name exists. */
  async netnsExists(name: string): Promise<boolean> {
    try {
      await Deno.stat(this.netnsPath(name));
      return true;
    } catch {
      return false;
    }
  }

  /** Creates a namespace with loopback up; fails if it exists. */
  async createNetns(name: string): Promise<void> {
    await this.runner.run({ argv: ["ip", "netns", "add", name] });
    try {
      await this.ip(name, ["link set dev lo up"]);
    } catch (err) {
      await this.deleteNetns(name);
      throw err;
    }
  }

  /** Deletes a namespace (idempotent), killing processes still inside it first. */
  async deleteNetns(name: string): Promise<void> {
    const pids = await this.runner.run({ argv: ["ip", "netns", "pids", name], allowFail: true });
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* already gone */ }
    }
    const r = await this.runner.run({ argv: ["ip", "netns", "del", name], allowFail: true });
    if (r.code !== 0 && !/No such file|not found|Invalid/i.test(r.stderr)) {
      throw new KernelCommandError(["ip", "netns", "del", name], r.code, r.stderr);
    }
  }

  /** Path of a file under /etc/netns/NAME/. */
  etcNetnsPath(name: string, file?: string): string {
    return file ? `${this.etcNetnsDir}/${name}/${file}` : `${this.etcNetnsDir}/${name}`;
  }
}
