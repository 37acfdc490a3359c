import assert from "node:assert/strict";
import type { LinkInfo } from "../../kernel/kernel.ts";
import { renderPlan } from "../../kernel/plan.ts";
import { parseBridgeOptions } from "./options.ts";
import {
  bridgeComment,
  type BridgeNetwork,
  createNetworkPlan,
  deleteNetworkLines,
  foundBridge,
  joinPlan,
  macFor,
  nftAddNetwork,
  nftAddPorts,
  nftRemoveNetwork,
  nftScript,
  parseBridgeComment,
  portsComment,
  type PublishedEndpoint,
} from "./plan.ts";

const ID_A = "aaaaaaaaaaaa" + "0".repeat(52);
const ID_B = "bbbbbbbbbbbb" + "0".repeat(52);

function net(id: string, options: Record<string, string>, extra: Partial<BridgeNetwork> = {}) {
  return {
    id,
    name: id.slice(0, 4),
    config: parseBridgeOptions(id, options, false),
    internal: false,
    ipv4: [{ pool: "10.1.0.0/24", gateway: "10.1.0.1/24" }],
    ipv6: [],
    preexisting: false,
    ...extra,
  } satisfies BridgeNetwork;
}

/** Compares with testdata/NAME.golden; UPDATE_GOLDEN=1 rewrites it. */
async function golden(name: string, actual: string) {
  const path = new URL(`./testdata/${name}.golden`, import.meta.url);
  if (Deno.env.get("UPDATE_GOLDEN")) await Deno.writeTextFile(path, actual);
  assert.equal(actual, await Deno.readTextFile(path));
}

Deno.test("createNetworkPlan() makes the bridge with its gateway and turns forwarding on", async () => {
  const n = net(ID_A, { "com.docker.network.driver.mtu": "1400" }, {
    ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }],
  });
  await golden("create_network", renderPlan(createNetworkPlan(n, "host1")));
});

Deno.test("createNetworkPlan() on a user's existing bridge only adds and removes addresses", async () => {
  const n = net(ID_A, { "com.docker.network.bridge.name": "mybr0" }, {
    preexisting: true,
    found: { kept: [] },
  });
  const text = renderPlan(createNetworkPlan(n, "host1"));
  // the bridge's MTU is the user's: no MTU option given, none set (issue 14)
  assert.doesNotMatch(text, /mtu/, text);
  await golden("create_network_preexisting", text);
  assert.deepEqual(deleteNetworkLines(n), ["addr del 10.1.0.1/24 dev mybr0"]);
});

Deno.test("an existing bridge is left as found: its MTU set only when given, then restored; its addresses and state kept", async () => {
  const opts = {
    "com.docker.network.bridge.name": "mybr0",
    "com.docker.network.driver.mtu": "1400",
  };
  const base = net(ID_A, opts, {
    ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }],
  });
  const link: LinkInfo = {
    ifname: "mybr0",
    ifindex: 7,
    mtu: 9000,
    flags: ["BROADCAST", "MULTICAST"],
    linkinfo: { info_kind: "bridge" },
    addr_info: [
      { family: "inet", local: "192.168.77.1", prefixlen: 24 },
      // the gateway is there already, spelled otherwise: the user's, kept
      { family: "inet6", local: "fd00:1:0::1", prefixlen: 64 },
    ],
  };
  const found = foundBridge(base, link);
  assert.deepEqual(found, { kept: ["fd00:1::1/64"], mtu: 9000, down: true });
  const n = { ...base, preexisting: true, found };
  await golden("create_network_found", renderPlan(createNetworkPlan(n, "host1", { v4: true })));
  assert.deepEqual(deleteNetworkLines(n), [
    "addr del 10.1.0.1/24 dev mybr0",
    "link set dev mybr0 mtu 9000",
    "link set dev mybr0 down",
  ]);
  // without an MTU option, an up bridge: its MTU is not touched, nothing to restore
  const plain = net(ID_A, { "com.docker.network.bridge.name": "mybr0" });
  const up = foundBridge(plain, { ...link, flags: ["UP"] });
  assert.deepEqual(up, { kept: [] });
  const text = renderPlan(createNetworkPlan({ ...plain, preexisting: true, found: up }));
  assert.doesNotMatch(text, /mtu|down/, text);
  // not known how it was found (restored without a record): nothing of it is undone
  assert.deepEqual(deleteNetworkLines({ ...plain, preexisting: true }), []);
});

Deno.test("a user-named bridge's record in the bridges set survives a restart and reads back", () => {
  const made = net(ID_A, { "com.docker.network.bridge.name": "mybr0" });
  assert.equal(bridgeComment(made), "cnm net=aaaaaaaaaaaa bridge=made");
  assert.equal(parseBridgeComment(ID_A, bridgeComment(made)), "made");
  assert.match(
    nftAddNetwork("t", made),
    /add element inet t bridges \{ "mybr0" comment "cnm net=aaaaaaaaaaaa bridge=made" \}/,
  );
  assert.match(
    nftScript("t", [made]),
    /elements = \{ "mybr0" comment "cnm net=aaaaaaaaaaaa bridge=made" \}/,
  );
  const worst = {
    ...made,
    preexisting: true,
    found: {
      mtu: 65535,
      down: true,
      kept: ["255.255.255.254/31", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"],
    },
  };
  const c = bridgeComment(worst);
  assert.ok(c.length <= 128, `nft comments hold 128 characters: ${c.length}`);
  assert.deepEqual(parseBridgeComment(ID_A, c), worst.found);
  assert.deepEqual(parseBridgeComment(ID_A, "cnm net=aaaaaaaaaaaa bridge=found"), { kept: [] });
  // another network's record, garbage, or no record: not known
  assert.equal(parseBridgeComment(ID_B, c), undefined);
  assert.equal(parseBridgeComment(ID_A, "cnm net=aaaaaaaaaaaa bridge=found mtu=x"), undefined);
  assert.equal(parseBridgeComment(ID_A, ""), undefined);
  // generated names carry no record (always made by us): the golden files keep their form
  assert.match(nftAddNetwork("t", net(ID_A, {})), /bridges \{ "br-aaaaaaaaaaaa" \}/);
});

Deno.test("createNetworkPlan() skips the forwarding sysctls already set on the host", () => {
  const n = net(ID_A, {}, { ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }] });
  const text = renderPlan(createNetworkPlan(n, "host1", { v4: true, v6: true }));
  assert.ok(!text.includes("sysctl"), text);
  assert.match(renderPlan(createNetworkPlan(n, "host1", { v4: true })), /ipv6.*forwarding=1/);
});

const JOIN = {
  hostIf: "veth1111111",
  sandboxNetns: "cnmt-x-sb1",
  ifname: "eth1",
  mac: "02:42:0a:01:00:02",
};

Deno.test("joinPlan() creates the pair straight into the sandbox, in one host-side batch", async () => {
  await golden("join", renderPlan(joinPlan(net(ID_A, {}), JOIN, "host1")));
});

Deno.test("joinPlan() isolates the bridge port when enable_icc=false", async () => {
  const icc = renderPlan(joinPlan(net(ID_A, {}), JOIN, "host1"));
  const noIcc = renderPlan(
    joinPlan(net(ID_A, { "com.docker.network.bridge.enable_icc": "false" }), JOIN, "host1"),
  );
  assert.ok(!icc.includes("isolated on"));
  await golden("join_no_icc", noIcc);
});

Deno.test("nftScript() isolates networks, closes internal ones and masquerades the rest", async () => {
  const nets = [
    net(ID_A, {}),
    net(ID_B, { "com.docker.network.bridge.enable_ip_masquerade": "false" }, {
      ipv4: [{ pool: "10.2.0.0/24", gateway: "10.2.0.1/24" }],
    }),
    net("cccccccccccc" + "0".repeat(52), {}, {
      internal: true,
      ipv4: [{ pool: "10.3.0.0/24", gateway: "10.3.0.1/24" }],
    }),
  ];
  await golden("nft_three_networks", nftScript("cnmt_x_bridge", nets));
});

Deno.test("nftAddNetwork() and nftRemoveNetwork() change one network and delete nothing else", async () => {
  const internal = net("cccccccccccc" + "0".repeat(52), {}, {
    internal: true,
    ipv4: [{ pool: "10.3.0.0/24", gateway: "10.3.0.1/24" }],
  });
  const masq = net(ID_A, {});
  const add = nftAddNetwork("cnmt_x_bridge", masq) + "\n" +
    nftAddNetwork("cnmt_x_bridge", internal);
  assert.ok(!/^(delete|flush)/m.test(add), "adding deletes nothing");
  await golden("nft_add_network", add);
  await golden(
    "nft_remove_network",
    nftRemoveNetwork("cnmt_x_bridge", masq) + "\n" + nftRemoveNetwork("cnmt_x_bridge", internal),
  );
});

Deno.test("nftScript() with no networks only deletes the table", () => {
  assert.equal(
    nftScript("t", []),
    "table inet t {}\ndelete table inet t\n",
  );
});

Deno.test("macFor() follows Docker 20.10: 02:42 then the IPv4 octets", () => {
  assert.equal(macFor("172.17.0.2/16"), "02:42:ac:11:00:02");
  const random = macFor();
  assert.match(random, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  assert.equal(parseInt(random.slice(0, 2), 16) & 0x03, 0x02, "locally administered unicast");
});

Deno.test("parseBridgeOptions() rejects unknown keys and bad values", async (t) => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ "bogus.key": "x" }, /unknown option "bogus.key" for driver "bridge"/],
    [{ "com.docker.network.driver.mtu": "10" }, /MTU must be a number from 68 to 65535/],
    [{ "com.docker.network.driver.mtu": "abc" }, /MTU/],
    [{ "com.docker.network.bridge.enable_icc": "maybe" }, /expected true or false/],
    [{ "com.docker.network.bridge.name": "name-that-is-too-long" }, /1 to 15 characters/],
    [{ "com.docker.network.bridge.name": "bad/name" }, /interface name/],
    [{ "com.docker.network.container_iface_prefix": "9x" }, /a letter first/],
    [{ "com.docker.network.bridge.host_binding_ipv4": "1.2.3" }, /expected an IPv4 address/],
    [{ "com.docker.network.bridge.host_binding_ipv4": "::1" }, /expected an IPv4 address/],
    [{ "com.docker.network.bridge.gateway_mode_ipv4": "isolated" }, /expected nat or routed/],
    [{ "com.docker.network.bridge.inhibit_ipv4": "true" }, /not supported by cnm yet/],
  ];
  for (const [opts, re] of bad) {
    await t.step(Object.entries(opts)[0].join("="), () => {
      assert.throws(() => parseBridgeOptions(ID_A, opts, false), re);
    });
  }
  await t.step("IPv6 networks need an MTU of at least 1280", () => {
    assert.throws(
      () => parseBridgeOptions(ID_A, { "com.docker.network.driver.mtu": "1000" }, true),
      /from 1280/,
    );
  });
  await t.step("defaults: br-<id12>, icc and masquerade on, MTU 1500, eth", () => {
    assert.deepEqual(parseBridgeOptions(ID_A, {}, false), {
      bridgeName: "br-aaaaaaaaaaaa",
      userBridgeName: false,
      icc: true,
      masquerade: true,
      mtu: 1500,
      userMtu: false,
      ifacePrefix: "eth",
      hostBindingIpv4: "0.0.0.0",
      gatewayModeIpv4: "nat",
    });
  });
  await t.step("host_binding_ipv4 and gateway_mode_ipv4 are parsed", () => {
    const cfg = parseBridgeOptions(ID_A, {
      "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
      "com.docker.network.bridge.gateway_mode_ipv4": "routed",
    }, false);
    assert.equal(cfg.hostBindingIpv4, "127.0.0.1");
    assert.equal(cfg.gatewayModeIpv4, "routed");
  });
});

const PUBLISHED: PublishedEndpoint = {
  networkId: ID_A,
  endpointId: "eeeeeeeeeeee" + "0".repeat(52),
  address: "10.1.0.2",
  bindings: [
    { hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80, protocol: "tcp" },
    { hostIp: "198.51.100.1", hostPort: 5353, containerPort: 53, protocol: "udp" },
  ],
};

Deno.test("nftScript() publishes ports: DNAT from prerouting and output, localhost masquerade", async () => {
  await golden("nft_ports", nftScript("cnmt_x_bridge", [net(ID_A, {})], [PUBLISHED]));
});

Deno.test("nftAddPorts() only adds DNAT rules carrying the endpoint's owner comment", async () => {
  const add = nftAddPorts("cnmt_x_bridge", PUBLISHED);
  assert.ok(!/^(delete|flush)/m.test(add), "adding deletes nothing");
  for (const line of add.trim().split("\n")) {
    assert.ok(line.endsWith(`comment "${portsComment(PUBLISHED)}"`), line);
  }
  await golden("nft_add_ports", add);
});

Deno.test("nftScript() for gateway_mode_ipv4=routed: no masquerade, no drop from outside", () => {
  const text = nftScript("t", [
    net(ID_A, { "com.docker.network.bridge.gateway_mode_ipv4": "routed" }),
  ]);
  assert.ok(!/oifname != "br-aaaaaaaaaaaa" masquerade/.test(text), text);
  assert.ok(!/unpublished/.test(text), text);
  assert.match(text, /hairpin/);
});

Deno.test("nftScript() applies the same isolation to IPv6: dual-stack and internal networks", async () => {
  const v6 = { ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }] };
  const text = nftScript("cnmt_x_bridge", [
    net(ID_A, {}, v6),
    net(ID_B, {}, {
      internal: true,
      ipv4: [{ pool: "10.2.0.0/24", gateway: "10.2.0.1/24" }],
      ipv6: [{ pool: "fd00:2::/64", gateway: "fd00:2::1/64" }],
    }),
  ]);
  // the isolation and from-outside rules match on interfaces only: both families
  assert.match(text, /oifname @bridges oifname != "br-aaaaaaaaaaaa" drop/);
  assert.match(text, /ip6 daddr != fd00:2::\/64 drop/);
  assert.match(text, /ip6 saddr != fd00:2::\/64 drop/);
  await golden("nft_dual_stack", text);
});

Deno.test("nftScript() keeps 127.0.0.0/8 on the host: dropped at raw unless from lo, never DNATed from prerouting", () => {
  const text = nftScript("t", [net(ID_A, {})], [PUBLISHED]);
  const chain = (name: string) =>
    text.match(new RegExp(`  chain ${name} \\{\\n([^}]*)\\n  \\}`))?.[1];
  // before conntrack and NAT (raw, -300): a neighbour's packet to 127/8 goes no further
  assert.equal(
    chain("localhost"),
    [
      `    type filter hook prerouting priority raw; policy accept;`,
      `    iifname != "lo" ip daddr 127.0.0.0/8 drop comment "cnm localhost-guard"`,
    ].join("\n"),
  );
  // and the nat prerouting hook never looks up ports for 127/8 (the host's own connections
  // are DNATed in output)
  const pre = chain("prerouting")!.split("\n").map((l) => l.trim());
  assert.ok(pre.indexOf("jump ports") > 0, pre.join("\n"));
  assert.match(pre[pre.indexOf("jump ports") - 1], /^ip daddr 127\.0\.0\.0\/8 return/);
  assert.match(chain("output")!, /jump ports/);
});
