/**
 * The macvlan driver on real links (needs root), driven directly: a throwaway host
 * namespace whose `lan0` is a veth to a "LAN" namespace holding another machine
 * (192.0.2.254/24), and throwaway sandbox namespaces that this file addresses and routes as
 * the controller would. Everything is removed in `finally`, even on failure.
 */
import assert from "node:assert/strict";
import type { CreateNetworkRequest, NetworkDriver } from "../../driver_api/mod.ts";
import { Kernel } from "../../kernel/kernel.ts";
import { InvalidArgumentError } from "../../model/errors.ts";
import {
  addNetns,
  isRoot,
  listNetns,
  must,
  ping,
  removeNetnsByPrefix,
  sh,
  tcpReach,
  testPrefix,
} from "../../../testing/mod.ts";
import { createMacvlanDriver } from "./macvlan.ts";

const ignore = !isRoot;
const LAN_PEER = "192.0.2.254";

interface Lab {
  prefix: string;
  host: string;
  lan: string;
  kernel: Kernel;
  driver: NetworkDriver;
  /** Makes a sandbox namespace `<prefix>-<name>`. */
  sandbox(name: string): Promise<string>;
}

/** A host with lan0 wired to a LAN namespace, and a driver for that host. */
async function withLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  const prefix = testPrefix();
  const host = `${prefix}-host`, lan = `${prefix}-lan`;
  try {
    await addNetns(host);
    await addNetns(lan);
    await must([
      "ip",
      "-n",
      host,
      "link",
      "add",
      "name",
      "lan0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      lan,
    ]);
    await must(["ip", "-n", host, "link", "set", "lan0", "up"]);
    await must(
      ["ip", "-n", lan, "-batch", "-"],
      `addr add ${LAN_PEER}/24 dev eth0\nlink set eth0 up\n`,
    );
    const kernel = new Kernel();
    const driver = createMacvlanDriver({ kernel, hostNetns: host });
    await fn({
      prefix,
      host,
      lan,
      kernel,
      driver,
      async sandbox(name) {
        await addNetns(`${prefix}-${name}`);
        return `${prefix}-${name}`;
      },
    });
  } finally {
    await removeNetnsByPrefix(prefix);
  }
}

let nextId = 0;
function netReq(options: Record<string, string>, internal = false): CreateNetworkRequest {
  const id = (++nextId).toString(16).padStart(4, "0") + "c0ffee".repeat(10);
  return {
    networkId: id,
    name: `mv${nextId}`,
    options,
    internal,
    enableIpv6: false,
    ipv4: [{ pool: "192.0.2.0/24", gateway: "192.0.2.1/24" }],
    ipv6: [],
  };
}

/**
 * Connects a sandbox as the controller does: CreateEndpoint, Join, then the interface's
 * address, up, and the default route when the driver offers a gateway.
 */
async function attach(
  lab: Lab,
  networkId: string,
  sandbox: string,
  address: string,
  ifname = "eth0",
) {
  const endpointId = `${sandbox}-${ifname}`;
  const created = await lab.driver.createEndpoint(networkId, endpointId, { address });
  const req = {
    networkId,
    endpointId,
    sandbox: { id: sandbox, netnsName: sandbox, netnsPath: `/run/netns/${sandbox}` },
    ifname,
    iface: { address, mac: created.mac },
    driverData: created.driverData,
  };
  const joined = await lab.driver.join(req);
  await must(
    ["ip", "-n", sandbox, "-batch", "-"],
    `addr add ${address} dev ${ifname}\nlink set dev ${ifname} up\n` +
      (joined.gateway ? `route add default via ${joined.gateway} dev ${ifname}\n` : ""),
  );
  return { req, mac: created.mac!, joined };
}

interface JLink {
  ifname: string;
  address: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
  addr_info?: { family: string; local: string; scope?: string }[];
}

async function links(netns: string): Promise<JLink[]> {
  return JSON.parse(await must(["ip", "-n", netns, "-j", "-d", "addr", "show"]));
}

/** The LAN machine's neighbour entry for `ip` (after a ping from it). */
async function lanNeighbour(lab: Lab, ip: string): Promise<string | undefined> {
  const entries = JSON.parse(await must(["ip", "-n", lab.lan, "-j", "neigh", "show"])) as {
    dst: string;
    lladdr?: string;
  }[];
  return entries.find((e) => e.dst === ip)?.lladdr;
}

Deno.test({
  name:
    "macvlan (root): sandboxes on a parent reach each other and the LAN host, which sees their MACs",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      const req = netReq({ parent: "lan0" });
      lab.driver.validateNetwork!(req);
      await lab.driver.createNetwork(req);
      const [sb1, sb2] = [await lab.sandbox("sb1"), await lab.sandbox("sb2")];
      const a = await attach(lab, req.networkId, sb1, "192.0.2.65/24");
      await attach(lab, req.networkId, sb2, "192.0.2.66/24");
      assert.deepEqual(a.joined, { gateway: "192.0.2.1", gatewayV6: undefined });
      assert.equal(a.mac, "02:42:c0:00:02:41");

      const eth0 = (await links(sb1)).find((l) => l.ifname === "eth0")!;
      assert.equal(eth0.linkinfo?.info_kind, "macvlan");
      assert.equal(eth0.linkinfo?.info_data?.mode, "bridge");
      assert.equal(eth0.address, a.mac);
      assert.match(await must(["ip", "-n", sb1, "route", "show", "default"]), /via 192\.0\.2\.1/);

      assert.ok(await ping(sb1, "192.0.2.66"), "sb1 -> sb2");
      assert.ok(await ping(sb2, "192.0.2.65"), "sb2 -> sb1");
      assert.ok(await tcpReach(sb1, sb2, "192.0.2.66", 8080), "sb1 -> sb2 over TCP");
      assert.ok(await ping(sb1, LAN_PEER), "sb1 -> LAN host");
      assert.ok(await ping(lab.lan, "192.0.2.65"), "LAN host -> sb1");
      // no NAT: the LAN host knows the sandbox by its own address and MAC
      assert.equal(await lanNeighbour(lab, "192.0.2.65"), a.mac);
      // nothing of the endpoints is in the host namespace
      assert.deepEqual((await links(lab.host)).map((l) => l.ifname).sort(), ["lan0", "lo"]);

      await lab.driver.leave(a.req);
      assert.ok(!(await links(sb1)).some((l) => l.ifname === "eth0"), "leave deletes the link");
      await lab.driver.leave(a.req); // idempotent
      await lab.driver.deleteEndpoint(req.networkId, a.req.endpointId, {});
      await lab.driver.deleteEndpoint(req.networkId, a.req.endpointId, {});
      assert.ok(await ping(lab.lan, "192.0.2.66"), "the other sandbox is untouched");
      await lab.driver.deleteNetwork(req.networkId);
      const lan0 = (await links(lab.host)).find((l) => l.ifname === "lan0");
      assert.ok(lan0?.flags.includes("UP"), "the user's parent stays, up");
    });
  },
});

Deno.test({
  name:
    "macvlan (root): the host namespace cannot reach its own macvlan sandbox through the parent",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      const req = netReq({ parent: "lan0" });
      await lab.driver.createNetwork(req);
      const sb1 = await lab.sandbox("sb1");
      await attach(lab, req.networkId, sb1, "192.0.2.65/24");
      // the host gets an address on the parent's segment, so it has a path to try
      await must(["ip", "-n", lab.host, "addr", "add", "192.0.2.253/24", "dev", "lan0"]);
      assert.ok(await ping(lab.host, LAN_PEER), "control: host -> LAN host");
      assert.ok(await ping(lab.lan, "192.0.2.65"), "control: LAN host -> sandbox");
      assert.equal(await ping(lab.host, "192.0.2.65"), false, "host -> its own sandbox");
      assert.equal(await ping(sb1, "192.0.2.253"), false, "sandbox -> its own host");
    });
  },
});

Deno.test({
  name:
    "macvlan (root): private mode keeps sandboxes apart, vepa sends them to the wire; both reach the LAN",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      for (const [mode, base] of [["private", 70], ["vepa", 80]] as const) {
        const req = netReq({ parent: "lan0", macvlan_mode: mode });
        await lab.driver.createNetwork(req);
        const [s1, s2] = [await lab.sandbox(`${mode}1`), await lab.sandbox(`${mode}2`)];
        await attach(lab, req.networkId, s1, `192.0.2.${base + 1}/24`);
        await attach(lab, req.networkId, s2, `192.0.2.${base + 2}/24`);
        const eth0 = (await links(s1)).find((l) => l.ifname === "eth0")!;
        assert.equal(eth0.linkinfo?.info_data?.mode, mode);
        assert.ok(await ping(s1, LAN_PEER), `${mode}: s1 -> LAN host`);
        assert.ok(await ping(s2, LAN_PEER), `${mode}: s2 -> LAN host`);
        // the LAN's veth does not hairpin, so vepa peers cannot meet either
        assert.equal(await ping(s1, `192.0.2.${base + 2}`), false, `${mode}: s1 -> s2`);
        assert.equal(await ping(s2, `192.0.2.${base + 1}`), false, `${mode}: s2 -> s1`);
        for (const s of [s1, s2]) {
          await lab.driver.leave({
            networkId: req.networkId,
            endpointId: `${s}-eth0`,
            sandbox: { id: s, netnsName: s, netnsPath: `/run/netns/${s}` },
            ifname: "eth0",
            iface: {},
            driverData: {},
          });
          await lab.driver.deleteEndpoint(req.networkId, `${s}-eth0`, {});
        }
        await lab.driver.deleteNetwork(req.networkId);
      }
    });
  },
});

Deno.test({
  name: "macvlan (root): a missing parent is refused and nothing is made",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      const before = await links(lab.host);
      // only this test's namespaces: other runs may come and go meanwhile
      const ours = async () => (await listNetns()).filter((n) => n.startsWith(lab.prefix));
      const namespaces = await ours();
      const req = netReq({ parent: "nosuchif0" });
      await assert.rejects(() => lab.driver.createNetwork(req), (e: Error) => {
        assert.ok(e instanceof InvalidArgumentError, `${e.name}: ${e.message}`);
        assert.match(e.message, /parent interface nosuchif0 does not exist/);
        return true;
      });
      assert.deepEqual(await links(lab.host), before);
      assert.deepEqual(await ours(), namespaces);
      // the same network with a parent that exists is fine
      await lab.driver.createNetwork({ ...req, options: { parent: "lan0" } });
      await lab.driver.deleteNetwork(req.networkId);
      assert.deepEqual(await links(lab.host), before);
    });
  },
});

Deno.test({
  name:
    "macvlan (root): without parent, a private link joins the sandboxes, not the LAN, and goes with the network",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      const before = (await links(lab.host)).map((l) => l.ifname).sort();
      const req = netReq({}); // not internal in the request: the driver forces it
      await lab.driver.createNetwork(req);
      const id = req.networkId;
      const [parent, peer] = [`mv-${id.slice(0, 12)}`, `mvp-${id.slice(0, 11)}`];
      const made = await links(lab.host);
      for (const name of [parent, peer]) {
        const l = made.find((x) => x.ifname === name);
        assert.ok(l, `${name} exists`);
        assert.equal(l.linkinfo?.info_kind, "veth");
        assert.ok(l.flags.includes("UP"), `${name} is up`);
        assert.ok(!l.addr_info?.some((a) => a.family === "inet"), `${name} has no address`);
      }
      const [sb1, sb2] = [await lab.sandbox("sb1"), await lab.sandbox("sb2")];
      const a = await attach(lab, id, sb1, "192.0.2.65/24");
      await attach(lab, id, sb2, "192.0.2.66/24");
      assert.deepEqual(a.joined, {}, "no gateway: forced internal");
      assert.equal((await must(["ip", "-n", sb1, "route", "show", "default"])).trim(), "");
      assert.ok(await ping(sb1, "192.0.2.66"), "sb1 -> sb2");
      assert.ok(await tcpReach(sb2, sb1, "192.0.2.65", 8080), "sb2 -> sb1 over TCP");
      assert.equal(await ping(sb1, LAN_PEER), false, "sb1 -> LAN host");
      assert.equal(await lanNeighbour(lab, "192.0.2.65"), undefined);

      // a restarted driver re-creates a private parent that went missing
      await must(["ip", "-n", lab.host, "link", "del", parent]);
      const again = createMacvlanDriver({ kernel: lab.kernel, hostNetns: lab.host });
      await again.restoreNetwork!(req);
      const restored = await links(lab.host);
      assert.ok(restored.find((l) => l.ifname === parent)?.flags.includes("UP"));
      assert.ok(restored.find((l) => l.ifname === peer)?.flags.includes("UP"));
      for (const sb of [sb1, sb2]) {
        await again.leave({ ...a.req, sandbox: { ...a.req.sandbox, netnsName: sb } });
      }
      await attach({ ...lab, driver: again }, id, sb1, "192.0.2.65/24");
      await attach({ ...lab, driver: again }, id, sb2, "192.0.2.66/24");
      assert.ok(await ping(sb1, "192.0.2.66"), "sb1 -> sb2 on the re-created parent");

      for (const sb of [sb1, sb2]) {
        await again.leave({ ...a.req, sandbox: { ...a.req.sandbox, netnsName: sb } });
      }
      await again.deleteNetwork(id);
      assert.deepEqual((await links(lab.host)).map((l) => l.ifname).sort(), before);
      await again.deleteNetwork(id); // idempotent
    });
  },
});

Deno.test({
  name:
    "macvlan (root): passthru takes the parent for one endpoint, with Docker's MAC, given back on leave",
  ignore,
  async fn() {
    await withLab(async (lab) => {
      const lan0Mac = (await links(lab.host)).find((l) => l.ifname === "lan0")!.address;
      const req = netReq({ parent: "lan0", macvlan_mode: "passthru" });
      await lab.driver.createNetwork(req);
      assert.throws(() => lab.driver.validateNetwork!(netReq({ parent: "lan0" })), /passthru/);
      const [sb1, sb2] = [await lab.sandbox("sb1"), await lab.sandbox("sb2")];
      const a = await attach(lab, req.networkId, sb1, "192.0.2.65/24");
      const eth0 = (await links(sb1)).find((l) => l.ifname === "eth0")!;
      assert.equal(eth0.linkinfo?.info_data?.mode, "passthru");
      assert.equal(eth0.address, a.mac);
      assert.ok(await ping(sb1, LAN_PEER), "sb1 -> LAN host");
      assert.equal(await lanNeighbour(lab, "192.0.2.65"), a.mac);
      await assert.rejects(() => attach(lab, req.networkId, sb2, "192.0.2.66/24"), /passthru/);
      await lab.driver.leave(a.req);
      await lab.driver.deleteEndpoint(req.networkId, a.req.endpointId, {});
      assert.equal((await links(lab.host)).find((l) => l.ifname === "lan0")!.address, lan0Mac);
      // the parent is free again: the other sandbox may take it
      await attach(lab, req.networkId, sb2, "192.0.2.66/24");
      assert.ok(await ping(sb2, LAN_PEER), "sb2 -> LAN host");
      const r = await sh(["ip", "-n", sb1, "link", "show", "eth0"]);
      assert.notEqual(r.code, 0);
    });
  },
});
