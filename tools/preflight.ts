/**
 * Makes sure the machine has what cnm needs: root, and the Debian packages that provide
 * `ip`, `nft`, `ping`, `dig`, `socat`, `nsenter`, `ss`, `etcd`, `etcdctl` and `iperf3`.
 * Missing packages are installed with apt-get when possible (service starts forbidden, so
 * etcd-server starts no system etcd); otherwise the exact missing pieces are named.
 * @module
 */

/** Command → Debian package that provides it. */
export const REQUIRED: Record<string, string> = {
  ip: "iproute2",
  ss: "iproute2",
  nft: "nftables",
  ping: "iputils-ping",
  dig: "dnsutils",
  socat: "socat",
  nsenter: "util-linux",
  sysctl: "procps",
  ps: "procps",
  curl: "curl",
  tcpdump: "tcpdump",
  // the overlay's global store, run by the tests in a throwaway namespace (underlay.ts)
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  iperf3: "iperf3",
};

const POLICY_RC_D = "/usr/sbin/policy-rc.d";

/**
 * Forbids service starts while `f` runs (a policy-rc.d answering 101, which invoke-rc.d
 * and deb-systemd-invoke honour), unless the machine has its own policy-rc.d.
 */
async function withoutServiceStarts(f: () => Promise<void>): Promise<void> {
  try {
    await Deno.writeTextFile(POLICY_RC_D, "#!/bin/sh\nexit 101\n", {
      createNew: true,
      mode: 0o755,
    });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    return await f(); // the machine's own policy-rc.d decides
  }
  try {
    await f();
  } finally {
    await Deno.remove(POLICY_RC_D).catch(() => {});
  }
}

async function have(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$1" >/dev/null 2>&1', "sh", cmd],
  }).output();
  return r.success;
}

/** Commands not on PATH. */
export async function missingCommands(): Promise<string[]> {
  const out: string[] = [];
  for (const cmd of Object.keys(REQUIRED)) if (!(await have(cmd))) out.push(cmd);
  return out;
}

/**
 * Installs missing packages (apt-get, as root), or throws one line naming what is missing.
 * `needRoot`: the caller cannot work without root (namespaces).
 */
export async function ensureMachine(needRoot: boolean): Promise<void> {
  if (Deno.build.os !== "linux") throw new Error("cnm needs Linux (network namespaces)");
  if (needRoot && Deno.uid() !== 0) {
    throw new Error("this needs root: it creates network namespaces (run it with sudo)");
  }
  let missing = await missingCommands();
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((c) => REQUIRED[c]))];
  if (Deno.uid() === 0 && (await have("apt-get"))) {
    console.error(`cnm: installing ${packages.join(" ")} with apt-get`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const update = await new Deno.Command("apt-get", { args: ["update", "-qq"], env }).output();
    if (!update.success) console.error("cnm: apt-get update failed; trying the install anyway");
    await withoutServiceStarts(async () => {
      await new Deno.Command("apt-get", {
        args: ["install", "-y", "-qq", "--no-install-recommends", ...packages],
        env,
        stdout: "inherit",
        stderr: "inherit",
      }).output();
    });
    missing = await missingCommands();
    if (missing.length === 0) return;
  }
  throw new Error(
    `missing commands: ${missing.join(", ")} (install the Debian packages ${
      [...new Set(missing.map((c) => REQUIRED[c]))].join(" ")
    })`,
  );
}

if (import.meta.main) {
  try {
    await ensureMachine(false);
    console.log("cnm: all required commands are present");
  } catch (err) {
    console.error(`cnm: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
