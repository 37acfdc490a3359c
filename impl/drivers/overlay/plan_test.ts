import assert from "node:assert/strict";
import { renderPlan } from "../../kernel/plan.ts";
import { InvalidArgumentError } from "../../model/errors.ts";
import { VNI_OPTION } from "../../store/global.ts";
import { parseOverlayOptions } from "./overlay.ts";
import {
  joinPlan,
  networkPlan,
  OVERLAY_MTU,
  type OverlayNetwork,
  peersPlan,
  unprogramLines,
  vethName,
  vxlanName,
} from "./plan.ts";

const ID = "a63345f36b2a05010bad1a8795acdfbb38e01aebd4975459380b3f997729700e";
const NET: OverlayNetwork = {
  id: ID,
  vni: 4097,
  mtu: OVERLAY_MTU,
  netns: "cnmt-0a1b2c3d-ov-a63345f36b2a",
  gateway: "10.0.0.1/24",
};

/** Compares with testdata/NAME.golden; UPDATE_GOLDEN=1 rewrites it. */
async function golden(name: string, actual: string) {
  const path = new URL(`./testdata/${name}.golden`, import.meta.url);
  if (Deno.env.get("UPDATE_GOLDEN")) await Deno.writeTextFile(path, actual);
  assert.equal(actual, await Deno.readTextFile(path));
}

Deno.test("overlay names: libnetwork's vx-<vni hex>-<id5>, at most 15 characters", () => {
  assert.equal(vxlanName(NET), "vx-001001-a6334");
  assert.equal(vxlanName({ id: ID, vni: 2 ** 24 - 1 }), "vx-ffffff-a6334");
  assert.ok(vxlanName({ id: ID, vni: 2 ** 24 - 1 }).length <= 15);
  assert.ok(vethName(ID).length <= 15);
});

Deno.test("overlay network plan: namespace, br0 with the gateway, VXLAN made in the host and moved", async () => {
  await golden("network", renderPlan(networkPlan(NET, "203.0.113.1", "cnmt-h1")));
});

Deno.test("overlay join plan: a veth from br0 straight into the sandbox, MTU 1450", async () => {
  await golden(
    "join",
    renderPlan(joinPlan(NET, {
      endpointId: "dd87229ae0c2b712f4d3111361d8d5132fde818ed2d05832aeeb14ab1c56b3bd",
      sandboxNetns: "cnmt-0a1b2c3d-7375921b6eea",
      ifname: "eth1",
      mac: "02:42:0a:00:00:03",
    })),
  );
});

Deno.test("overlay peers: static neighbour and FDB entry per remote endpoint, and their removal", async () => {
  const peers = [
    { ip: "10.0.0.3", mac: "02:42:0a:00:00:03", vtep: "203.0.113.2" },
    { ip: "10.0.0.4", mac: "02:42:0a:00:00:04", vtep: "203.0.113.3" },
  ];
  const del = unprogramLines(peers);
  await golden(
    "peers",
    renderPlan(peersPlan(NET, peers)) + `remove:\n${[...del.ip, ...del.bridge].join("\n")}\n`,
  );
  assert.deepEqual(peersPlan(NET, []).ops, []);
});

Deno.test("overlay options: MTU 68 to 1450, the VNI option, nothing else", () => {
  assert.deepEqual(parseOverlayOptions({ name: "o", options: {} }), { mtu: 1450 });
  assert.deepEqual(
    parseOverlayOptions({
      name: "o",
      options: { "com.docker.network.driver.mtu": "1400", [VNI_OPTION]: "5000" },
    }),
    { mtu: 1400 },
  );
  for (
    const [options, re] of [
      [{ "com.docker.network.driver.mtu": "1500" }, /must be 68 to 1450 \(VXLAN takes 50 bytes/],
      [{ "com.docker.network.driver.mtu": "60" }, /must be 68 to 1450/],
      [{ "com.docker.network.driver.mtu": "x" }, /must be 68 to 1450/],
      [
        { "com.docker.network.bridge.name": "b" },
        /unknown overlay option com\.docker\.network\.bridge\.name/,
      ],
    ] as const
  ) {
    assert.throws(
      () => parseOverlayOptions({ name: "o", options: { ...options } }),
      (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message),
    );
  }
});
