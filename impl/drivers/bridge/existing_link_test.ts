/**
 * `com.docker.network.bridge.name` naming an interface that exists (issue 14), on a fake
 * kernel: an interface that is not a bridge is refused before anything is changed (Docker's
 * "existing interface X is not a bridge"), an existing bridge is used as is and left as
 * found when the network goes, also after a restart.
 */
import assert from "node:assert/strict";
import type { CreateNetworkRequest } from "../../driver_api/mod.ts";
import { type Command, FakeRunner, Kernel, type LinkInfo } from "../../kernel/mod.ts";
import { CnmError } from "../../model/errors.ts";
import { createBridgeDriver } from "./bridge.ts";

const ID = "abcdef012345" + "0".repeat(52);
const TABLE = "t_bridge";

/** A fake host: `ip -j -d addr show [dev X]` answers from `links`, nft from `records`. */
function fakeHost(links: LinkInfo[], records: Record<string, string> = {}) {
  const runner = new FakeRunner((cmd: Command) => {
    const a = cmd.argv;
    if (a.includes("addr") && a.includes("show")) {
      const dev = a.indexOf("dev");
      if (dev < 0) return { stdout: JSON.stringify(links) };
      const l = links.find((x) => x.ifname === a[dev + 1]);
      return l
        ? { stdout: JSON.stringify([l]) }
        : { code: 1, stderr: `Device "${a[dev + 1]}" does not exist.` };
    }
    if (a.includes("nft") && a.includes("list") && a.includes("set")) {
      const elem = Object.entries(records).map(([val, comment]) => ({ elem: { val, comment } }));
      return {
        stdout: JSON.stringify({
          nftables: [{ set: { family: "inet", name: "bridges", table: TABLE, elem } }],
        }),
      };
    }
    if (a.includes("nft") && a.includes("tables")) {
      return {
        stdout: JSON.stringify({ nftables: [{ table: { family: "inet", name: TABLE } }] }),
      };
    }
    return undefined;
  });
  const kernel = new Kernel({ runner });
  // The root namespace's argv (Kernel.addrs would look for a named one on disk): the fake
  // runner runs nothing.
  const driver = createBridgeDriver({ kernel, table: TABLE });
  return { runner, driver };
}

function request(options: Record<string, string>): CreateNetworkRequest {
  return {
    networkId: ID,
    name: "web",
    options,
    internal: false,
    enableIpv6: false,
    ipv4: [{ pool: "10.1.0.0/24", gateway: "10.1.0.1/24" }],
    ipv6: [],
  };
}

const VETH: LinkInfo = {
  ifname: "uplink0",
  ifindex: 5,
  mtu: 9000,
  flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
  linkinfo: { info_kind: "veth" },
  addr_info: [{ family: "inet", local: "192.168.77.2", prefixlen: 24 }],
};

function bridge(extra: Partial<LinkInfo> = {}): LinkInfo {
  return {
    ifname: "mybr0",
    ifindex: 6,
    mtu: 9000,
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    linkinfo: { info_kind: "bridge" },
    addr_info: [{ family: "inet", local: "192.168.88.1", prefixlen: 24 }],
    ...extra,
  };
}

/** The commands that may change something: everything but the reads. */
function changes(runner: FakeRunner): string {
  return runner.calls.filter((c) =>
    !(c.argv.includes("show") || c.argv.includes("list") || c.argv.includes("pids"))
  ).map((c) => c.argv.join(" ") + "\n" + (c.stdin ?? "")).join("\n");
}

Deno.test("bridge.name naming an interface that is not a bridge is refused, and nothing is changed", async () => {
  const { runner, driver } = fakeHost([VETH]);
  const req = request({ "com.docker.network.bridge.name": "uplink0" });
  driver.validateNetwork?.(req);
  await assert.rejects(driver.createNetwork(req), (e: unknown) => {
    assert.ok(e instanceof CnmError, String(e));
    assert.equal(e.kind, "forbidden");
    assert.equal(e.message, "existing interface uplink0 is not a bridge");
    return true;
  });
  // no MTU, no address, no master, no nft element, no sysctl: only the look-up ran
  assert.equal(changes(runner), "", runner.transcript());
  // and the network is not the driver's: removing it touches nothing either
  await driver.deleteNetwork(ID);
  assert.equal(changes(runner), "", runner.transcript());
});

Deno.test("an existing bridge named by the user keeps its MTU and address; removal takes back only the gateway", async () => {
  const { runner, driver } = fakeHost([bridge()]);
  await driver.createNetwork(request({ "com.docker.network.bridge.name": "mybr0" }));
  const made = changes(runner);
  assert.doesNotMatch(made, /mtu|link add|addr del|192\.168\.88\.1/, made);
  assert.match(made, /addr add 10\.1\.0\.1\/24 dev mybr0/);
  assert.match(made, /"mybr0" comment "cnm net=abcdef012345 bridge=found"/);
  runner.calls.length = 0;
  await driver.deleteNetwork(ID);
  const removed = changes(runner);
  assert.match(removed, /addr del 10\.1\.0\.1\/24 dev mybr0/);
  assert.doesNotMatch(removed, /link del|mtu|down|192\.168\.88\.1/, removed);
});

Deno.test("a gateway the bridge had already is neither added nor removed; an explicit MTU and the up are taken back", async () => {
  const br = bridge({
    flags: ["BROADCAST", "MULTICAST"],
    addr_info: [{ family: "inet", local: "10.1.0.1", prefixlen: 24 }],
  });
  const { runner, driver } = fakeHost([br]);
  await driver.createNetwork(request({
    "com.docker.network.bridge.name": "mybr0",
    "com.docker.network.driver.mtu": "1400",
  }));
  const made = changes(runner);
  assert.doesNotMatch(made, /addr add/, made);
  assert.match(made, /link set dev mybr0 mtu 1400/);
  assert.match(
    made,
    /comment "cnm net=abcdef012345 bridge=found mtu=9000 down kept=10\.1\.0\.1\/24"/,
  );
  runner.calls.length = 0;
  await driver.deleteNetwork(ID);
  const removed = changes(runner);
  assert.doesNotMatch(removed, /addr del|link del/, removed);
  assert.match(removed, /link set dev mybr0 mtu 9000\nlink set dev mybr0 down/);
});

Deno.test("after a restart, the record in the nft table says how the bridge was found", async (t) => {
  const opts = { "com.docker.network.bridge.name": "mybr0" };
  const withGw = bridge({
    addr_info: [
      { family: "inet", local: "192.168.88.1", prefixlen: 24 },
      { family: "inet", local: "10.1.0.1", prefixlen: 24 },
    ],
  });
  await t.step("found: only what the network added is taken back", async () => {
    const { runner, driver } = fakeHost([withGw], {
      mybr0: "cnm net=abcdef012345 bridge=found mtu=1500",
    });
    await driver.restoreNetwork!(request(opts));
    runner.calls.length = 0;
    await driver.deleteNetwork(ID);
    const removed = changes(runner);
    assert.match(removed, /addr del 10\.1\.0\.1\/24 dev mybr0\nlink set dev mybr0 mtu 1500/);
    assert.doesNotMatch(removed, /link del/, removed);
  });
  await t.step("made by the network: deleted with it", async () => {
    const { runner, driver } = fakeHost([withGw], { mybr0: "cnm net=abcdef012345 bridge=made" });
    await driver.restoreNetwork!(request(opts));
    await driver.deleteNetwork(ID);
    assert.match(changes(runner), /link del dev mybr0/);
  });
  await t.step("no record (a flushed table): taken as found, nothing of it removed", async () => {
    const { runner, driver } = fakeHost([withGw], {
      mybr0: "cnm net=999999999999 bridge=made", // another network's
    });
    await driver.restoreNetwork!(request(opts));
    assert.doesNotMatch(changes(runner), /addr|link/, "the bridge has its gateway: nothing to do");
    await driver.deleteNetwork(ID);
    assert.doesNotMatch(changes(runner), /link del|addr del|mtu|down/, runner.transcript());
  });
  await t.step("no record, gateway missing: re-added, so removed again", async () => {
    const { runner, driver } = fakeHost([bridge()]);
    await driver.restoreNetwork!(request(opts));
    assert.match(changes(runner), /addr add 10\.1\.0\.1\/24 dev mybr0/);
    runner.calls.length = 0;
    await driver.deleteNetwork(ID);
    const removed = changes(runner);
    assert.match(removed, /addr del 10\.1\.0\.1\/24 dev mybr0/);
    assert.doesNotMatch(removed, /link del/, removed);
  });
  await t.step("the name is now an interface of another kind: refused, left alone", async () => {
    const { runner, driver } = fakeHost([{ ...VETH, ifname: "mybr0" }]);
    await assert.rejects(driver.restoreNetwork!(request(opts)), (e: unknown) => {
      assert.ok(e instanceof CnmError && e.kind === "forbidden", String(e));
      assert.equal(e.message, "existing interface mybr0 is not a bridge");
      return true;
    });
    await driver.deleteNetwork(ID);
    assert.equal(changes(runner), "", runner.transcript());
  });
});
