import assert from "node:assert/strict";
import {
  diffSnapshots,
  etcdDataDir,
  harnessItems,
  normaliseAddrs,
  normaliseIptablesSave,
  normaliseLinks,
  normaliseMounts,
  normaliseNftJson,
  normaliseRoutes,
  normaliseRules,
  normaliseSysctl,
  type NsSnapshot,
  processesOf,
  RUN_DIR,
  snapshotMachine,
  snapshotNetns,
  sysctlInterface,
  VOLATILE_SYSCTLS,
} from "./audit.ts";
import { exec, run } from "./exec.ts";

const DATA = new URL("./testdata/audit/", import.meta.url);
const read = (name: string) => Deno.readTextFileSync(new URL(name, DATA));
const snap = (items: string[], errors: string[] = []): NsSnapshot => ({
  source: "test",
  items: new Set(items),
  errors,
  ms: 0,
});
const diff = (a: string[], b: string[]) => diffSnapshots(snap(a), snap(b), "h");
const LINKS = (JSON.parse(read("links.json")) as { ifname: string }[]).map((l) => l.ifname);

Deno.test("normaliseNftJson: readable items, one per table/chain/rule/set/map/element", () => {
  const items = normaliseNftJson(read("nft.json"));
  for (
    const want of [
      "nft table inet t",
      "nft chain inet t forward type=filter hook=forward prio=0 policy=accept",
      'nft rule inet t forward: ip saddr @allowed counter accept comment "allow listed"',
      "nft rule inet t forward: iifname br0 oifname != br0 counter drop",
      "nft rule inet t pre: dnat family=ip addr=(tcp dport map @ports)",
      "nft set inet t allowed type=ipv4_addr",
      "nft set inet t allowed element 10.99.0.5",
      "nft map inet t ports type=inet_service map=ipv4_addr",
      "nft map inet t ports element 443 : 10.99.0.6",
      "nft rule ip nat POSTROUTING: oifname != br0 ip saddr 10.99.0.0/24 counter xt target MASQUERADE",
    ]
  ) assert.ok(items.includes(want), `missing ${want} in\n${items.join("\n")}`);
  assert.ok(!items.some((i) => /handle|packets|bytes/.test(i)), items.join("\n"));
});

Deno.test("nft: handles and counters make no difference (re-added rules, traffic, -s or not)", () => {
  const base = normaliseNftJson(read("nft.json"));
  assert.notEqual(read("nft.json"), read("nft_rehandled.json"));
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_rehandled.json"))), []);
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_stateless.json"))), []);
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_restored.json"))), []);
});

Deno.test("nft: a changed rule, an added map element, an added chain are each named", () => {
  const base = normaliseNftJson(read("nft.json"));
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_changed_rule.json"))), [
    "- h: nft rule inet t forward: iifname br0 oifname != br0 counter drop",
    "+ h: nft rule inet t forward: iifname br0 oifname != br0 counter reject type=icmpx expr=port-unreachable",
  ]);
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_map_element.json"))), [
    "+ h: nft map inet t ports element 8080 : 10.99.0.7",
  ]);
  assert.deepEqual(diff(base, normaliseNftJson(read("nft_added_chain.json"))), [
    "+ h: nft chain inet t leaked",
  ]);
});

Deno.test("nft: comments count, duplicate rules are numbered, objects' state is dropped", () => {
  const doc = (rules: unknown[], extra: unknown[] = []) =>
    JSON.stringify({
      nftables: [
        { table: { family: "ip", name: "x", handle: 1 } },
        ...rules.map((r, i) => ({
          rule: { family: "ip", table: "x", chain: "c", handle: i, ...r as object },
        })),
        ...extra,
      ],
    });
  const accept = { expr: [{ accept: null }] };
  assert.deepEqual(
    diff(normaliseNftJson(doc([accept])), normaliseNftJson(doc([{ ...accept, comment: "hi" }]))),
    ["- h: nft rule ip x c: accept", '+ h: nft rule ip x c: accept comment "hi"'],
  );
  assert.deepEqual(diff(normaliseNftJson(doc([accept])), normaliseNftJson(doc([accept, accept]))), [
    "+ h: nft rule ip x c: accept [copy 2]",
  ]);
  const objects = (packets: number, expires: number) => [
    { counter: { family: "ip", table: "x", name: "n", handle: 9, packets, bytes: packets * 60 } },
    { quota: { family: "ip", table: "x", name: "q", bytes: 1000, used: packets, inv: false } },
    {
      set: {
        family: "ip",
        table: "x",
        name: "s",
        type: "ipv4_addr",
        flags: ["timeout"],
        elem: [{ elem: { val: "10.0.0.1", timeout: 60, expires, counter: { packets, bytes: 1 } } }],
      },
    },
  ];
  const a = normaliseNftJson(doc([], objects(1, 50)));
  assert.deepEqual(diff(a, normaliseNftJson(doc([], objects(7, 20)))), []);
  assert.ok(a.includes("nft counter ip x n"), a.join("\n"));
  assert.ok(a.includes("nft quota ip x q bytes=1000 inv=false"), a.join("\n"));
  assert.ok(a.includes("nft set ip x s element 10.0.0.1 timeout=60 counter"), a.join("\n"));
});

Deno.test("nft: common expressions read close to nft syntax", () => {
  const items = normaliseNftJson(JSON.stringify({
    nftables: [{
      rule: {
        family: "inet",
        table: "t",
        chain: "c",
        expr: [
          {
            match: { op: "in", left: { ct: { key: "state" } }, right: ["established", "related"] },
          },
          {
            match: {
              op: "==",
              left: {
                concat: [{ meta: { key: "l4proto" } }, {
                  payload: { protocol: "th", field: "dport" },
                }],
              },
              right: { set: [{ concat: ["tcp", { range: [80, 90] }] }] },
            },
          },
          {
            vmap: {
              key: { meta: { key: "iifname" } },
              data: { set: [["br0", { jump: { target: "from-br0" } }]] },
            },
          },
        ],
      },
    }],
  }));
  assert.deepEqual(items, [
    "nft rule inet t c: ct state in { established, related } meta l4proto . th dport { tcp . 80-90 } iifname vmap { { br0, jump from-br0 } }",
  ]);
});

Deno.test("iptables-save: counters and comment lines make no difference; an extra rule is named", () => {
  const a = normaliseIptablesSave(read("iptables.txt"), "ipv4");
  assert.deepEqual(diff(a, normaliseIptablesSave(read("iptables_counters.txt"), "ipv4")), []);
  assert.ok(
    a.includes('iptables filter -A FORWARD -i br0 -m comment --comment "fw rule" -j ACCEPT'),
  );
  assert.ok(a.includes("iptables nat :POSTROUTING ACCEPT"), a.join("\n"));
  assert.ok(!a.some((i) => /\[\d+:\d+\]|#|COMMIT/.test(i)), a.join("\n"));
  assert.deepEqual(diff(a, normaliseIptablesSave(read("iptables_extra.txt"), "ipv4")), [
    "+ h: iptables filter -A FORWARD -o br0 -j DROP",
  ]);
  assert.deepEqual(normaliseIptablesSave(read("ip6tables.txt"), "ipv6").slice(-1), [
    "ip6tables filter -A INPUT -p tcp -m tcp --dport 22 -j DROP",
  ]);
});

Deno.test("links, addresses: readable; IPv6 link-local addresses left out; an extra address is named", () => {
  assert.deepEqual(normaliseLinks(read("links.json")), [
    "link lo kind=loopback mtu=65536 up",
    "link br0 kind=bridge mtu=1500 up",
    "link vb kind=veth mtu=1500 up",
    "link va kind=veth master=br0 mtu=1500 up",
  ]);
  const a = normaliseAddrs(read("addrs.json"));
  assert.deepEqual(a, [
    "addr lo 127.0.0.1/8",
    "addr lo ::1/128",
    "addr br0 10.99.0.1/24",
    "addr br0 fd00:99::1/64",
  ]);
  assert.deepEqual(diff(a, normaliseAddrs(read("addrs_extra.json"))), [
    "+ h: addr br0 10.99.0.9/24",
  ]);
});

Deno.test("routes (all tables) and rules: readable; volatile fields dropped; an extra route is named", () => {
  const r4 = normaliseRoutes(read("routes4.json"), "ipv4");
  assert.ok(r4.includes("route4 table main: 10.98.0.0/24 via 10.99.0.2 dev br0"), r4.join("\n"));
  assert.ok(r4.includes("route4 table 100: 10.97.0.0/24 dev br0 scope link"), r4.join("\n"));
  assert.ok(
    r4.includes(
      "route4 table local: local 10.99.0.1 dev br0 proto kernel scope host src 10.99.0.1",
    ),
  );
  assert.deepEqual(diff(r4, normaliseRoutes(read("routes4_extra.json"), "ipv4")), [
    "+ h: route4 table main: 10.96.0.0/16 via 10.99.0.3 dev br0",
  ]);
  const r6 = normaliseRoutes(read("routes6.json"), "ipv6");
  assert.ok(
    r6.includes("route6 table main: fd00:98::/64 via fd00:99::2 dev br0 metric 1024 pref medium"),
  );
  assert.ok(!r6.some((r) => r.includes(": local ")), r6.join("\n"));
  const expiring = (expires: number, flags: string[]) =>
    JSON.stringify([{
      dst: "default",
      gateway: "fe80::1",
      dev: "eth0",
      protocol: "ra",
      metric: 1024,
      expires,
      flags,
    }]);
  assert.deepEqual(
    normaliseRoutes(expiring(1700, ["linkdown"]), "ipv6"),
    normaliseRoutes(expiring(1500, []), "ipv6"),
  );
  assert.deepEqual(
    normaliseRules(read("rules4.txt"), "ipv4")[1],
    "rule4 1000: from 10.99.0.0/24 lookup 100",
  );
  assert.deepEqual(normaliseRules(read("rules6.txt"), "ipv6"), [
    "rule6 0: from all lookup local",
    "rule6 32766: from all lookup main",
  ]);
});

Deno.test("sysctl: both input formats; volatile and other interfaces' keys dropped; a change is named", () => {
  const grep = normaliseSysctl(read("sysctl.txt"), LINKS);
  const sysctl = normaliseSysctl(read("sysctl_a_format.txt"), LINKS);
  // sysctl(8) skips deprecated keys; grep skips empty values
  const gap = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
  assert.ok(
    gap(grep, sysctl).every((x) => /\.(base_reachable|retrans)_time=/.test(x)),
    gap(grep, sysctl).join("\n"),
  );
  assert.deepEqual(gap(sysctl, grep), ["sysctl net.ipv4.ip_local_reserved_ports="]);
  for (const k of VOLATILE_SYSCTLS) assert.ok(!grep.some((i) => i.startsWith(`sysctl ${k}=`)));
  assert.ok(grep.includes("sysctl net.ipv4.tcp_rmem=4096 131072 33554432"));
  assert.ok(grep.includes("sysctl net.ipv4.conf.br0.forwarding=0"));
  const none = normaliseSysctl(read("sysctl.txt"), []);
  assert.ok(
    !none.some((i) => sysctlInterface(i.slice(7).split("=")[0])),
    "per-interface keys with no links",
  );
  assert.ok(none.includes("sysctl net.ipv4.conf.all.forwarding=0"));
  const links = normaliseLinks(read("links.json"));
  const changed = diff([...links, ...grep], [
    ...links,
    ...normaliseSysctl(read("sysctl_forward.txt"), LINKS),
  ]);
  for (
    const want of [
      "- h: sysctl net.ipv4.ip_forward=0",
      "+ h: sysctl net.ipv4.ip_forward=1",
      "+ h: sysctl net.ipv4.conf.all.forwarding=1",
      "+ h: sysctl net.ipv4.conf.br0.forwarding=1",
    ]
  ) assert.ok(changed.includes(want), `${want} not in\n${changed.join("\n")}`);
  assert.ok(!changed.some((l) => l.includes("nf_conntrack_count")));
  assert.equal(sysctlInterface("net.ipv4.conf.eth0/100.rp_filter"), "eth0.100");
  assert.equal(
    normaliseSysctl("/proc/sys/net/ipv4/conf/eth0.100/rp_filter:1\n", ["eth0.100"])[0],
    "sysctl net.ipv4.conf.eth0/100.rp_filter=1",
  );
});

Deno.test("diffSnapshots: per-interface sysctls only for links on both sides; new keys marked", () => {
  const before = ["link a kind=veth mtu=1500 up", "sysctl net.ipv4.conf.a.proxy_arp=0"];
  assert.deepEqual(
    diff(before, [
      "link a kind=veth mtu=1500 up",
      "sysctl net.ipv4.conf.a.proxy_arp=1",
      "link b kind=veth mtu=1500 up",
      "sysctl net.ipv4.conf.b.proxy_arp=0",
      "sysctl net.bridge.bridge-nf-call-iptables=1",
    ]),
    [
      "+ h: link b kind=veth mtu=1500 up",
      "+ h: sysctl net.bridge.bridge-nf-call-iptables=1 (new key: a module was loaded)",
      "- h: sysctl net.ipv4.conf.a.proxy_arp=0",
      "+ h: sysctl net.ipv4.conf.a.proxy_arp=1",
    ],
  );
  assert.deepEqual(
    diffSnapshots(snap([]), snap([], ["nft: nft -j -s list ruleset: exit 1: boom"]), "h"),
    ["! h: could not read nft: nft -j -s list ruleset: exit 1: boom"],
  );
});

Deno.test("diffSnapshots: shared places count only the run's own names; allow list", () => {
  const p = "cnmt-aaaaaa";
  const before = ["netns other", "mount / ext4"];
  const after = [
    ...before,
    "netns cnmt-bbbbbb-h1", // another run
    "netns someone-elses", // not named by any run: not ours either
    `netns ${p}-h1`,
    `netns ${p}-h1-leak`,
    `mount /run/netns/${p}-h1 nsfs`,
    "mount /run/netns/cnmt-bbbbbb-h1 nsfs",
    "mount /run/docker/netns/abc nsfs",
    `/etc/netns/${p}-h1`,
    "/etc/netns/cnmt-bbbbbb-h1",
    `tmp /tmp/${p}-h1-x`,
    "tmp /tmp/cnmt-probe-1",
    "link cnmt-bbbbbb0 kind=veth mtu=1500 up",
    "link docker9 kind=bridge mtu=1500 up",
  ];
  const allow = harnessItems({ netns: [`${p}-h1`], dirs: [`/tmp/${p}-h1-x/`] });
  assert.deepEqual(diffSnapshots(snap(before), snap(after), "machine", { prefix: p, allow }), [
    `+ machine: /etc/netns/${p}-h1`,
    "+ machine: link docker9 kind=bridge mtu=1500 up",
    "+ machine: mount /run/docker/netns/abc nsfs",
    `+ machine: netns ${p}-h1-leak`,
  ]);
  // "mount" among the kinds: only the run's own mounts count
  assert.deepEqual(
    diffSnapshots(snap(before), snap(after), "machine", {
      prefix: p,
      kinds: ["netns", "/etc/netns", "tmp", "mount"],
    }),
    [
      `+ machine: /etc/netns/${p}-h1`,
      "+ machine: link docker9 kind=bridge mtu=1500 up",
      `+ machine: mount /run/netns/${p}-h1 nsfs`,
      `+ machine: netns ${p}-h1`,
      `+ machine: netns ${p}-h1-leak`,
      `+ machine: tmp /tmp/${p}-h1-x`,
    ],
  );
  // vanished items are residue too
  assert.deepEqual(diffSnapshots(snap(before), snap(["netns other"]), "machine", { prefix: p }), [
    "- machine: mount / ext4",
  ]);
  assert.deepEqual(
    normaliseMounts("nsfs /run/netns/x nsfs rw 0 0\n/dev/vda /run/netns ext4 rw 0 0\n"),
    [
      "mount /run/netns/x nsfs",
    ],
  );
});

Deno.test("etcdDataDir: etcd's data dir in either flag spelling; other programs none", () => {
  const d = "/tmp/cnmt-aaaaaa-etcd-x1/data";
  assert.equal(etcdDataDir(["etcd", "--name", "s1", "--data-dir", d]), d);
  assert.equal(etcdDataDir(["/usr/bin/etcd", `--data-dir=${d}`, "--enable-v2=true"]), d);
  assert.equal(etcdDataDir(["etcd", "-data-dir", d]), d);
  assert.equal(etcdDataDir(["etcd", "--name", "s1"]), "default.etcd");
  assert.equal(etcdDataDir(["etcdctl", "--data-dir", d]), undefined);
  assert.equal(etcdDataDir(["sh", "-c", `etcd --data-dir ${d}`]), undefined);
  assert.equal(etcdDataDir([]), undefined);
});

// ---------------------------------------------------------------------------------------
// root: a throwaway namespace

const isRoot = Deno.uid() === 0;

function hex(n: number): string {
  return [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
    .join("").slice(0, n);
}

async function withNetns(f: (name: string, path: string) => Promise<void>): Promise<void> {
  const name = `cnmt-au${hex(6)}`;
  await run(["ip", "netns", "add", name]);
  try {
    await run(["ip", "-n", name, "link", "set", "lo", "up"]);
    await f(name, `/run/netns/${name}`);
  } finally {
    const pids = await exec(["ip", "netns", "pids", name]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await exec(["ip", "netns", "del", name]);
    const left = await exec(["ip", "netns", "list"]);
    assert.ok(!left.stdout.includes(name), `${name} still listed:\n${left.stdout}`);
  }
}

Deno.test({
  name: "snapshotNetns names a leaked veth, nft rule and sysctl (root: makes a namespace)",
  ignore: !isRoot,
  async fn() {
    await withNetns(async (name, path) => {
      const before = await snapshotNetns(path);
      assert.deepEqual(before.errors, []);
      assert.ok(
        before.items.has("link lo kind=loopback mtu=65536 up"),
        [...before.items].join("\n"),
      );
      assert.ok(before.items.has("sysctl net.ipv4.ip_forward=0"));
      await run([
        "ip",
        "-n",
        name,
        "link",
        "add",
        "leak0",
        "type",
        "veth",
        "peer",
        "name",
        "leak1",
      ]);
      await run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"],
        [
          "table inet leak {",
          "  chain fw { type filter hook forward priority 0; policy accept; }",
          "}",
          'add rule inet leak fw iifname "leak0" counter drop comment "leaked"',
        ].join("\n") + "\n",
      );
      await run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
      const after = await snapshotNetns(path);
      const d = diffSnapshots(before, after, "t");
      for (
        const want of [
          "+ t: link leak0 kind=veth mtu=1500 down",
          "+ t: link leak1 kind=veth mtu=1500 down",
          "+ t: nft table inet leak",
          "+ t: nft chain inet leak fw type=filter hook=forward prio=0 policy=accept",
          '+ t: nft rule inet leak fw: iifname leak0 counter drop comment "leaked"',
          "- t: sysctl net.ipv4.ip_forward=0",
          "+ t: sysctl net.ipv4.ip_forward=1",
        ]
      ) assert.ok(d.includes(want), `${want} not in\n${d.join("\n")}`);
      // the new links' own sysctls are not reported one by one
      assert.ok(!d.some((l) => l.includes(".leak0.")), d.join("\n"));
    });
  },
});

Deno.test({
  name: "snapshotNetns: an unchanged namespace stays equal across traffic, and is fast (root)",
  ignore: !isRoot,
  async fn() {
    await withNetns(async (name, path) => {
      await run(
        ["ip", "-n", name, "-batch", "-"],
        [
          "link add br0 type bridge",
          "link add va type veth peer name vb",
          "link set va master br0",
          "link set br0 up",
          "link set va up",
          "link set vb up",
          "addr add 10.99.0.1/24 dev br0",
          "addr add fd00:99::1/64 dev br0",
          "route add 10.98.0.0/24 via 10.99.0.2",
        ].join("\n") + "\n",
      );
      await run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"],
        [
          "table inet t {",
          "  set s { type ipv4_addr; elements = { 10.99.0.5 } }",
          "  chain out { type filter hook output priority 0; policy accept; counter; ip daddr @s counter; }",
          "  chain post { type nat hook postrouting priority 100; ip saddr 10.99.0.0/24 counter masquerade; }",
          "}",
        ].join("\n") + "\n",
      );
      const before = await snapshotNetns(path);
      const ping = (...args: string[]) =>
        exec(["ip", "netns", "exec", name, "ping", "-q", "-i", "0.2", "-W", "1", ...args]);
      await Promise.all([
        ping("-c", "5", "10.99.0.1"),
        ping("-c", "3", "10.99.0.5"),
        ping("-6", "-c", "3", "fd00:99::1"),
      ]);
      await new Promise((r) => setTimeout(r, 1000));
      const times: number[] = [];
      let after = before;
      for (let i = 0; i < 5; i++) {
        after = await snapshotNetns(path);
        times.push(after.ms);
      }
      assert.deepEqual(diffSnapshots(before, after, "t"), []);
      assert.ok(before.items.size > 500, `${before.items.size} items`);
      times.sort((a, b) => a - b);
      console.log(`snapshotNetns: ${before.items.size} items, median ${times[2].toFixed(0)} ms`);
      assert.ok(times[2] < 300, `median ${times[2]} ms`);
    });
  },
});

Deno.test({
  name: "processesOf: by namespace, prefix, descent; exclude (root: makes a namespace)",
  ignore: !isRoot,
  async fn() {
    await withNetns(async (name, path) => {
      const spawn = (args: string[]) =>
        new Deno.Command(args[0], {
          args: args.slice(1),
          stdin: "null",
          stdout: "null",
          stderr: "null",
        })
          .spawn();
      const inNs = spawn(["nsenter", `--net=${path}`, "sleep", "30"]);
      const helper = spawn(["sleep", "31"]);
      try {
        await new Promise((r) => setTimeout(r, 200));
        const found = await processesOf({
          prefix: name,
          netnsPaths: [path],
          exclude: [helper.pid],
        });
        const line = found.find((l) => l.startsWith(`process ${inNs.pid} `));
        assert.ok(line, found.join("\n"));
        assert.match(
          line,
          new RegExp(
            `^process ${inNs.pid} \\S*sleep 30 \\[in ${path}, descends from ${Deno.pid}\\]$`,
          ),
        );
        assert.ok(!found.some((l) => l.startsWith(`process ${helper.pid} `)), found.join("\n"));
        assert.ok(!found.some((l) => l.startsWith(`process ${Deno.pid} `)));
        const byPrefix = await processesOf({ prefix: "sleep 31", netnsPaths: [], rootPid: -1 });
        assert.ok(
          byPrefix.includes(
            `process ${helper.pid} /usr/bin/sleep 31 [command line has sleep 31]`,
          ) ||
            byPrefix.includes(`process ${helper.pid} sleep 31 [command line has sleep 31]`),
          byPrefix.join("\n"),
        );
      } finally {
        for (const c of [inNs, helper]) {
          try {
            c.kill("SIGKILL");
          } catch { /* gone */ }
          await c.status;
        }
      }
      assert.deepEqual(await processesOf({ prefix: name, netnsPaths: [path], exclude: [] }), []);
    });
  },
});

Deno.test({
  name: "snapshotMachine: the run's namespaces, mounts and temp dirs (root: makes a namespace)",
  ignore: !isRoot,
  async fn() {
    const before = await snapshotMachine();
    await withNetns(async (name) => {
      const dir = await Deno.makeTempDir({ prefix: `${name}-` });
      // a killed daemon's prefix lock, as the reference daemon leaves it
      const lock = `${RUN_DIR}/${name}-h1.lock`;
      await Deno.mkdir(RUN_DIR, { recursive: true });
      await Deno.writeTextFile(lock, "1\n/tmp/x\n");
      try {
        const after = await snapshotMachine();
        const d = diffSnapshots(before, after, "machine", { prefix: name });
        assert.ok(d.includes(`+ machine: netns ${name}`), d.join("\n"));
        assert.ok(d.includes(`+ machine: mount /run/netns/${name} nsfs`), d.join("\n"));
        assert.ok(d.some((l) => l === `+ machine: tmp ${dir}`), d.join("\n"));
        assert.ok(d.includes(`+ machine: run ${lock}`), d.join("\n"));
        await Deno.remove(lock);
        const allow = harnessItems({ netns: [name], dirs: [dir] });
        const clean = await snapshotMachine();
        assert.deepEqual(diffSnapshots(before, clean, "machine", { prefix: name, allow }), []);
      } finally {
        await Deno.remove(dir, { recursive: true });
        await Deno.remove(lock).catch(() => {});
      }
    });
  },
});
