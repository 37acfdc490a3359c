/**
 * Leak audit: the machine's state before and after a run. The machine may hold other tools'
 * state (another dockerd, its rules), so only differences count: a namespace, a root link,
 * a root nft table or an /etc/netns entry that appeared, or a process still carrying the
 * run's prefix in its command line.
 * @module
 */
import { exec } from "./exec.ts";
import { listNetns } from "./hosts.ts";

/** A snapshot of what the run could leave behind. */
export interface Snapshot {
  items: Set<string>;
}

/** Takes a snapshot of the root namespace and shared places. */
export async function snapshot(): Promise<Snapshot> {
  const items = new Set<string>();
  for (const n of await listNetns()) items.add(`netns ${n}`);
  const links = await exec(["ip", "-j", "link", "show"]);
  if (links.code === 0) {
    for (const l of JSON.parse(links.stdout) as { ifname: string }[]) items.add(`link ${l.ifname}`);
  }
  const tables = await exec(["nft", "list", "tables"]);
  for (const t of tables.stdout.split("\n").map((l) => l.trim()).filter(Boolean)) {
    items.add(`nft ${t.replace(/^table /, "")}`);
  }
  try {
    for await (const e of Deno.readDir("/etc/netns")) items.add(`/etc/netns/${e.name}`);
  } catch { /* none */ }
  // the hosts' state directories (daemon state, Docker data-roots)
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  try {
    for await (const e of Deno.readDir(tmp)) {
      if (e.name.startsWith("cnmt-")) items.add(`${tmp}/${e.name}`);
    }
  } catch { /* no temp dir */ }
  return { items };
}

/** Processes whose command line contains `prefix` (other than this one). */
export async function processesWith(prefix: string): Promise<string[]> {
  const ps = await exec(["ps", "-eo", "pid=,args="]);
  return ps.stdout.split("\n").map((l) => l.trim()).filter((l) => {
    if (!l.includes(prefix)) return false;
    const pid = Number(l.split(/\s+/)[0]);
    return pid !== Deno.pid && !l.includes(" ps -eo");
  }).map((l) => `process ${l.slice(0, 160)}`);
}

/** What `after` has that `before` had not, plus processes of the run. */
export async function residue(
  before: Snapshot,
  after: Snapshot,
  prefix: string,
): Promise<string[]> {
  // Namespaces and /etc/netns entries are ours only when they carry the run's prefix (other
  // runs may be going on); a new root link or nft table cannot be attributed, so it counts.
  const added = [...after.items].filter((x) => !before.items.has(x)).filter((x) =>
    !(x.startsWith("netns ") || x.startsWith("/etc/netns/") || x.includes("/cnmt-")) ||
    x.includes(prefix)
  );
  return [...added, ...(await processesWith(prefix))];
}
