/**
 * Unit tests of the daemon faults (no root): each wrapper, around a real DnsService (no
 * listener is opened: no sandbox is added) or a recording resolver, misbehaves as its
 * description says, and the healthy service does not.
 */
import assert from "node:assert/strict";
import type { SandboxResolver } from "../impl/controller/controller.ts";
import { DnsService } from "../impl/dns/service.ts";
import type { DnsEndpoint } from "../impl/dns/records.ts";
import {
  crossNetworkLeak,
  DAEMON_FAULT_NAMES,
  DAEMON_FAULTS,
  daemonFault,
  nextIpv4,
  notRearmed,
  staleRecords,
  UnknownFaultError,
  wrongAnswer,
} from "./test_faults.ts";
import { FaultyDaemonUsageError, parseFaultyDaemonArgs } from "./faulty_daemon.ts";

function ep(sandboxId: string, networkId: string, ipv4: string, aliases: string[] = []) {
  return {
    sandboxId,
    sandboxName: sandboxId,
    hostname: `${sandboxId}-host`,
    networkId,
    networkName: networkId,
    internal: false,
    aliases,
    ipv4,
  } satisfies DnsEndpoint;
}

/** What `sandboxId` gets for `name` (IPv4 addresses), or undefined for NXDOMAIN. */
function resolve(svc: DnsService, sandboxId: string, name: string): string[] | undefined {
  return svc.records.viewOf(sandboxId).resolve(name)?.v4;
}

/** Runs `fn` with a healthy service and the same service behind `wrap`. */
async function withService(
  wrap: ((r: SandboxResolver) => SandboxResolver) | undefined,
  fn: (svc: DnsService, r: SandboxResolver) => void | Promise<void>,
) {
  const svc = new DnsService({ upstreams: [] });
  try {
    await fn(svc, wrap ? wrap(svc) : svc);
  } finally {
    await svc.close();
  }
}

/** Two networks: a1, a2 on A; b1 on B. */
function twoNetworks(r: SandboxResolver) {
  r.upsertEndpoint(ep("a1", "A", "10.1.0.2", ["web"]));
  r.upsertEndpoint(ep("a2", "A", "10.1.0.3"));
  r.upsertEndpoint(ep("b1", "B", "10.2.0.2"));
}

Deno.test("faults: the names, each known and described; unknown names are refused", () => {
  assert.deepEqual(DAEMON_FAULT_NAMES, [
    "dns-cross-network-leak",
    "dns-wrong-answer",
    "dns-stale-record",
    "dns-not-rearmed",
  ]);
  assert.deepEqual(DAEMON_FAULTS.map((f) => f.name), [...DAEMON_FAULT_NAMES]);
  for (const name of DAEMON_FAULT_NAMES) {
    const f = daemonFault(name);
    assert.ok(f.breaks && f.modelledOn, name);
    assert.ok(f.hooks().wrapResolver, `${name} wraps the resolver`);
  }
  assert.throws(() => daemonFault("dns-all-networks"), UnknownFaultError);
});

Deno.test("healthy resolver (control): names are scoped, right, and go with their endpoint", async () => {
  await withService(undefined, (svc, r) => {
    twoNetworks(r);
    assert.deepEqual(resolve(svc, "a2", "a1"), ["10.1.0.2"]);
    assert.equal(resolve(svc, "a2", "b1"), undefined);
    assert.equal(resolve(svc, "b1", "a1"), undefined);
    r.removeEndpoint("a1", "A");
    assert.equal(resolve(svc, "a2", "a1"), undefined);
  });
});

Deno.test("dns-cross-network-leak: a sandbox resolves names of networks it is not on", async () => {
  await withService(crossNetworkLeak, async (svc, r) => {
    twoNetworks(r);
    // own names stay right
    assert.deepEqual(resolve(svc, "a2", "a1"), ["10.1.0.2"]);
    assert.deepEqual(resolve(svc, "a2", "web"), ["10.1.0.2"]);
    // the leak, both ways, aliases and qualified names included
    assert.deepEqual(resolve(svc, "a2", "b1"), ["10.2.0.2"]);
    assert.deepEqual(resolve(svc, "a2", "b1.b"), ["10.2.0.2"]);
    assert.deepEqual(resolve(svc, "b1", "a1"), ["10.1.0.2"]);
    assert.deepEqual(resolve(svc, "b1", "web"), ["10.1.0.2"]);
    // a network created later leaks too
    r.upsertEndpoint(ep("c1", "C", "10.3.0.2"));
    assert.deepEqual(resolve(svc, "a1", "c1"), ["10.3.0.2"]);
    assert.deepEqual(resolve(svc, "c1", "a2"), ["10.1.0.3"]);
    // a real connect replaces the phantom: the address is there
    r.upsertEndpoint(ep("a1", "B", "10.2.0.9"));
    assert.deepEqual(resolve(svc, "b1", "a1.b"), ["10.2.0.9"]);
    // the phantoms follow the sandbox: gone with it
    r.removeEndpoint("c1", "C");
    await r.removeSandbox("c1");
    assert.equal(resolve(svc, "a1", "c1"), undefined);
    assert.equal(svc.records.network("C")?.endpoints.size ?? 0, 0);
  });
});

Deno.test("dns-wrong-answer: names resolve to the IPv4 address plus one", async () => {
  assert.equal(nextIpv4("10.1.0.2"), "10.1.0.3");
  assert.equal(nextIpv4("10.1.0.255"), "10.1.0.0");
  assert.equal(nextIpv4("10.1.0.2/24"), "10.1.0.3/24");
  await withService(wrongAnswer, (svc, r) => {
    twoNetworks(r);
    r.upsertEndpoint({ ...ep("a3", "A", "10.1.0.4"), ipv6: "fd00:1::4" });
    assert.deepEqual(resolve(svc, "a2", "a1"), ["10.1.0.3"]);
    assert.deepEqual(resolve(svc, "a2", "web"), ["10.1.0.3"]);
    assert.deepEqual(resolve(svc, "a1", "a3"), ["10.1.0.5"]);
    assert.deepEqual(svc.records.viewOf("a1").resolve("a3")?.v6, ["fd00:1::4"]);
    // still scoped: only the address is wrong
    assert.equal(resolve(svc, "a2", "b1"), undefined);
  });
});

Deno.test("dns-stale-record: a departed sandbox still resolves from the others", async () => {
  await withService(staleRecords, async (svc, r) => {
    twoNetworks(r);
    // a1 disconnects (the controller's #disconnect), then is removed
    r.removeEndpoint("a1", "A");
    assert.deepEqual(resolve(svc, "a2", "a1"), ["10.1.0.2"]);
    assert.deepEqual(resolve(svc, "a2", "web"), ["10.1.0.2"]);
    await r.removeSandbox("a1");
    assert.deepEqual(resolve(svc, "a2", "a1"), ["10.1.0.2"]);
    assert.deepEqual(resolve(svc, "a2", "a1.a"), ["10.1.0.2"]);
  });
});

Deno.test("dns-stale-record: removeSandbox still closes the sandbox's listeners", async () => {
  const calls: string[] = [];
  const inner: SandboxResolver = {
    addSandbox: (id) => Promise.resolve(void calls.push(`add ${id}`)),
    removeSandbox: (id) => Promise.resolve(void calls.push(`remove ${id}`)),
    upsertEndpoint: (e) => void calls.push(`upsert ${e.sandboxId}/${e.networkId}`),
    removeEndpoint: (s, n) => void calls.push(`removeEndpoint ${s}/${n}`),
  };
  const r = staleRecords(inner);
  await r.addSandbox("s1", "/run/netns/x");
  r.upsertEndpoint(ep("s1", "A", "10.1.0.2"));
  r.removeEndpoint("s1", "A");
  await r.removeSandbox("s1");
  assert.deepEqual(calls, ["add s1", "upsert s1/A", "remove s1"]);
});

Deno.test("dns-not-rearmed: sandboxes armed while the controller opens get no listener", async () => {
  const added: string[] = [];
  const inner: SandboxResolver = {
    addSandbox: (id) => Promise.resolve(void added.push(id)),
    removeSandbox: () => Promise.resolve(),
    upsertEndpoint: () => {},
    removeEndpoint: () => {},
  };
  const hooks = notRearmed();
  const r = hooks.wrapResolver!(inner);
  // the restore (syncResolver) re-arms the sandboxes found in the store: dropped
  await r.addSandbox("old1", "/run/netns/old1");
  await r.addSandbox("old2", "/run/netns/old2");
  assert.deepEqual(added, []);
  assert.deepEqual([...hooks.skipped], ["old1", "old2"]);
  hooks.onControllerOpen!(undefined as never);
  // sandboxes created once the daemon serves are armed
  await r.addSandbox("new1", "/run/netns/new1");
  assert.deepEqual(added, ["new1"]);
  // each daemon process gets fresh state: a second start drops its restores again
  const again = daemonFault("dns-not-rearmed").hooks();
  await again.wrapResolver!(inner).addSandbox("new1", "/run/netns/new1");
  assert.deepEqual(added, ["new1"]);
});

Deno.test("faulty_daemon: --fault NAME -- then the daemon's own arguments", () => {
  const p = parseFaultyDaemonArgs(["--fault", "dns-wrong-answer", "--", "--netns", "h", "--debug"]);
  assert.equal(p.fault.name, "dns-wrong-answer");
  assert.deepEqual(p.daemonArgs, ["--netns", "h", "--debug"]);
  const q = parseFaultyDaemonArgs(["--fault=dns-stale-record", "--", "--", "x"]);
  assert.equal(q.fault.name, "dns-stale-record");
  assert.deepEqual(q.daemonArgs, ["--", "x"]);
  assert.deepEqual(parseFaultyDaemonArgs(["--fault", "dns-not-rearmed"]).daemonArgs, []);
  for (
    const bad of [
      [],
      ["--fault"],
      ["--", "--netns", "h"],
      ["--fault", "nope", "--"],
      ["--netns", "h"],
      ["--fault", "dns-wrong-answer", "--netns", "h"],
    ]
  ) {
    assert.throws(() => parseFaultyDaemonArgs(bad), FaultyDaemonUsageError, bad.join(" "));
  }
});
