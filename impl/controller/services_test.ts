/**
 * Services (issue 8) with a fake kernel (no root): the rules, typed errors, rollback, the
 * nft program written, and what the resolver is told.
 */
import assert from "node:assert/strict";
import { fakeController as makeFake, rejectsKind } from "../../testing/fake_controller.ts";
import type { Command, FakeRunner } from "../kernel/mod.ts";
import type { DnsEndpoint } from "../dns/records.ts";
import type { SandboxResolver } from "./controller.ts";

function fakeResolver() {
  const dnsRecords = new Map<string, DnsEndpoint>();
  const r: SandboxResolver = {
    addSandbox: () => Promise.resolve(),
    removeSandbox: () => Promise.resolve(),
    upsertEndpoint: (ep) => void dnsRecords.set(`${ep.sandboxId}|${ep.networkId}`, ep),
    removeEndpoint: (s, n) => void dnsRecords.delete(`${s}|${n}`),
  };
  return { r, dnsRecords };
}

async function setup(fail?: (cmd: Command) => boolean) {
  const { r, dnsRecords } = fakeResolver();
  const { ctl, runner, store } = makeFake({
    resolver: r,
    respond: (cmd) => (fail?.(cmd) ? { code: 2, stderr: "injected" } : undefined),
  });
  const net = await ctl.createNetwork({ name: "web", subnet: "10.1.0.0/24" });
  await ctl.createNetwork({ name: "db", subnet: "10.2.0.0/24" });
  for (const n of ["a", "b", "c"]) {
    await ctl.createSandbox({ name: n });
    await ctl.connect("web", n, n === "c" ? { aliases: ["taken"] } : {});
  }
  await ctl.createSandbox({ name: "lonely" });
  return { ctl, runner, store, dnsRecords, net };
}

const rejects = rejectsKind;

/** The last nft script written. */
function lastNft(runner: FakeRunner): string {
  const nft = runner.calls.filter((c) => c.argv.includes("nft"));
  return nft[nft.length - 1]?.stdin ?? "";
}

Deno.test("createService() refuses bad input with typed one-line errors, leaving nothing", async () => {
  const { ctl, store } = await setup();
  await ctl.createService({ name: "svc", network: "web" });
  await rejects(ctl.createService({ name: "svc", network: "db" }), "conflict", /already exists/);
  await rejects(ctl.createService({ name: "a", network: "web" }), "conflict", /sandbox a/);
  await rejects(ctl.createService({ name: "TAKEN", network: "web" }), "conflict", /sandbox c/);
  await rejects(ctl.createService({ name: "x", network: "nope" }), "not-found", /"nope"/);
  await rejects(
    ctl.createService({ name: "x", network: "web", mode: "ipvs" }),
    "invalid",
    /invalid mode "ipvs"/,
  );
  await rejects(
    ctl.createService({ name: "x", network: "web", ports: [{ port: 70000 }] }),
    "invalid",
    /port 70000 is out of range/,
  );
  await rejects(
    ctl.createService({ name: "x", network: "web", ports: [{ port: 80, protocol: "sctp" }] }),
    "invalid",
    /invalid protocol "sctp"/,
  );
  await rejects(
    ctl.createService({ name: "x", network: "web", affinity: "cookie" }),
    "invalid",
    /invalid affinity/,
  );
  assert.deepEqual(store.list("service").map((s) => s.name), ["svc"]);
});

Deno.test("backends: unknown service or sandbox is not-found, another network forbidden", async () => {
  const { ctl } = await setup();
  await ctl.createService({ name: "svc", network: "web" });
  await rejects(ctl.addBackend("nope", "a"), "not-found", /service "nope"/);
  await rejects(ctl.addBackend("svc", "ghost"), "not-found", /sandbox "ghost"/);
  await rejects(ctl.addBackend("svc", "lonely"), "forbidden", /not connected to network web/);
  await rejects(ctl.removeBackend("svc", "a"), "not-found", /not a backend/);
  await rejects(ctl.removeService("nope"), "not-found", /service "nope"/);
});

Deno.test("a VIP service: VIP from the IPAM on the bridge, numgen map over the backends, names", async () => {
  const { ctl, runner, dnsRecords, net, store } = await setup();
  const svc = await ctl.createService({
    name: "svc",
    network: "web",
    ports: [{ port: 80 }, { port: 53, protocol: "udp" }],
  });
  assert.equal(svc.vip, "10.1.0.5");
  assert.ok(
    runner.calls.some((c) =>
      c.stdin?.includes(`addr replace 10.1.0.5/32 dev br-${net.id.slice(0, 12)}`)
    ),
  );
  assert.equal(dnsRecords.get(`svc:${svc.id}|${net.id}`)?.ipv4, "10.1.0.5");
  await ctl.addBackend("svc", "a");
  await ctl.addBackend("svc", "b");
  await ctl.addBackend("svc", "b"); // idempotent
  const script = lastNft(runner);
  assert.match(script, /table inet t_lb \{/);
  assert.match(
    script,
    /ip daddr 10\.1\.0\.5 tcp dport 80 dnat ip to numgen random mod 2 map \{ 0 : 10\.1\.0\.2, 1 : 10\.1\.0\.3 \}/,
  );
  const a = store.list("sandbox").find((s) => s.name === "a")!;
  assert.deepEqual(dnsRecords.get(`${a.id}|${net.id}`)?.aliases, ["tasks.svc"]);
  assert.equal(ctl.inspectService("svc").backendDetails.map((b) => b.sandbox).join(), "a,b");

  // a backend that disconnects leaves the service at once
  await ctl.disconnect("web", "b");
  assert.match(lastNft(runner), /numgen random mod 1 map \{ 0 : 10\.1\.0\.2 \}/);
  assert.equal(ctl.inspectService("svc").backends.length, 1);
  await ctl.removeBackend("svc", "a");
  assert.deepEqual(dnsRecords.get(`${a.id}|${net.id}`)?.aliases, []);
  assert.doesNotMatch(lastNft(runner), /dnat/);

  await rejects(ctl.removeNetwork("web"), "forbidden", /has services \(svc\)/);
  await ctl.removeService("svc");
  assert.equal(lastNft(runner), "table inet t_lb\ndelete table inet t_lb\n");
  assert.equal(dnsRecords.has(`svc:${svc.id}|${net.id}`), false);
});

Deno.test("a DNS-RR service: no VIP, the name and tasks.NAME are aliases of the backends", async () => {
  const { ctl, dnsRecords, net, store } = await setup();
  const svc = await ctl.createService({ name: "rr", network: "web", mode: "dnsrr" });
  assert.equal(svc.vip, undefined);
  await ctl.addBackend("rr", "a");
  const a = store.list("sandbox").find((s) => s.name === "a")!;
  assert.deepEqual(dnsRecords.get(`${a.id}|${net.id}`)?.aliases, ["tasks.rr", "rr"]);
  await ctl.removeSandbox("a");
  assert.deepEqual(ctl.inspectService("rr").backends, []);
});

Deno.test("createService() rolls back the VIP and the record when nft fails", async () => {
  let failNft = false;
  const { ctl, store } = await setup((cmd) => failNft && cmd.argv.includes("nft"));
  failNft = true;
  await rejects(ctl.createService({ name: "svc", network: "web" }), "kernel", /injected/);
  assert.deepEqual(store.list("service"), []);
  failNft = false;
  const svc = await ctl.createService({ name: "svc", network: "web" });
  assert.equal(svc.vip, "10.1.0.5", "the VIP was released");
});

Deno.test("connect() refuses a sandbox name, hostname or alias that is a service's name on that network", async () => {
  const { ctl, store } = await setup();
  await ctl.createService({ name: "api", network: "web" });
  await ctl.createSandbox({ name: "api" });
  await rejects(
    ctl.connect("web", "api"),
    "conflict",
    /name api is already used on network web by a service/,
  );
  await rejects(
    ctl.connect("web", "lonely", { aliases: ["API"] }),
    "conflict",
    /name API is already used/,
  );
  await ctl.createSandbox({ name: "h", hostname: "api" });
  await rejects(ctl.connect("web", "h"), "conflict", /name api is already used/);
  // nothing half-made, and the same names are fine on another network
  assert.equal(store.list("endpoint").filter((e) => e.name === "lonely").length, 0);
  await ctl.connect("db", "api");
});
