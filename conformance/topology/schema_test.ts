import assert from "node:assert/strict";
import {
  impliedEgress,
  impliedReachability,
  isEgressExpectation,
  loadTopology,
  parseCidr,
  parseTopology,
  type Topology,
  TopologyError,
} from "./mod.ts";
import { overlaps } from "./cidr.ts";

const FIXTURES = new URL("../../fixtures/", import.meta.url);

async function shipped(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(FIXTURES)) if (e.name.endsWith(".yaml")) names.push(e.name);
  return names.sort();
}

/** The matrix as "src>dst" strings of reachable pairs (rows collapsed per sandbox). */
function reachablePairs(t: Topology): string[] {
  const { labels, matrix, endpoints } = impliedReachability(t);
  const out = new Set<string>();
  matrix.forEach((row, i) =>
    row.forEach((v, j) => {
      if (v) out.add(`${endpoints[i].sandbox}>${labels[j]}`);
    })
  );
  return [...out].sort();
}

Deno.test("every shipped fixture loads, with distinct subnets inside 10.200.0.0/13", async () => {
  const names = await shipped();
  for (const need of ["two-networks", "multihomed", "icc-disabled", "internal"]) {
    assert.ok(names.includes(`${need}.yaml`), need);
  }
  const pool = parseCidr("10.200.0.0/13");
  assert.ok(typeof pool !== "string");
  const seen: { file: string; cidr: Exclude<ReturnType<typeof parseCidr>, string> }[] = [];
  const topologyNames = new Set<string>();
  for (const name of names) {
    const t = await loadTopology(new URL(name, FIXTURES).pathname);
    assert.equal(`${t.name}.yaml`, name, "name matches the file");
    assert.ok(!topologyNames.has(t.name));
    topologyNames.add(t.name);
    assert.ok(t.description.length > 20);
    for (const n of t.networks) {
      const c = parseCidr(n.subnet!);
      assert.ok(typeof c !== "string", `${name}: ${n.name}`);
      assert.ok(overlaps(pool, c), `${name}: ${n.subnet} outside 10.200.0.0/13`);
      for (const s of seen) {
        assert.ok(!overlaps(s.cidr, c), `${name}: ${n.subnet} overlaps ${s.file}'s ${s.cidr.text}`);
      }
      seen.push({ file: name, cidr: c });
    }
    // explicit expectations agree with the rules (the files state, they do not override)
    const rules = impliedReachability({ ...t, expect: [] });
    assert.deepEqual(impliedReachability(t).matrix, rules.matrix, `${name}: expect vs rules`);
    const egressRules = impliedEgress({ ...t, expect: [] });
    assert.deepEqual(impliedEgress(t), egressRules, `${name}: egress expect vs rules`);
    // every shipped fixture states every sandbox's egress
    const stated = t.expect.filter(isEgressExpectation).map((e) => e.from).sort();
    assert.deepEqual(stated, t.sandboxes.map((s) => s.name).sort(), `${name}: egress stated`);
  }
});

Deno.test("multihomed: the implied matrix is the hand-made one (no transit)", async () => {
  const t = await loadTopology(new URL("multihomed.yaml", FIXTURES).pathname);
  const r = impliedReachability(t);
  assert.deepEqual(r.labels, ["w1@west", "m@west", "m@east", "e1@east", "n1@north"]);
  const T = true, F = false;
  assert.deepEqual(r.matrix, [
    // w1@west m@west m@east e1@east n1@north
    [T, T, F, F, F], // from w1
    [T, T, T, T, F], // from m (row of m@west)
    [T, T, T, T, F], // from m (row of m@east)
    [F, F, T, T, F], // from e1
    [F, F, F, F, T], // from n1
  ]);
});

Deno.test("icc-disabled: only self on the quiet network, chatty as usual", async () => {
  const t = await loadTopology(new URL("icc-disabled.yaml", FIXTURES).pathname);
  assert.deepEqual(reachablePairs(t), [
    "c1>c1@chatty",
    "c1>q2@chatty",
    "q1>q1@quiet",
    "q2>c1@chatty",
    "q2>q2@chatty",
    "q2>q2@quiet",
  ]);
});

Deno.test("internal: peers on the internal network reach each other, nothing crosses", async () => {
  const t = await loadTopology(new URL("internal.yaml", FIXTURES).pathname);
  assert.equal(t.networks[0].internal, true);
  assert.deepEqual(reachablePairs(t), [
    "l1>l1@lobby",
    "v1>v1@vault",
    "v1>v2@vault",
    "v2>v1@vault",
    "v2>v2@vault",
  ]);
});

/** `impliedEgress` as "sandbox:reach" strings, in file order. */
function egress(t: Topology): string[] {
  return impliedEgress(t).map((e) => `${e.sandbox}:${e.reach}`);
}

Deno.test("internal: vault sandboxes have no way out, the lobby one goes out", async () => {
  const t = await loadTopology(new URL("internal.yaml", FIXTURES).pathname);
  assert.deepEqual(impliedEgress(t), [
    { sandbox: "v1", reach: false, via: [] },
    { sandbox: "v2", reach: false, via: [] },
    { sandbox: "l1", reach: true, via: ["lobby"] },
  ]);
  assert.deepEqual(
    t.expect.filter(isEgressExpectation),
    [
      { from: "v1", to: "outside", reach: false },
      { from: "v2", to: "outside", reach: false },
      { from: "l1", to: "outside", reach: true },
    ],
  );
});

Deno.test("egress: every sandbox of two-networks, multihomed and icc-disabled goes out", async () => {
  for (const name of ["two-networks", "multihomed", "icc-disabled"]) {
    const t = await loadTopology(new URL(`${name}.yaml`, FIXTURES).pathname);
    assert.deepEqual(egress(t), t.sandboxes.map((s) => `${s.name}:true`), name);
  }
  const t = await loadTopology(new URL("multihomed.yaml", FIXTURES).pathname);
  assert.deepEqual(impliedEgress(t).find((e) => e.sandbox === "m")?.via, ["west", "east"]);
});

Deno.test("egress rules: one non-internal network suffices; none, or no network, is no way out", () => {
  const t = parseTopology(
    `
name: egress
description: egress rules in one file
networks:
  - { name: in, subnet: 10.204.0.0/24, internal: true }
  - { name: out, subnet: 10.204.1.0/24 }
  - { name: quiet, subnet: 10.204.2.0/24, options: { com.docker.network.bridge.enable_icc: "false" } }
sandboxes:
  - { name: a, networks: [in] }
  - { name: b, networks: [in, out] }
  - { name: c, networks: [quiet] }
  - { name: d }
`,
    "inline.yaml",
  );
  assert.deepEqual(impliedEgress(t), [
    { sandbox: "a", reach: false, via: [] },
    { sandbox: "b", reach: true, via: ["out"] },
    { sandbox: "c", reach: true, via: ["quiet"] },
    { sandbox: "d", reach: false, via: [] },
  ]);
  // egress entries are not cells of the matrix, and sandbox entries do not touch egress
  assert.equal(impliedReachability(t).labels.length, 4);
});

Deno.test("expect: to: outside entries override the egress rule", () => {
  const t = parseTopology(
    `
name: override-egress
description: an implementation that stated a different way out
networks: [{ name: in, subnet: 10.204.0.0/24, internal: true }, { name: out, subnet: 10.204.1.0/24 }]
sandboxes:
  - { name: a, networks: [in] }
  - { name: b, networks: [out] }
expect:
  - { from: a, to: outside, reach: true }
  - { from: b, to: outside, reach: false }
  - { from: a, to: b, network: out, reach: false }
`,
    "inline.yaml",
  );
  assert.deepEqual(impliedEgress(t), [
    { sandbox: "a", reach: true, via: [] },
    { sandbox: "b", reach: false, via: ["out"] },
  ]);
  assert.deepEqual(egress({ ...t, expect: [] }), ["a:false", "b:true"]);
  assert.deepEqual(t.expect[0], { from: "a", to: "outside", reach: true });
  assert.ok(!("network" in t.expect[0]));
  assert.ok(isEgressExpectation(t.expect[0]) && !isEgressExpectation(t.expect[2]));
  // the matrix is unchanged by the egress entries (a and b share no network anyway)
  assert.deepEqual(impliedReachability(t).matrix, [[true, false], [false, true]]);
});

Deno.test("expect: entries override the rules for every row of the source sandbox", () => {
  const t = parseTopology(
    `
name: override
description: a divergence stated in the file
networks: [{ name: n, subnet: 10.204.0.0/24 }, { name: o, subnet: 10.204.1.0/24 }]
sandboxes:
  - { name: a, networks: [n, o] }
  - { name: b, networks: [n] }
expect:
  - { from: a, to: b, network: n, reach: false }
`,
    "inline.yaml",
  );
  const r = impliedReachability(t);
  assert.deepEqual(r.labels, ["a@n", "b@n", "a@o"]);
  assert.deepEqual(r.matrix.map((row) => row[1]), [false, true, false]);
  assert.equal(t.networks[0].driver, "bridge", "driver defaults to bridge");
});

function bad(yaml: string): string {
  try {
    parseTopology(yaml, "fixtures/x.yaml");
  } catch (e) {
    assert.ok(e instanceof TopologyError, String(e));
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    return e.message;
  }
  assert.fail("no error");
}

const HEAD = `name: x
description: bad on purpose
`;

Deno.test("bad files give one-line errors naming the file and the field", () => {
  assert.equal(
    bad(`${HEAD}networks:
  - { name: red, subnet: 10.205.0.0/24 }
  - { name: blue, subnet: 10.205.1.0/24 }
sandboxes:
  - { name: a, networks: [red] }
  - { name: b, networks: [blue] }
  - { name: c, networks: [blu] }
`),
    `fixtures/x.yaml: sandboxes[2].networks[0]: unknown network "blu"`,
  );
  assert.equal(
    bad(`${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }, { name: a, networks: [] }]
`),
    `fixtures/x.yaml: sandboxes[1].name: duplicate sandbox "a"`,
  );
  assert.equal(
    bad(`${HEAD}networks: [{ name: red, subnet: 10.205.0.0/33 }]
sandboxes: [{ name: a }]
`),
    `fixtures/x.yaml: networks[0].subnet: bad CIDR "10.205.0.0/33": prefix length 33 > 32`,
  );
  assert.match(
    bad(`${HEAD}networks: [{ name: red, subnet: 10.205.0.1/24 }]
sandboxes: [{ name: a }]
`),
    /^fixtures\/x\.yaml: networks\[0\]\.subnet: bad CIDR "10\.205\.0\.1\/24": host bits set/,
  );
  assert.equal(
    bad(`${HEAD}networks: [{ name: red, subnet: "10.205.0/24" }]
sandboxes: [{ name: a }]
`),
    `fixtures/x.yaml: networks[0].subnet: bad CIDR "10.205.0/24": "10.205.0" is not an IP address`,
  );
  assert.equal(
    bad(`${HEAD}networks: [{ name: red, colour: pink }]
sandboxes: [{ name: a }]
`),
    `fixtures/x.yaml: networks[0]: unknown field "colour"`,
  );
  assert.equal(
    bad(`${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a }]
extra: 1
`),
    `fixtures/x.yaml: unknown field "extra"`,
  );
});

Deno.test("more cross-reference and shape errors", () => {
  const cases: [string, string][] = [
    [
      `${HEAD}networks: [{ name: red, subnet: 10.205.0.0/16 }, { name: blue, subnet: 10.205.3.0/24 }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: networks[1].subnet: 10.205.3.0/24 overlaps network "red" (10.205.0.0/16)`,
    ],
    [
      `${HEAD}networks: [{ name: red }, { name: red }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: networks[1].name: duplicate network "red"`,
    ],
    [
      `${HEAD}networks: [{ name: red, subnet: 10.205.0.0/24, gateway: 10.205.1.1 }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: networks[0].gateway: 10.205.1.1 is not in 10.205.0.0/24`,
    ],
    [
      `${HEAD}networks: [{ name: red, options: { com.docker.network.bridge.enable_icc: maybe } }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: networks[0].options.com.docker.network.bridge.enable_icc: not a boolean: "maybe"`,
    ],
    [
      `${HEAD}networks: [{ name: red, subnet: 10.205.0.0/24 }]
sandboxes: [{ name: a, networks: [{ network: red, ipv4: 10.205.9.9 }] }]`,
      `fixtures/x.yaml: sandboxes[0].networks[0].ipv4: 10.205.9.9 is not in red's subnet 10.205.0.0/24`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red, red] }]`,
      `fixtures/x.yaml: sandboxes[0].networks[1]: sandbox "a" is on network "red" twice`,
    ],
    [
      `${HEAD}networks: [{ name: red }, { name: blue }]
sandboxes: [{ name: a, networks: [red] }, { name: b, networks: [red] }]
expect: [{ from: a, to: b, network: blue, reach: false }]`,
      `fixtures/x.yaml: expect[0].network: sandbox "b" is not on network "blue"`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: zed, to: a, network: red, reach: true }]`,
      `fixtures/x.yaml: expect[0].from: unknown sandbox "zed"`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: a, to: a, network: red }]`,
      `fixtures/x.yaml: expect[0].reach: missing (expected boolean)`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: a, to: outside, network: red, reach: true }]`,
      `fixtures/x.yaml: expect[0].network: not allowed with "to: outside" (the outside is reached through the host, not on a network)`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: zed, to: outside, reach: false }]`,
      `fixtures/x.yaml: expect[0].from: unknown sandbox "zed"`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }, { name: b }]
expect: [{ from: a, to: outside, reach: true }, { from: b, to: outside, reach: false }]`,
      `fixtures/x.yaml: expect[1].from: sandbox "b" is on no network`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: a, to: outside }]`,
      `fixtures/x.yaml: expect[0].reach: missing (expected boolean)`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }]
expect: [{ from: a, to: outside, reach: "yes" }]`,
      `fixtures/x.yaml: expect[0].reach: expected boolean, received string`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }, { name: b, networks: [red] }]
expect: [{ from: a, to: b, reach: true }]`,
      `fixtures/x.yaml: expect[0].network: missing (expected string)`,
    ],
    [
      `${HEAD}networks: [{ name: red }]
sandboxes: [{ name: a, networks: [red] }, { name: outside, networks: [red] }]`,
      `fixtures/x.yaml: sandboxes[1].name: "outside" is reserved (expect entries use "to: outside")`,
    ],
    [
      `name: x
networks: [{ name: red }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: description: missing (expected string)`,
    ],
    [
      `${HEAD}networks: [{ name: "bad name" }]
sandboxes: [{ name: a }]`,
      `fixtures/x.yaml: networks[0].name: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 63)`,
    ],
  ];
  for (const [yaml, message] of cases) assert.equal(bad(yaml), message);
  assert.match(
    bad(`${HEAD}networks: [ { name: red }\n`),
    /^fixtures\/x\.yaml: line \d+, column \d+: YAML: /,
  );
  assert.match(
    bad(`${HEAD}name: again\nnetworks: []\n`),
    /^fixtures\/x\.yaml: line 3, column 1: YAML: Map keys must be unique/,
  );
  assert.equal(bad(`- just a list`), "fixtures/x.yaml: not a YAML mapping");
});

Deno.test("loadTopology names an unreadable file", async () => {
  await assert.rejects(
    () => loadTopology("fixtures/does-not-exist.yaml"),
    (e: Error) =>
      e instanceof TopologyError &&
      e.message.startsWith("fixtures/does-not-exist.yaml: cannot read"),
  );
});

Deno.test("cidr helpers", () => {
  const c = parseCidr("fd00:250::/64", 6);
  assert.ok(typeof c !== "string" && c.bits === 64);
  assert.match(String(parseCidr("10.1.0.0/16", 6)), /not IPv6/);
  assert.match(String(parseCidr("010.1.0.0/16")), /not an IP address/);
});

Deno.test("the format example in fixtures/README.md is valid", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", FIXTURES));
  const yaml = readme.match(/```yaml\n([^]*?)```/)?.[1];
  assert.ok(yaml);
  const t = parseTopology(yaml, "fixtures/README.md");
  assert.equal(t.sandboxes[1].networks[1].ipv4, "10.200.2.10");
  assert.equal(t.networks[0].options?.["com.docker.network.bridge.enable_icc"], "false");
  assert.deepEqual(impliedEgress(t).map((e) => e.reach), [true, true]);
  assert.ok(t.expect.some(isEgressExpectation), "the example shows a to: outside entry");
});
