import assert from "node:assert/strict";
import {
  impliedReachability,
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
});
