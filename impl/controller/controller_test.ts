/**
 * Controller unit tests: lifecycle rules, typed errors and rollback, with a fake kernel
 * (no root). The same behaviours run on real kernel objects in controller_integration_test.ts.
 */
import assert from "node:assert/strict";
import { fakeController as makeFake, rejectsKind } from "../../testing/fake_controller.ts";
import type { Command } from "../kernel/mod.ts";
import { CnmError, KernelCommandError } from "../model/errors.ts";
import { type Controller, nextIfname } from "./controller.ts";

function fakeController(fail?: (cmd: Command) => boolean) {
  return makeFake({
    dns: ["192.0.2.53"],
    respond: (cmd) => (fail?.(cmd) ? { code: 2, stderr: "injected" } : undefined),
  });
}

const rejects = rejectsKind;

Deno.test("Controller.createNetwork() refuses bad input with typed one-line errors", async (t) => {
  const { ctl, store } = fakeController();
  await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  const cases: [string, Parameters<Controller["createNetwork"]>[0], string, RegExp][] = [
    ["duplicate name", { name: "web" }, "conflict", /network with name web already exists/],
    ["empty name", { name: "" }, "invalid", /name is empty/],
    ["odd characters", { name: "a b;rm" }, "invalid", /only \[a-zA-Z0-9\]/],
    ["too long", { name: "x".repeat(65) }, "invalid", /longer than 64/],
    ["bad CIDR", { name: "n", subnet: "10.1.0.0/33" }, "invalid", /prefix length 33/],
    ["not a CIDR", { name: "n", subnet: "banana" }, "invalid", /Invalid subnet "banana"/],
    ["host bits", { name: "n", subnet: "10.9.0.1/24" }, "invalid", /did you mean 10.9.0.0\/24/],
    [
      "gateway outside",
      { name: "n", subnet: "10.9.0.0/24", gateway: "10.8.0.1" },
      "invalid",
      /gateway 10.8.0.1 is outside subnet 10.9.0.0\/24/,
    ],
    [
      "bad gateway",
      { name: "n", subnet: "10.9.0.0/24", gateway: "10.9.0.300" },
      "invalid",
      /not an IP address/,
    ],
    [
      "ip-range outside",
      { name: "n", subnet: "10.9.0.0/24", ipRange: "10.9.1.0/25" },
      "invalid",
      /ip-range 10.9.1.0\/25 is outside/,
    ],
    [
      "overlap",
      { name: "n", subnet: "10.1.0.0/16" },
      "forbidden",
      /subnet 10.1.0.0\/16 overlaps network "web" \(10.1.0.0\/24\)/,
    ],
    ["unknown driver", { name: "n", driver: "nope" }, "invalid", /unknown driver "nope"/],
    [
      "unknown option",
      { name: "n", options: { "bogus.key": "x" } },
      "invalid",
      /unknown option "bogus.key"/,
    ],
    [
      "bad mtu",
      { name: "n", options: { "com.docker.network.driver.mtu": "10" } },
      "invalid",
      /MTU/,
    ],
    ["gateway without subnet", { name: "n", gateway: "10.1.0.1" }, "invalid", /needs a subnet/],
  ];
  for (const [label, opts, kind, re] of cases) {
    await t.step(label, async () => {
      await rejects(ctl.createNetwork(opts), kind, /^Cannot create network ".*": /);
      await rejects(ctl.createNetwork(opts), kind, re);
    });
  }
  await t.step("nothing was stored or allocated by the failures", async () => {
    assert.deepEqual(store.list("network").map((n) => n.name), ["web"]);
    // the pool a failed request took is free again: 172.17.0.0/16 is still the first pick
    const n = await ctl.createNetwork({ name: "auto" });
    assert.equal(n.ipv4[0].subnet, "172.17.0.0/16");
    assert.equal(n.ipv4[0].gateway, "172.17.0.1");
  });
});

Deno.test("Controller lifecycle rules mirror libnetwork's", async (t) => {
  const { ctl } = fakeController();
  await ctl.createNetwork({ name: "none", driver: "null" });
  await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  await ctl.createSandbox({ name: "a" });
  await ctl.createSandbox({ name: "b" });
  await t.step("a second null network is refused", async () => {
    await rejects(
      ctl.createNetwork({ name: "none2", driver: "null" }),
      "forbidden",
      /only one instance of "null"/,
    );
  });
  await t.step("the null network cannot be removed", async () => {
    await rejects(
      ctl.removeNetwork("none"),
      "forbidden",
      /pre-defined network and cannot be removed/,
    );
  });
  await t.step("connect gives the first free address after the gateway", async () => {
    const ep = await ctl.connect("web", "a");
    assert.equal(ep.ipv4, "10.1.0.2/24");
    assert.equal(ep.gateway, "10.1.0.1");
    assert.equal(ep.ifname, "eth0");
    assert.equal(ep.mac, "02:42:0a:01:00:02");
  });
  await t.step("connecting twice is refused", async () => {
    await rejects(
      ctl.connect("web", "a"),
      "forbidden",
      /endpoint with name a already exists in network web/,
    );
  });
  await t.step("a static address in use is refused", async () => {
    await rejects(ctl.connect("web", "b", { ipv4: "10.1.0.2" }), "forbidden", /already in use/);
  });
  await t.step("a static address outside the subnet is refused", async () => {
    await rejects(
      ctl.connect("web", "b", { ipv4: "10.2.0.9" }),
      "invalid",
      /outside subnet 10.1.0.0\/24/,
    );
  });
  await t.step("the network and broadcast addresses are refused", async () => {
    await rejects(ctl.connect("web", "b", { ipv4: "10.1.0.0" }), "invalid", /network address/);
    await rejects(ctl.connect("web", "b", { ipv4: "10.1.0.255" }), "invalid", /broadcast address/);
  });
  await t.step(
    "a static address on a network without a user subnet is refused (Docker 20.10)",
    async () => {
      await ctl.createNetwork({ name: "auto" });
      await rejects(
        ctl.connect("auto", "b", { ipv4: "172.17.0.9" }),
        "invalid",
        /user configured subnets/,
      );
    },
  );
  await t.step("a sandbox on none cannot join another network", async () => {
    await ctl.createSandbox({ name: "lonely" });
    await ctl.connect("none", "lonely");
    await rejects(ctl.connect("web", "lonely"), "forbidden", /private \(none\) mode/);
  });
  await t.step("unknown objects are not-found errors", async () => {
    await rejects(ctl.connect("nope", "a"), "not-found", /network "nope" not found/);
    await rejects(ctl.connect("web", "nope"), "not-found", /sandbox "nope" not found/);
    await rejects(ctl.removeNetwork("nope"), "not-found", /network "nope" not found/);
    await rejects(ctl.removeSandbox("nope"), "not-found", /sandbox "nope" not found/);
  });
  await t.step("disconnecting when not connected is refused", async () => {
    await rejects(
      ctl.disconnect("web", "b"),
      "forbidden",
      /sandbox b is not connected to network web/,
    );
  });
  await t.step("removing a network with endpoints is refused", async () => {
    await rejects(ctl.removeNetwork("web"), "forbidden", /has active endpoints \(a\)/);
  });
  await t.step("a released address is reused first", async () => {
    await ctl.connect("web", "b");
    await ctl.disconnect("web", "a");
    const again = await ctl.connect("web", "a");
    assert.equal(again.ipv4, "10.1.0.2/24");
  });
  await t.step("a duplicate sandbox name is a conflict", async () => {
    await rejects(
      ctl.createSandbox({ name: "a" }),
      "conflict",
      /sandbox with name a already exists/,
    );
    await rejects(
      ctl.createSandbox({ name: "x", hostname: "-bad-" }),
      "invalid",
      /invalid hostname/,
    );
  });
  await t.step("networks can be found by id prefix", () => {
    const web = ctl.inspectNetwork("web");
    assert.equal(ctl.inspectNetwork(web.id.slice(0, 12)).name, "web");
    assert.deepEqual(web.endpoints.map((e) => e.sandboxName).sort(), ["a", "b"]);
  });
});

Deno.test("sandboxes are found as networks are: name, id, unique id prefix; an ambiguous prefix is refused", async () => {
  const { ctl } = fakeController();
  await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  // 17 sandboxes: two of them share the first hex digit of their id
  const all = [];
  for (let i = 0; i < 17; i++) all.push(await ctl.createSandbox({ name: `s${i}` }));
  const first = all[0];
  assert.equal(ctl.inspectSandbox(first.id).name, "s0");
  assert.equal(ctl.inspectSandbox(first.id.slice(0, 12)).name, "s0");
  const shared = all.map((s) => s.id[0]).find((c, i, ids) => ids.indexOf(c) !== i)!;
  assert.throws(
    () => ctl.inspectSandbox(shared),
    (e: unknown) => {
      assert.ok(e instanceof CnmError && e.kind === "invalid", `${e}`);
      assert.equal(e.message, `sandbox id prefix "${shared}" matches several sandboxes`);
      return true;
    },
  );
  await rejects(
    ctl.removeSandbox(shared),
    "invalid",
    new RegExp(
      `^Cannot remove sandbox "${shared}": sandbox id prefix "${shared}" matches several sandboxes$`,
    ),
  );
  await rejects(ctl.connect("web", shared), "invalid", /matches several sandboxes/);
  assert.equal(ctl.listSandboxes().length, 17, "nothing was removed");
  // a name wins over an id prefix, as for networks
  await ctl.createSandbox({ name: shared });
  assert.equal(ctl.inspectSandbox(shared).name, shared);
});

Deno.test("Controller.connect() orders interfaces and picks the default route like Endpoint.Less", async () => {
  const { ctl, runner, fs } = fakeController();
  await ctl.createNetwork({ name: "zeta", subnet: "10.1.0.0/24" });
  await ctl.createNetwork({ name: "alpha", subnet: "10.2.0.0/24" });
  await ctl.createNetwork({ name: "inner", subnet: "10.3.0.0/24", internal: true });
  const sb = await ctl.createSandbox({ name: "s", hostname: "web1" });
  await ctl.connect("inner", "s");
  await ctl.connect("zeta", "s");
  runner.calls.length = 0;
  await ctl.connect("alpha", "s");
  const view = ctl.inspectSandbox("s");
  assert.deepEqual(view.endpointDetails.map((e) => [e.networkName, e.ifname]), [
    ["inner", "eth0"],
    ["zeta", "eth1"],
    ["alpha", "eth2"],
  ]);
  assert.equal(view.endpointDetails[0].gateway, undefined, "internal: no gateway");
  // alpha sorts before zeta, so it takes the default route
  assert.match(runner.transcript(), /route replace default via 10\.2\.0\.1 dev eth2/);
  const hosts = fs.files.get(`/etc/netns/${sb.netnsName}/hosts`)!;
  assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  for (const ip of ["10.3.0.2", "10.1.0.2", "10.2.0.2"]) {
    assert.match(hosts, new RegExp(`^${ip}\tweb1$`, "m"));
  }
  assert.equal(fs.files.get(`/etc/netns/${sb.netnsName}/resolv.conf`), "nameserver 192.0.2.53\n");
  runner.calls.length = 0;
  await ctl.disconnect("alpha", "s");
  assert.match(runner.transcript(), /route replace default via 10\.1\.0\.1 dev eth1/);
  assert.equal(nextIfname("eth", ["eth0", "eth2"]), "eth1");
});

Deno.test("Controller.connect() rolls back every step when the kernel fails halfway", async (t) => {
  for (
    const [label, match] of [
      ["creating the interface in the sandbox", /netns t-.* name eth0/],
      ["addressing it inside the sandbox", /addr replace 10\.1\.0\.2\/24 dev eth0/],
    ] as const
  ) {
    await t.step(label, async () => {
      let armed = false;
      const { ctl, runner, store } = fakeController((cmd) => armed && match.test(cmd.stdin ?? ""));
      await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
      await ctl.createSandbox({ name: "a" });
      armed = true;
      runner.calls.length = 0;
      await rejects(
        ctl.connect("web", "a"),
        "kernel",
        /^Cannot connect sandbox "a" to network "web": Command/,
      );
      // the veth pair made by join was deleted again, from one end or the other
      const veth = /link add name (veth[0-9a-f]{7})/.exec(runner.transcript())![1];
      assert.match(runner.transcript(), new RegExp(`link del dev (${veth}|eth0)`));
      assert.equal(store.list("endpoint").length, 0);
      assert.deepEqual(store.list("sandbox")[0].endpoints, []);
      armed = false;
      const ep = await ctl.connect("web", "a");
      assert.equal(ep.ipv4, "10.1.0.2/24", "the address was released by the rollback");
    });
  }
  await t.step("a failed network create leaves no bridge and no record", async () => {
    const { ctl, runner, store } = fakeController((cmd) => cmd.argv.includes("nft"));
    await rejects(ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" }), "kernel", /nft/);
    assert.match(runner.transcript(), /link del dev br-/);
    assert.equal(store.list("network").length, 0);
  });
  await t.step("a failed sandbox create removes the namespace and its files", async () => {
    const { ctl, runner, store, fs } = fakeController((cmd) => (cmd.stdin ?? "").includes("lo up"));
    await rejects(ctl.createSandbox({ name: "a" }), "kernel", /Cannot create sandbox "a"/);
    assert.match(runner.transcript(), /ip netns del t-[0-9a-f]{8}-[0-9a-f]{12}/);
    assert.equal(store.list("sandbox").length, 0);
    assert.equal(fs.files.size, 0);
  });
});

Deno.test("Controller.createNetwork() refuses an existing bridge of a generated name and leaves it alone", async () => {
  const { ctl, runner, store } = fakeController();
  // The kernel's answer when the first line of an `ip -batch` meets an existing link.
  const real = runner.run.bind(runner);
  runner.run = (cmd) => {
    if (!/type bridge/.test(cmd.stdin ?? "")) return real(cmd);
    runner.calls.push({ argv: cmd.argv, stdin: cmd.stdin });
    const stderr = "RTNETLINK answers: File exists\nCommand failed -:1\n";
    return Promise.reject(new KernelCommandError(cmd.argv, 2, stderr));
  };
  await rejects(
    ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" }),
    "forbidden",
    /bridge br-[0-9a-f]{12} already exists/,
  );
  assert.doesNotMatch(runner.transcript(), /link del dev br-/, "somebody's bridge is not deleted");
  assert.equal(store.list("network").length, 0);
});

Deno.test("Controller serializes 50 concurrent connects: 50 distinct addresses", async () => {
  const { ctl } = fakeController();
  await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  await Promise.all(Array.from({ length: 50 }, (_, i) => ctl.createSandbox({ name: `s${i}` })));
  const endpoints = await Promise.all(
    Array.from({ length: 50 }, (_, i) => ctl.connect("web", `s${i}`)),
  );
  assert.equal(new Set(endpoints.map((e) => e.ipv4)).size, 50);
});

Deno.test("Controller.createNetwork() holds a library caller to the label and option limits", async () => {
  const { ctl, runner, store } = fakeController();
  const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
  await rejects(
    ctl.createNetwork({ name: "web", labels }),
    "invalid",
    /65 labels, the limit is 64/,
  );
  await rejects(
    ctl.createNetwork({ name: "web", options: { k: "v".repeat(4097) } }),
    "invalid",
    /the value of option "k" is 4097 bytes, the limit is 4096/,
  );
  assert.equal(runner.calls.length, 0, "refused before any kernel work");
  assert.equal(store.list("network").length, 0);
  // exactly at the limits: accepted
  const at = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, "v"]));
  await ctl.createNetwork({ name: "web", labels: { ...at, k0: "v".repeat(4096) } });
});
