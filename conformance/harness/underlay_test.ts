import assert from "node:assert/strict";
import {
  createUnderlay,
  etcdArgv,
  etcdctlArgv,
  hostAddress,
  logTail,
  parseEndpointStatus,
  STORE_URL,
  UNDERLAY,
  underlayNames,
} from "./underlay.ts";

/** `etcdctl endpoint status -w json` from an underlay's etcd 3.4.23 (ids beyond 2^53). */
const STATUS = `[{"Endpoint":"http://203.0.113.254:2379","Status":{"header":` +
  `{"cluster_id":14077903948241107763,"member_id":2422302554136046812,"revision":1,` +
  `"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":2422302554136046812,` +
  `"raftIndex":4,"raftTerm":2,"raftAppliedIndex":4,"dbSizeInUse":16384}}]\n`;

Deno.test("hostAddress: hosts are .1 to .253; the store is .254", () => {
  assert.equal(hostAddress(1), "203.0.113.1");
  assert.equal(hostAddress(253), "203.0.113.253");
  for (const bad of [0, 254, -1, 1.5, NaN]) assert.throws(() => hostAddress(bad), RangeError);
  assert.equal(UNDERLAY.store, "203.0.113.254");
  assert.equal(STORE_URL, "http://203.0.113.254:2379");
});

Deno.test("underlayNames: every name carries the prefix; ports are distinct", () => {
  const n = underlayNames("cnmt-abc123", 3);
  assert.equal(n.netns, "cnmt-abc123-ul");
  assert.deepEqual(n.store, { netns: "cnmt-abc123-st", address: "203.0.113.254", port: "ulst" });
  assert.deepEqual(n.hosts.map((h) => [h.name, h.netns, h.address, h.port]), [
    ["h1", "cnmt-abc123-h1", "203.0.113.1", "ul1"],
    ["h2", "cnmt-abc123-h2", "203.0.113.2", "ul2"],
    ["h3", "cnmt-abc123-h3", "203.0.113.3", "ul3"],
  ]);
  const big = underlayNames("p", UNDERLAY.maxHosts);
  const ports = new Set([...big.hosts.map((h) => h.port), big.store.port]);
  assert.equal(ports.size, UNDERLAY.maxHosts + 1);
  assert.ok([...ports].every((p) => p.length <= 15), "interface names fit IFNAMSIZ");
  assert.throws(() => underlayNames("p", 0), /1 to 253 hosts, not 0/);
  assert.throws(() => underlayNames("p", 254), RangeError);
  for (const bad of ["", "-x", "a/b", "a b", "../x"]) {
    assert.throws(() => underlayNames(bad, 1), TypeError, bad);
  }
});

Deno.test("createUnderlay: bad options fail before anything is made", async () => {
  await assert.rejects(createUnderlay({ prefix: "a/b", hosts: 1 }), /invalid underlay prefix/);
  await assert.rejects(createUnderlay({ prefix: "cnmt-x", hosts: 0 }), RangeError);
});

Deno.test("etcdArgv: one member, clients on the underlay, peers on loopback, v2 on", () => {
  const argv = etcdArgv("cnmt-x-st", "/tmp/cnmt-x-etcd-1/data");
  assert.deepEqual(argv.slice(0, 5), ["ip", "netns", "exec", "cnmt-x-st", "etcd"]);
  const flag = (f: string) => argv[argv.indexOf(f) + 1];
  assert.equal(flag("--data-dir"), "/tmp/cnmt-x-etcd-1/data");
  assert.equal(flag("--listen-client-urls"), "http://203.0.113.254:2379");
  assert.equal(flag("--advertise-client-urls"), "http://203.0.113.254:2379");
  assert.equal(flag("--listen-peer-urls"), "http://127.0.0.1:2380");
  assert.equal(flag("--initial-cluster"), "s1=http://127.0.0.1:2380");
  assert.equal(flag("--initial-cluster-token"), "cnmt-x-st");
  assert.ok(argv.includes("--enable-v2=true"));
  assert.deepEqual(etcdctlArgv("cnmt-x-h1", STORE_URL, ["get", "k"]).slice(0, 7), [
    "ip",
    "netns",
    "exec",
    "cnmt-x-h1",
    "etcdctl",
    "--endpoints",
    STORE_URL,
  ]);
});

Deno.test("parseEndpointStatus: etcd's answer, ids as exact digits; anything else throws", () => {
  assert.deepEqual(parseEndpointStatus(STATUS), {
    endpoint: "http://203.0.113.254:2379",
    version: "3.4.23",
    clusterId: "14077903948241107763",
  });
  // a store that is down (etcdctl prints [] and fails), a proxy's empty 200, other JSON
  for (const bad of ["[]\n", "", "{}", '{"etcdserver":"3.4.23"}', '[{"Endpoint":"x"}]']) {
    assert.throws(() => parseEndpointStatus(bad), /not etcd's endpoint status/, bad);
  }
});

Deno.test("logTail: the last lines on one line", () => {
  assert.equal(logTail("a\n\nb\nc\nd\n"), "b | c | d");
  assert.equal(logTail("one\n", 3), "one");
  assert.equal(logTail(""), "(empty)");
  assert.ok(logTail("x".repeat(2000)).length <= 600);
});
