/**
 * Port publishing through the controller (connect --publish), with a fake kernel: the
 * driver gets the ports, the endpoint records them resolved, a taken port is refused with
 * nothing left behind, disconnect removes the rules.
 */
import assert from "node:assert/strict";
import { fakeController as makeFake } from "../../testing/fake_controller.ts";
import type { Command } from "../kernel/mod.ts";
import { CnmError } from "../model/errors.ts";
import { normalizePublish } from "./ports.ts";

function fakeController() {
  return makeFake({
    dns: ["192.0.2.53"],
    respond: (cmd: Command) => {
      if (cmd.argv.includes("/proc/sys/net/ipv4/ip_local_port_range")) {
        return { stdout: "32768\t60999\n" };
      }
      if (cmd.argv.join(" ").includes("nft -j -a list chain")) {
        // the rules of endpoint "a" (handle 7) and of another endpoint (handle 9)
        return {
          stdout: JSON.stringify({
            nftables: [
              { rule: { handle: 7, comment: ruleOwner.a } },
              { rule: { handle: 9, comment: "cnm net=x ep=y port" } },
            ],
          }),
        };
      }
      return undefined;
    },
  });
}
const ruleOwner: Record<string, string> = {};

Deno.test("normalizePublish() checks ports and defaults to tcp and an ephemeral host port", () => {
  assert.deepEqual(normalizePublish([{ containerPort: 80 }]), [
    { hostPort: 0, containerPort: 80, protocol: "tcp" },
  ]);
  assert.deepEqual(
    normalizePublish([{ hostIp: "127.0.0.1", hostPort: 53, containerPort: 53, protocol: "udp" }]),
    [{ hostIp: "127.0.0.1", hostPort: 53, containerPort: 53, protocol: "udp" }],
  );
  for (
    const [spec, re] of [
      [{ containerPort: 0 }, /container port 0/],
      [{ containerPort: 80, hostPort: 70000 }, /host port 70000/],
      [{ containerPort: 80, hostIp: "::1" }, /expected an IPv4 address/],
      [{ containerPort: 80, protocol: "sctp" }, /protocol sctp/],
    ] as const
  ) {
    assert.throws(() => normalizePublish([spec as never]), re);
  }
  assert.throws(
    () =>
      normalizePublish([{ hostPort: 80, containerPort: 1 }, { hostPort: 80, containerPort: 2 }]),
    /requested twice/,
  );
});

Deno.test("Controller.connect() publishes ports through the driver and records them", async (t) => {
  const { ctl, runner, store } = fakeController();
  await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  await ctl.createSandbox({ name: "a" });
  await ctl.createSandbox({ name: "b" });

  await t.step("DNAT rules, route_localnet, hairpin; ephemeral port resolved", async () => {
    runner.calls.length = 0;
    const ep = await ctl.connect("web", "a", {
      publish: [{ hostPort: 8080, containerPort: 80 }, { containerPort: 53, protocol: "udp" }],
    });
    ruleOwner.a = `cnm net=${ep.networkId.slice(0, 12)} ep=${ep.id.slice(0, 12)} port`;
    assert.deepEqual(ep.published, [
      { hostIp: "0.0.0.0", hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostIp: "0.0.0.0", hostPort: 32768, containerPort: 53, protocol: "udp" },
    ]);
    assert.deepEqual(store.get("endpoint", ep.id)?.published, ep.published);
    const text = runner.transcript();
    assert.match(text, /route_localnet=1/);
    assert.match(text, /fib daddr type local tcp dport 8080 dnat ip to 10\.1\.0\.2:80/);
    assert.match(text, /udp dport 32768 dnat ip to 10\.1\.0\.2:53/);
    assert.match(text, /type bridge_slave hairpin on/);
    const view = ctl.inspectSandbox("a");
    assert.deepEqual(view.endpointDetails[0].published, ep.published);
  });

  await t.step(
    "a host port already published is refused; nothing is left of the connect",
    async () => {
      runner.calls.length = 0;
      await assert.rejects(
        ctl.connect("web", "b", { publish: [{ hostPort: 8080, containerPort: 80 }] }),
        (e: unknown) => {
          assert.ok(e instanceof CnmError);
          assert.equal(e.kind, "forbidden");
          assert.match(
            e.message,
            /Bind for 0\.0\.0\.0:8080\/tcp failed: port is already allocated/,
          );
          return true;
        },
      );
      assert.match(runner.transcript(), /link del dev (veth[0-9a-f]{7}|eth0)/);
      assert.equal(store.list("endpoint").length, 1);
      assert.deepEqual(ctl.inspectSandbox("b").endpoints, []);
      // the address went back: the next connect gets it
      const ep = await ctl.connect("web", "b", {
        publish: [{ hostPort: 8081, containerPort: 80 }],
      });
      assert.equal(ep.ipv4, "10.1.0.3/24");
      assert.equal(ep.published?.[0].hostPort, 8081);
    },
  );

  await t.step("disconnect deletes exactly the endpoint's rules, in one transaction", async () => {
    runner.calls.length = 0;
    await ctl.disconnect("web", "a");
    const text = runner.transcript();
    assert.match(text, /delete rule inet t_bridge ports handle 7/);
    assert.ok(!/handle 9/.test(text), text);
    // the port is free again
    const ep = await ctl.connect("web", "a", { publish: [{ hostPort: 8080, containerPort: 80 }] });
    assert.equal(ep.published?.[0].hostPort, 8080);
  });

  await t.step("an internal network publishes no port", async () => {
    await ctl.createNetwork({ name: "int", subnet: "10.2.0.0/24", internal: true });
    await ctl.createSandbox({ name: "c" });
    await assert.rejects(
      ctl.connect("int", "c", { publish: [{ hostPort: 9000, containerPort: 80 }] }),
      /network int is internal: ports cannot be published/,
    );
    assert.deepEqual(ctl.inspectSandbox("c").endpoints, []);
  });
});
