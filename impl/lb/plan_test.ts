import assert from "node:assert/strict";
import { lbSandboxScript, type LbService, lbTableScript, vipAddLine, vipDelLine } from "./plan.ts";

/** Compares with testdata/NAME.golden; UPDATE_GOLDEN=1 rewrites it. */
async function golden(name: string, actual: string) {
  const path = new URL(`./testdata/${name}.golden`, import.meta.url);
  if (Deno.env.get("UPDATE_GOLDEN")) await Deno.writeTextFile(path, actual);
  assert.equal(actual, await Deno.readTextFile(path));
}

const web: LbService = {
  id: "aaaaaaaaaaaa" + "0".repeat(52),
  name: "web",
  vip: "10.1.0.3",
  ports: [{ port: 80, protocol: "tcp" }, { port: 53, protocol: "udp" }],
  backends: ["10.1.0.4", "10.1.0.5", "10.1.0.6"],
};

Deno.test("lbTableScript() balances each port over the backends with numgen, masquerades, rejects the rest", async () => {
  await golden("vip_numgen", lbTableScript("t_lb", [web]));
});

Deno.test("lbTableScript() uses jhash of the client address with client-IP affinity", async () => {
  await golden(
    "vip_affinity",
    lbTableScript("t_lb", [{ ...web, name: "sticky", affinity: "client-ip" }]),
  );
});

Deno.test("lbTableScript() gives a service with no backends no DNAT rule (the input chain rejects)", async () => {
  await golden("vip_empty", lbTableScript("t_lb", [{ ...web, backends: [] }]));
});

Deno.test("lbTableScript() removes the table when no VIP service is left", () => {
  assert.equal(lbTableScript("t_lb", []), "table inet t_lb\ndelete table inet t_lb\n");
});

Deno.test("vip lines put a /32 on the bridge and take it off", () => {
  assert.equal(vipAddLine("10.1.0.3", "br-x"), "addr replace 10.1.0.3/32 dev br-x");
  assert.equal(vipDelLine("10.1.0.3", "br-x"), "addr del 10.1.0.3/32 dev br-x");
});

Deno.test("lbSandboxScript() balances a backend's own connections in its output hook (hairpin)", async () => {
  await golden("sandbox_hairpin", lbSandboxScript("t_lb", [web]));
  assert.equal(
    lbSandboxScript("t_lb", [{ ...web, backends: [] }]),
    "table inet t_lb\ndelete table inet t_lb\n",
  );
});
