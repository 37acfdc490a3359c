import assert from "node:assert/strict";
import { renderPlan } from "../../kernel/plan.ts";
import { InvalidArgumentError } from "../../model/errors.ts";
import { parseMacvlanOptions, privateParentNames } from "./options.ts";
import {
  createNetworkPlan,
  deleteNetworkLines,
  joinPlan,
  leaveLines,
  macFor,
  type MacvlanNetwork,
} from "./plan.ts";

const ID = "aaaaaaaaaaaabbbb" + "0".repeat(48);

function net(options: Record<string, string>, extra: Partial<MacvlanNetwork> = {}) {
  const config = parseMacvlanOptions(ID, options);
  return {
    id: ID,
    name: "lan",
    config,
    internal: !config.userParent,
    ipv4: [{ pool: "192.0.2.0/24", gateway: "192.0.2.1/24" }],
    ipv6: [],
    ...extra,
  } satisfies MacvlanNetwork;
}

/** Compares with testdata/NAME.golden; UPDATE_GOLDEN=1 rewrites it. */
async function golden(name: string, actual: string) {
  const path = new URL(`./testdata/${name}.golden`, import.meta.url);
  if (Deno.env.get("UPDATE_GOLDEN")) await Deno.writeTextFile(path, actual);
  assert.equal(actual, await Deno.readTextFile(path));
}

const JOIN = { sandboxNetns: "cnmt-x-sb1", ifname: "eth0", mac: "02:42:c0:00:02:41" };

Deno.test("parseMacvlanOptions() defaults to bridge mode and a private parent", () => {
  const c = parseMacvlanOptions(ID, {});
  assert.deepEqual(c, {
    parent: "mv-aaaaaaaaaaaa",
    peer: "mvp-aaaaaaaaaaa",
    userParent: false,
    mode: "bridge",
    ifacePrefix: "eth",
  });
  assert.ok(c.parent.length <= 15 && c.peer!.length <= 15);
  assert.deepEqual(privateParentNames(ID), { parent: c.parent, peer: c.peer });
  // `-o parent=` (empty) is no parent, as in Docker
  assert.equal(parseMacvlanOptions(ID, { parent: "" }).userParent, false);
});

Deno.test("parseMacvlanOptions() takes Docker's parent and macvlan_mode", () => {
  for (const mode of ["bridge", "private", "vepa", "passthru"]) {
    const c = parseMacvlanOptions(ID, { parent: "lan0", macvlan_mode: mode });
    assert.deepEqual(c, { parent: "lan0", userParent: true, mode, ifacePrefix: "eth" });
  }
  const p = parseMacvlanOptions(ID, {
    parent: "eth0.10",
    "com.docker.network.container_iface_prefix": "mv",
  });
  assert.equal(p.parent, "eth0.10");
  assert.equal(p.ifacePrefix, "mv");
});

Deno.test("parseMacvlanOptions() refuses unknown options and bad values", () => {
  const refused = (options: Record<string, string>, re: RegExp) =>
    assert.throws(() => parseMacvlanOptions(ID, options), (e: Error) => {
      assert.ok(e instanceof InvalidArgumentError, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  refused({ x: "1" }, /^unknown option "x" for driver "macvlan"$/);
  refused({ "com.docker.network.driver.mtu": "1400" }, /unknown option/);
  refused({ macvlan_mode: "bogus" }, /macvlan_mode=bogus: expected bridge, private, vepa/);
  refused({ macvlan_mode: "" }, /macvlan_mode=: expected/);
  refused({ parent: "no/slash" }, /parent interface \(option parent\)/);
  refused({ parent: "a".repeat(16) }, /1 to 15 characters/);
  refused({ parent: "lo" }, /^loopback interface is not a valid macvlan parent link$/);
  refused({ "com.docker.network.container_iface_prefix": "9x" }, /a letter first/);
});

Deno.test("createNetworkPlan() makes the private parent of a network without one", async () => {
  const n = net({});
  await golden("create_network_no_parent", renderPlan(createNetworkPlan(n, "host1")));
  assert.deepEqual(deleteNetworkLines(n), ["link del dev mv-aaaaaaaaaaaa"]);
});

Deno.test("createNetworkPlan() makes nothing on a user's parent, and deletes nothing of it", () => {
  const n = net({ parent: "lan0" });
  assert.deepEqual(createNetworkPlan(n, "host1").ops, []);
  assert.deepEqual(deleteNetworkLines(n), []);
});

Deno.test("joinPlan() creates the macvlan link straight into the sandbox, in one line", async () => {
  const text = renderPlan(joinPlan(net({ parent: "lan0" }), JOIN, "host1"));
  assert.ok(!text.includes("undo"), "a one-line join needs no undo");
  await golden("join_bridge", text);
  const priv = renderPlan(joinPlan(net({ parent: "lan0", macvlan_mode: "private" }), JOIN));
  assert.match(priv, /^ip -batch -\n {2}\| link add link lan0 name eth0 netns cnmt-x-sb1 /);
  assert.match(priv, /type macvlan mode private\n$/);
  const vepa = renderPlan(joinPlan(net({ macvlan_mode: "vepa" }), JOIN, "host1"));
  assert.match(vepa, /link add link mv-aaaaaaaaaaaa name eth0 .* type macvlan mode vepa/);
});

Deno.test("joinPlan() in passthru mode sets the MAC in the sandbox, undone by deleting the link", async () => {
  await golden(
    "join_passthru",
    renderPlan(joinPlan(net({ parent: "lan0", macvlan_mode: "passthru" }), JOIN, "host1")),
  );
});

Deno.test("leaveLines() deletes the link in the sandbox", () => {
  assert.deepEqual(leaveLines({ ifname: "eth1" }), ["link del dev eth1"]);
});

Deno.test("macFor() follows Docker 20.10: 02:42 and the IPv4 address", () => {
  assert.equal(macFor("192.0.2.65/24"), "02:42:c0:00:02:41");
  const random = macFor();
  assert.match(random, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  assert.equal(parseInt(random.slice(0, 2), 16) & 0x03, 0x02, "unicast, locally administered");
});
