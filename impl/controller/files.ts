/**
 * The sandbox's /etc/hosts and /etc/resolv.conf, as Docker writes them
 * (`buildSandboxHosts`, `setupResolutionFiles`, research/libnetwork.md §1.2).
 * @module
 */

/** Docker's default hosts lines (libnetwork etchosts.defaultContent). */
const DEFAULT_HOSTS = [
  "127.0.0.1\tlocalhost",
  "::1\tlocalhost ip6-localhost ip6-loopback",
  "fe00::0\tip6-localnet",
  "ff00::0\tip6-mcastprefix",
  "ff02::1\tip6-allnodes",
  "ff02::2\tip6-allrouters",
];

/** The hosts file of a sandbox: defaults, then each of its addresses with its hostname. */
export function hostsFile(hostname: string, addresses: string[]): string {
  return [...DEFAULT_HOSTS, ...addresses.map((a) => `${a.split("/")[0]}\t${hostname}`)].join(
    "\n",
  ) + "\n";
}

/**
 * The resolv.conf of a sandbox: the configured servers, or else the host's nameservers
 * without loopback ones (Docker's filtering of the host resolv.conf), with its search and
 * options lines.
 */
export function resolvConf(servers: string[], hostResolvConf: string | undefined): string {
  const lines: string[] = [];
  const host = (hostResolvConf ?? "").split("\n").map((l) => l.trim());
  const names = servers.length > 0 ? servers : host
    .filter((l) => l.startsWith("nameserver"))
    .map((l) => l.split(/\s+/)[1])
    .filter((ip) => ip && !ip.startsWith("127.") && ip !== "::1");
  for (const ip of names) lines.push(`nameserver ${ip}`);
  for (const l of host) if (/^(search|options)\s/.test(l)) lines.push(l);
  return lines.join("\n") + "\n";
}
