import assert from "node:assert/strict";
import type { CreateNetworkRequest, JoinRequest } from "../../driver_api/mod.ts";
import { Kernel, MemoryFs } from "../../kernel/kernel.ts";
import { type Command, FakeRunner, FaultyRunner } from "../../kernel/runner.ts";
import {
  ForbiddenError,
  InvalidArgumentError,
  KernelCommandError,
  NotFoundError,
} from "../../model/errors.ts";
import { createMacvlanDriver } from "./macvlan.ts";

const ID_A = "aaaaaaaaaaaa" + "1".repeat(52);
const ID_B = "bbbbbbbbbbbb" + "2".repeat(52);
const HOST = "cnmt-u-host";

function req(id: string, options: Record<string, string>, internal = false): CreateNetworkRequest {
  return {
    networkId: id,
    name: id.slice(0, 4),
    options,
    internal,
    enableIpv6: false,
    ipv4: [{ pool: "192.0.2.0/24", gateway: "192.0.2.1/24" }],
    ipv6: [],
  };
}

/** Links the fake host namespace has: `ip -j link show dev X` answers for these only. */
function fakeKernel(links: Record<string, string[]> = { lan0: ["UP"] }, fail?: RegExp) {
  const respond = (cmd: Command) => {
    const i = cmd.argv.indexOf("show");
    if (cmd.argv.includes("-j") && i > 0 && cmd.argv[i + 1] === "dev") {
      const name = cmd.argv[i + 2];
      if (!(name in links)) return { code: 1, stderr: `Device "${name}" does not exist.\n` };
      return { stdout: JSON.stringify([{ ifname: name, ifindex: 3, flags: links[name] }]) };
    }
    return undefined;
  };
  const fake = new FakeRunner(respond);
  const runner = fail
    ? new FaultyRunner(fake, (c) => fail.test(`${c.argv.join(" ")}\n${c.stdin ?? ""}`))
    : fake;
  const kernel = new Kernel({ runner, fs: new MemoryFs() });
  return { fake, kernel, driver: createMacvlanDriver({ kernel, hostNetns: HOST }) };
}

function joinReq(
  networkId: string,
  endpointId: string,
  mac?: string,
  ifname = "eth0",
): JoinRequest {
  return {
    networkId,
    endpointId,
    sandbox: { id: "s1", netnsName: "cnmt-u-sb1", netnsPath: "/run/netns/cnmt-u-sb1" },
    ifname,
    iface: { address: "192.0.2.65/24", mac },
    driverData: {},
  };
}

/** The commands that change something (not the `ip -j ... show` reads). */
function writes(fake: FakeRunner): string {
  return fake.calls.filter((c) => !c.argv.includes("-j")).map((c) =>
    c.argv.join(" ") + (c.stdin ? "\n" + c.stdin.trimEnd() : "")
  ).join("\n");
}

Deno.test("capabilities: local data, global connectivity (the segment reaches beyond the host)", () => {
  const { driver } = fakeKernel();
  assert.equal(driver.type, "macvlan");
  assert.deepEqual(driver.capabilities(), { dataScope: "local", connectivityScope: "global" });
});

Deno.test("createNetwork() on an existing parent checks it and makes nothing", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  assert.equal(writes(fake), "");
  assert.deepEqual(fake.calls.map((c) => c.argv.join(" ")), [
    `ip -n ${HOST} -j link show dev lan0`,
  ]);
});

Deno.test("createNetwork() refuses a missing parent, with nothing made", async () => {
  const { fake, driver } = fakeKernel();
  await assert.rejects(
    () => driver.createNetwork(req(ID_A, { parent: "nosuchif0" })),
    (e: Error) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.message, "parent interface nosuchif0 does not exist in the host namespace");
      return true;
    },
  );
  assert.equal(writes(fake), "");
  // the network is not known: an endpoint on it is refused
  await assert.rejects(() => driver.createEndpoint(ID_A, "e1", {}), NotFoundError);
});

Deno.test("createNetwork() refuses unknown options before touching the kernel", async () => {
  const { fake, driver } = fakeKernel();
  assert.throws(
    () => driver.validateNetwork!(req(ID_A, { parent: "lan0", x: "1" })),
    /unknown option "x" for driver "macvlan"/,
  );
  await assert.rejects(
    () => driver.createNetwork(req(ID_A, { parent: "lan0", x: "1" })),
    InvalidArgumentError,
  );
  assert.equal(fake.calls.length, 0);
});

Deno.test("createNetwork() without parent makes the private parent; deleteNetwork() removes it", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, {}));
  assert.equal(
    writes(fake),
    `ip -n ${HOST} -batch -\nlink add name mv-aaaaaaaaaaaa type veth peer name mvp-aaaaaaaaaaa\n` +
      `link set dev mv-aaaaaaaaaaaa up\nlink set dev mvp-aaaaaaaaaaa up`,
  );
  fake.calls.length = 0;
  await driver.deleteNetwork(ID_A);
  assert.equal(writes(fake), `ip -n ${HOST} -force -batch -\nlink del dev mv-aaaaaaaaaaaa`);
  fake.calls.length = 0;
  await driver.deleteNetwork(ID_A); // idempotent
  assert.equal(fake.calls.length, 0);
});

Deno.test("deleteNetwork() of a network on a user's parent deletes nothing", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  fake.calls.length = 0;
  await driver.deleteNetwork(ID_A);
  assert.equal(fake.calls.length, 0);
});

Deno.test("a failed private parent is undone; an existing link of that name is left alone", async () => {
  const { fake, driver } = fakeKernel({}, /link set dev mvp-/);
  await assert.rejects(() => driver.createNetwork(req(ID_A, {})), KernelCommandError);
  assert.match(writes(fake), /-force -batch -\nlink del dev mv-aaaaaaaaaaaa$/);
  // "File exists" on the first line: nothing of ours was made, nothing is deleted
  const exists = new FakeRunner((c) =>
    c.argv.includes("-batch") && !c.argv.includes("-force")
      ? { code: 2, stderr: "RTNETLINK answers: File exists\nCommand failed -:1\n" }
      : undefined
  );
  const d2 = createMacvlanDriver({ kernel: new Kernel({ runner: exists }), hostNetns: HOST });
  await assert.rejects(() => d2.createNetwork(req(ID_A, {})), (e: Error) => {
    assert.ok(e instanceof ForbiddenError);
    assert.equal(e.message, "link mv-aaaaaaaaaaaa already exists");
    return true;
  });
  assert.ok(!exists.transcript().includes("del"), exists.transcript());
});

Deno.test("a parent in passthru mode is exclusive, either way round", async () => {
  const { driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0", macvlan_mode: "passthru" }));
  assert.throws(
    () => driver.validateNetwork!(req(ID_B, { parent: "lan0" })),
    (e: Error) =>
      e instanceof ForbiddenError &&
      e.message === `parent interface lan0 is used by network "aaaa" in mode passthru`,
  );
  await assert.rejects(() => driver.createNetwork(req(ID_B, { parent: "lan0" })), ForbiddenError);
  await driver.deleteNetwork(ID_A);
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  assert.throws(
    () => driver.validateNetwork!(req(ID_B, { parent: "lan0", macvlan_mode: "passthru" })),
    /cannot use mode passthru: parent interface lan0 is used by network "aaaa"/,
  );
  // other modes share a parent (current libnetwork; Docker 20.10 refused any second network)
  driver.validateNetwork!(req(ID_B, { parent: "lan0", macvlan_mode: "private" }));
  // networks without a parent each have their own
  driver.validateNetwork!(req(ID_B, { macvlan_mode: "passthru" }));
});

Deno.test("createEndpoint() chooses Docker 20.10's MAC and touches no kernel", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  fake.calls.length = 0;
  const ep = await driver.createEndpoint(ID_A, "e1", { address: "192.0.2.65/24" });
  assert.deepEqual(ep, { mac: "02:42:c0:00:02:41", driverData: {} });
  const given = await driver.createEndpoint(ID_A, "e2", { mac: "02:00:00:00:00:09" });
  assert.equal(given.mac, "02:00:00:00:00:09");
  await driver.deleteEndpoint(ID_A, "e1", {});
  await driver.deleteEndpoint(ID_A, "e1", {}); // idempotent
  assert.equal(fake.calls.length, 0);
});

Deno.test("join() makes the link in the sandbox and offers the IPAM gateway", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  fake.calls.length = 0;
  const joined = await driver.join(joinReq(ID_A, "e1", "02:42:c0:00:02:41"));
  assert.deepEqual(joined, { gateway: "192.0.2.1", gatewayV6: undefined });
  assert.equal(
    writes(fake),
    `ip -n ${HOST} -batch -\nlink add link lan0 name eth0 netns cnmt-u-sb1 ` +
      `address 02:42:c0:00:02:41 type macvlan mode bridge`,
  );
  fake.calls.length = 0;
  await driver.leave(joinReq(ID_A, "e1"));
  assert.equal(writes(fake), "ip -n cnmt-u-sb1 -force -batch -\nlink del dev eth0");
});

Deno.test("join() offers no gateway on an internal network, nor on one without parent", async () => {
  const { driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0" }, true));
  assert.deepEqual(await driver.join(joinReq(ID_A, "e1", "02:42:c0:00:02:41")), {});
  await driver.createNetwork(req(ID_B, {}, false)); // forced internal
  assert.deepEqual(await driver.join(joinReq(ID_B, "e2", "02:42:c0:00:02:42", "eth1")), {});
});

Deno.test("join() says which parent is gone when the kernel cannot find it", async () => {
  const runner = new FakeRunner((c) =>
    c.argv.includes("-j")
      ? { stdout: '[{"ifname":"lan0","ifindex":3}]' }
      : c.stdin?.includes("link add link")
      ? { code: 1, stderr: 'Cannot find device "lan0"\nCommand failed -:1\n' }
      : undefined
  );
  const driver = createMacvlanDriver({ kernel: new Kernel({ runner }), hostNetns: HOST });
  await driver.createNetwork(req(ID_A, { parent: "lan0" }));
  await assert.rejects(() => driver.join(joinReq(ID_A, "e1")), (e: Error) => {
    assert.ok(e instanceof NotFoundError);
    assert.match(e.message, /parent interface lan0 of network "aaaa" does not exist/);
    return true;
  });
});

Deno.test("passthru: one endpoint; the MAC is set in the sandbox, and a failure there deletes the link", async () => {
  const { fake, driver } = fakeKernel();
  await driver.createNetwork(req(ID_A, { parent: "lan0", macvlan_mode: "passthru" }));
  await driver.createEndpoint(ID_A, "e1", { address: "192.0.2.65/24" });
  await assert.rejects(
    () => driver.createEndpoint(ID_A, "e2", { address: "192.0.2.66/24" }),
    /mode passthru: parent interface lan0 takes one endpoint and has one/,
  );
  // re-creating the same endpoint (the controller's reconcile) is fine
  await driver.createEndpoint(ID_A, "e1", { address: "192.0.2.65/24" });
  fake.calls.length = 0;
  await driver.join(joinReq(ID_A, "e1", "02:42:c0:00:02:41"));
  assert.equal(
    writes(fake),
    `ip -n ${HOST} -batch -\nlink add link lan0 name eth0 netns cnmt-u-sb1 type macvlan mode passthru\n` +
      `ip -n cnmt-u-sb1 -batch -\nlink set dev eth0 address 02:42:c0:00:02:41`,
  );
  await driver.deleteEndpoint(ID_A, "e1", {});
  await driver.createEndpoint(ID_A, "e2", { address: "192.0.2.66/24" });

  const faulty = fakeKernel({ lan0: ["UP"] }, /link set dev eth0 address/);
  await faulty.driver.createNetwork(req(ID_A, { parent: "lan0", macvlan_mode: "passthru" }));
  await assert.rejects(
    () => faulty.driver.join(joinReq(ID_A, "e1", "02:42:c0:00:02:41")),
    KernelCommandError,
  );
  assert.match(writes(faulty.fake), /ip -n cnmt-u-sb1 -force -batch -\nlink del dev eth0$/);
});

Deno.test("restoreNetwork() re-creates a missing private parent and leaves a present one", async () => {
  const gone = fakeKernel({});
  await gone.driver.restoreNetwork!(req(ID_A, {}));
  assert.match(writes(gone.fake), /link add name mv-aaaaaaaaaaaa type veth peer name mvp-/);
  assert.deepEqual(await gone.driver.join(joinReq(ID_A, "e1")), {}, "still forced internal");

  const present = fakeKernel({ "mv-aaaaaaaaaaaa": ["UP"], "mvp-aaaaaaaaaaa": ["UP"] });
  await present.driver.restoreNetwork!(req(ID_A, {}));
  assert.equal(writes(present.fake), "");

  const down = fakeKernel({ "mv-aaaaaaaaaaaa": [], "mvp-aaaaaaaaaaa": ["UP"] });
  await down.driver.restoreNetwork!(req(ID_A, {}));
  assert.equal(writes(down.fake), `ip -n ${HOST} -batch -\nlink set dev mv-aaaaaaaaaaaa up`);

  const half = fakeKernel({ "mvp-aaaaaaaaaaa": ["UP"] });
  await half.driver.restoreNetwork!(req(ID_A, {}));
  assert.match(writes(half.fake), /^ip -n \S+ -force -batch -\nlink del dev mvp-aaaaaaaaaaa\n/);
});

Deno.test("restoreNetwork() reports a user's parent that is gone, and still knows the network", async () => {
  const { fake, driver } = fakeKernel({});
  await assert.rejects(
    () => driver.restoreNetwork!(req(ID_A, { parent: "lan0" })),
    /parent interface lan0 does not exist/,
  );
  assert.equal(writes(fake), "");
  await driver.deleteNetwork(ID_A);
  assert.equal(writes(fake), "", "a user's parent is never deleted");
});
