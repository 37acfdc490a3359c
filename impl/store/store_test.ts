import assert from "node:assert/strict";
import { openStore } from "./store.ts";
import type { NetworkRecord } from "../model/objects.ts";

function net(id: string, name: string): NetworkRecord {
  return {
    id,
    name,
    driver: "bridge",
    scope: "local",
    internal: false,
    enableIpv6: false,
    options: {},
    labels: {},
    ipv4: [],
    ipv6: [],
    created: "2026-01-01T00:00:00Z",
  };
}

Deno.test("openStore() keeps records across a reopen, in insertion order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-store-" });
  try {
    const s = openStore(`${dir}/state.db`);
    s.transaction((tx) => {
      tx.put("network", net("b", "second"));
      tx.put("network", net("a", "first"));
    });
    s.transaction((tx) => tx.put("network", { ...net("b", "second"), internal: true }));
    s.close();
    const again = openStore(`${dir}/state.db`);
    assert.deepEqual(again.list("network").map((n) => n.name), ["second", "first"]);
    assert.equal(again.get("network", "b")?.internal, true);
    assert.equal(again.get("network", "zzz"), undefined);
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Store.transaction() writes nothing when the callback throws", () => {
  const s = openStore(":memory:");
  s.transaction((tx) => tx.put("network", net("a", "kept")));
  assert.throws(() =>
    s.transaction((tx) => {
      tx.delete("network", "a");
      tx.put("network", net("c", "half"));
      throw new Error("crash halfway");
    }), /crash halfway/);
  assert.deepEqual(s.list("network").map((n) => n.name), ["kept"]);
  s.close();
});

Deno.test("byName() and byIdPrefix() find records without a scan, and only of their kind", () => {
  const s = openStore(":memory:");
  s.transaction((tx) => {
    tx.put("network", net("a1b2", "web"));
    tx.put("network", net("a1c3", "db"));
    tx.put("network", net("ff00", "other"));
  });
  assert.deepEqual(s.byName("network", "db").map((n) => n.id), ["a1c3"]);
  assert.deepEqual(s.byName("network", "nothing"), []);
  assert.deepEqual(s.byName("sandbox", "db"), []);
  assert.deepEqual(s.byIdPrefix("network", "a1", 5).map((n) => n.id), ["a1b2", "a1c3"]);
  assert.deepEqual(s.byIdPrefix("network", "a1", 1).map((n) => n.id), ["a1b2"]);
  assert.deepEqual(s.byIdPrefix("network", "a1c", 5).map((n) => n.id), ["a1c3"]);
  assert.deepEqual(s.byIdPrefix("network", "b", 5), []);
  s.transaction((tx) => tx.put("network", { ...net("a1c3", "db2") }));
  assert.deepEqual(s.byName("network", "db"), [], "a rename moves the name");
  assert.deepEqual(s.byName("network", "db2").map((n) => n.id), ["a1c3"]);
  s.close();
});
