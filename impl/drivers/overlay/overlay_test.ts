import assert from "node:assert/strict";
import { fakeController, rejectsKind } from "../../../testing/fake_controller.ts";

Deno.test("overlay without a global store: refused with one line saying why, nothing made", async () => {
  const { ctl, runner, store } = fakeController();
  assert.ok(ctl.driverNames.includes("overlay"), "the driver is known, so the reason can be told");
  await rejectsKind(
    ctl.createNetwork({ name: "ov", driver: "overlay" }),
    "forbidden",
    /^Cannot create network "ov": driver "overlay" makes multi-host networks and needs a global store: start the daemon with --store etcd:\/\/HOST:PORT --advertise-address IP$/,
  );
  assert.deepEqual(store.list("network"), []);
  assert.deepEqual(runner.calls, [], "no kernel command");
});
