/**
 * Does a daemon's store agree with the kernel? The state a daemon reports through its API,
 * checked against its host and sandbox namespaces: every endpoint's interface and address,
 * its veth on its bridge, no link or namespace that no record owns, no shared address, a
 * published port's rules present exactly when stored. Test-only code.
 * @module
 */
import assert from "node:assert/strict";
import { listNetns, must } from "./mod.ts";

/** One API call that throws on a status >= 300; returns the parsed body. */
export type Api = (method: string, path: string, body?: unknown) => Promise<any>;

/** What a daemon reports: its networks and its sandboxes with their endpoints. */
export interface State {
  networks: { id: string; name: string; driver: string; options: Record<string, string> }[];
  sandboxes: {
    name: string;
    netnsName: string;
    endpointDetails: {
      networkId: string;
      ifname?: string;
      ipv4?: string;
      published?: { hostPort: number }[];
      driverData: Record<string, string>;
    }[];
  }[];
}

/** True when sandbox `sb` is connected to network `net`. */
export const connected = (s: State, sb: string, net: string) => {
  const n = s.networks.find((x) => x.name === net);
  return !!n && !!s.sandboxes.find((x) => x.name === sb)?.endpointDetails
    .some((e) => e.networkId === n.id);
};

/** The bridge of a network. */
export const bridgeOf = (n: State["networks"][number]) =>
  n.options["com.docker.network.bridge.name"] ?? `br-${n.id.slice(0, 12)}`;

/** The store as the daemon reports it. */
export async function state(api: Api): Promise<State> {
  const networks = await api("GET", "/networks");
  const list = await api("GET", "/sandboxes") as { name: string }[];
  const sandboxes = [];
  for (const s of list) sandboxes.push(await api("GET", `/sandboxes/${s.name}`));
  return { networks, sandboxes };
}

/**
 * Store = kernel: each endpoint's interface is in its sandbox with its address, its veth
 * on its bridge; nothing in the host or a sandbox that no record owns; no shared address.
 */
export async function checkAgrees(s: State, host: string, prefix: string): Promise<void> {
  const addresses = s.sandboxes.flatMap((x) => x.endpointDetails.map((e) => e.ipv4))
    .filter(Boolean);
  assert.equal(new Set(addresses).size, addresses.length, `duplicate address: ${addresses}`);
  const hostLinks = JSON.parse(await must(["ip", "-n", host, "-j", "link", "show"])) as {
    ifname: string;
    master?: string;
  }[];
  const expected = new Set(["lo"]);
  for (const n of s.networks) if (n.driver === "bridge") expected.add(bridgeOf(n));
  for (const sb of s.sandboxes) {
    const links = JSON.parse(await must(["ip", "-n", sb.netnsName, "-j", "addr", "show"])) as {
      ifname: string;
      addr_info: { local: string; prefixlen: number }[];
    }[];
    const mine = new Set(["lo"]);
    for (const ep of sb.endpointDetails) {
      mine.add(ep.ifname!);
      const link = links.find((l) => l.ifname === ep.ifname);
      assert.ok(link, `${sb.name}: ${ep.ifname} is in the kernel`);
      const addrs = link.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
      assert.ok(addrs.includes(ep.ipv4!), `${sb.name}: ${ep.ifname} has ${ep.ipv4}`);
      const hostIf = ep.driverData.hostIf;
      expected.add(hostIf);
      const net = s.networks.find((n) => n.id === ep.networkId)!;
      assert.equal(
        hostLinks.find((l) => l.ifname === hostIf)?.master,
        bridgeOf(net),
        `${sb.name}: ${hostIf} is on its bridge`,
      );
    }
    assert.deepEqual(links.map((l) => l.ifname).sort(), [...mine].sort(), `${sb.name}'s links`);
  }
  assert.deepEqual(hostLinks.map((l) => l.ifname).sort(), [...expected].sort(), "host links");
  // a published port's rules exist exactly when a stored endpoint publishes it
  const published = s.sandboxes.some((x) =>
    x.endpointDetails.some((e) => e.published?.some((p) => p.hostPort === 18080))
  );
  const ruleset = await must(["ip", "netns", "exec", host, "nft", "list", "ruleset"]);
  assert.equal(/dport 18080\b/.test(ruleset), published, `port 18080's rules:\n${ruleset}`);
  const netns = (await listNetns()).filter((n) => n.startsWith(prefix)).sort();
  assert.deepEqual(netns, [host, ...s.sandboxes.map((x) => x.netnsName)].sort(), "namespaces");
}

/** Removes every sandbox and network through the API. */
export async function removeAll(api: Api): Promise<void> {
  for (const s of await api("GET", "/sandboxes")) await api("DELETE", `/sandboxes/${s.name}`);
  for (const n of await api("GET", "/networks")) await api("DELETE", `/networks/${n.name}`);
}
