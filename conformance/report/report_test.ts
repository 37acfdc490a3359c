import assert from "node:assert/strict";
import { parse } from "yaml";
import type { CaseResult, RunResult } from "../types.ts";
import {
  caseLine,
  counts,
  differentialTable,
  failureBlock,
  gridBlock,
  stripAnsi,
  summary,
  toJson,
  toJUnit,
  toTap,
} from "./mod.ts";

function result(over: Partial<CaseResult>): CaseResult {
  return {
    id: "conn.same-network",
    area: "conn",
    profile: "core",
    impl: "reference",
    verdict: "pass",
    ms: 12.4,
    asserts: "Two sandboxes on one network reach each other.",
    mirrors: "moby TestBridgeICC",
    ...over,
  };
}

const failing = result({
  id: "iso.inter-network",
  area: "iso",
  verdict: "fail",
  ms: 1530,
  failure: {
    message: `r1 reached m1 on "blue" <&">`,
    expected: "blocked",
    observed: "reachable",
    reproduce: ["nsenter --net=/run/netns/cnmt-abc123-r1 ping -c1 -W1 10.202.0.3"],
    state: "## ip -br addr\nlo UNKNOWN 127.0.0.1/8\neth0 UP 10.201.0.2/24",
  },
  grid: {
    labels: ["r1", "m1", "b1"],
    expected: [[true, true, false], [true, true, true], [false, true, true]],
    observed: [[true, true, true], [true, true, true], [false, true, true]],
  },
});

const run: RunResult = {
  impls: ["reference"],
  startedAt: "2026-11-28T16:00:00.000Z",
  wallMs: 4321,
  residue: ["netns cnmt-abc123-h1"],
  environment: { kernel: "6.18", nft: "1.0.6 <x>" },
  results: [
    result({}),
    failing,
    result({
      id: "dns.upstream",
      area: "dns",
      verdict: "skip",
      ms: 0,
      reason: "needs dns.upstream",
    }),
    result({
      id: "bridge.strict-options",
      area: "bridge",
      verdict: "xfail",
      ms: 40,
      reason: "cnm rejects unknown driver options",
    }),
  ],
};

Deno.test("summary: the last line alone is the exact count line", () => {
  const text = stripAnsi(summary(run));
  const lines = text.split("\n");
  assert.equal(lines.at(-1), "1 passed, 2 failed, 2 skipped");
  assert.deepEqual(counts(run), { passed: 1, failed: 2, skipped: 2 });
  assert.ok(text.includes("bridge.strict-options: cnm rejects unknown driver options"));
  assert.ok(text.indexOf("netns cnmt-abc123-h1") < text.lastIndexOf("\n"));
  assert.match(text, /4\.3 s|4321 ms/);
  const clean = summary({ ...run, residue: [], results: [result({})] });
  assert.equal(clean.split("\n").at(-1), "1 passed, 0 failed, 0 skipped");
  const empty = summary({ ...run, residue: [], results: [] });
  assert.equal(empty.split("\n").at(-1), "0 passed, 0 failed, 0 skipped");
});

Deno.test("caseLine: verdict, padded id, impl when asked, time, reason", () => {
  const pass = stripAnsi(caseLine(result({})));
  assert.match(pass, /^PASS {2}conn\.same-network {10,}\s+12 ms$/);
  const skip = stripAnsi(caseLine(run.results[2], { showImpl: true }));
  assert.match(skip, /^SKIP {2}dns\.upstream +reference +0 ms {2}needs dns\.upstream$/);
  const xfail = stripAnsi(caseLine(run.results[3]));
  assert.match(xfail, /^XFAIL bridge\.strict-options .* cnm rejects/);
  const fail = stripAnsi(caseLine(failing));
  assert.match(fail, /^FAIL {2}iso\.inter-network .*1530 ms {2}r1 reached m1/);
});

Deno.test("failureBlock: message, expected/observed, reproduce, state; truncated", () => {
  const text = stripAnsi(failureBlock(failing));
  assert.match(text, /^FAIL iso\.inter-network \[reference\]/);
  assert.match(text, /\n {2}expected: blocked\n {2}observed: reachable\n/);
  assert.match(text, /\n {2}reproduce:\n {4}nsenter --net=\/run\/netns\/cnmt-abc123-r1 ping/);
  assert.match(text, /\n {2}state:\n {4}## ip -br addr\n/);
  assert.equal(failureBlock(result({})), "");
  const long = result({
    ...failing,
    grid: undefined,
    failure: {
      ...failing.failure!,
      state: Array.from({ length: 200 }, (_, i) => `line ${i}`).join("\n"),
    },
  });
  const cut = stripAnsi(failureBlock(long)).split("\n");
  assert.equal(cut.length, 60);
  assert.match(cut.at(-1)!, /more lines/);
  assert.ok(cut.some((l) => l.includes("nsenter --net=")), "reproduce kept before state");
});

Deno.test("gridBlock marks exactly the mismatching cells and lists them", () => {
  const text = stripAnsi(gridBlock(failing.grid!));
  const lines = text.split("\n");
  assert.equal(lines[0].trim().split(/\s+/).join(" "), "r1 m1 b1");
  const rows = lines.slice(1, 4);
  assert.equal(rows.join("").split("!").length - 1, 1);
  assert.match(rows[0], /^r1 +✓ +✓ +!$/);
  assert.match(rows[2], /^b1 +· +✓ +✓$/);
  assert.match(text, /! = differs: expected X observed Y/);
  assert.match(text, /! r1 → b1: expected blocked, observed reachable/);
  const long = stripAnsi(gridBlock({
    labels: ["r1@red", "m1@red", "m1@blue"],
    expected: [[true, true, false], [true, true, true], [true, true, true]],
    observed: [[true, true, false], [true, true, true], [true, true, true]],
  }));
  const [head, ...rest] = long.split("\n");
  assert.equal(head.trim().split(/\s+/).join(" "), "1 2 3");
  assert.match(rest[2], /^ 3 m1@blue +✓ +✓ +✓$/);
  assert.ok(!long.includes("differ:"));
});

Deno.test("toJUnit: suites, cases, escaping, skipped xfail, residue as audit failure", () => {
  const xml = toJUnit(run);
  assert.ok(xml.startsWith(`<?xml version="1.0" encoding="UTF-8"?>\n<testsuites `));
  assert.ok(xml.includes("r1 reached m1 on &quot;blue&quot; &lt;&amp;&quot;&gt;"));
  assert.ok(!xml.includes(`<&">`));
  assert.ok(xml.includes(`value="1.0.6 &lt;x&gt;"`));
  assert.equal(xml.match(/<testcase /g)?.length, 5);
  assert.match(
    xml,
    /<testsuites name="cnm conformance" tests="5" failures="2" errors="0" skipped="2"/,
  );
  assert.match(xml, /<testcase classname="iso" name="iso.inter-network" time="1.530">/);
  assert.match(
    xml,
    /<skipped message="expected divergence: cnm rejects unknown driver options"\/>/,
  );
  assert.match(xml, /<skipped message="needs dns.upstream"\/>/);
  assert.match(xml, /name="audit.residue"[^]*netns cnmt-abc123-h1<\/failure>/);
  // well-formed enough: every open tag closed, in order
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2]);
    else stack.push(m[2]);
  }
  assert.deepEqual(stack, []);
  // no raw control characters or ANSI escapes leak into the XML
  const dirty = toJUnit({
    ...run,
    residue: [],
    results: [
      result({ verdict: "fail", failure: { message: "\x1b[31mred\x1b[0m\x07", reproduce: [] } }),
    ],
  });
  assert.ok(dirty.includes(`message="red"`));
});

Deno.test("toTap: version, plan, points, directives, YAML diagnostics", () => {
  const tap = toTap(run);
  const lines = tap.trimEnd().split("\n");
  assert.equal(lines[0], "TAP version 13");
  assert.equal(lines[1], "1..5");
  assert.equal(lines[2], "ok 1 - conn.same-network");
  assert.equal(lines[3], "not ok 2 - iso.inter-network");
  assert.equal(lines[4], "  ---");
  const block = tap.slice(tap.indexOf("  ---\n") + 6, tap.indexOf("  ...\n"));
  const diag = parse(block.split("\n").map((l) => l.slice(2)).join("\n"));
  assert.equal(diag.message, `r1 reached m1 on "blue" <&">`);
  assert.equal(diag.state, failing.failure!.state);
  assert.match(
    tap,
    /\n {2}reproduce:\n {4}- nsenter --net=\/run\/netns\/cnmt-abc123-r1 ping -c1 -W1 10\.202\.0\.3\n/,
  );
  assert.match(tap, /\n {2}\.\.\.\nok 3 - dns\.upstream # SKIP needs dns\.upstream\n/);
  assert.match(tap, /\nnot ok 4 - bridge\.strict-options # TODO expected divergence: cnm rejects/);
  assert.match(tap, /\nnot ok 5 - audit\.residue\n {2}---\n/);
  assert.equal(lines.filter((l) => /^(not )?ok \d+ /.test(l)).length, 5);
  const clean = toTap({ ...run, residue: [], results: [result({})] });
  assert.equal(clean, "TAP version 13\n1..1\nok 1 - conn.same-network\n");
});

Deno.test("toJson round-trips the RunResult", () => {
  const text = toJson(run);
  assert.deepEqual(JSON.parse(text), run);
  assert.ok(text.includes('\n  "impls": ['));
});

Deno.test("differentialTable: verdicts side by side, differing rows marked", () => {
  assert.equal(differentialTable(run), "");
  const diff: RunResult = {
    ...run,
    impls: ["reference", "docker"],
    results: [
      result({}),
      result({ impl: "docker" }),
      result({ id: "iso.icc", verdict: "pass" }),
      result({ id: "iso.icc", impl: "docker", verdict: "fail" }),
      result({ id: "macvlan.no-parent", verdict: "pass" }),
    ],
  };
  const lines = stripAnsi(differentialTable(diff)).split("\n");
  assert.match(lines[0], /^ {2}case +reference +docker$/);
  assert.match(lines[1], /^ {2}conn\.same-network +PASS +PASS$/);
  assert.match(lines[2], /^\* iso\.icc +PASS +FAIL$/);
  assert.match(lines[3], /^\* macvlan\.no-parent +PASS +-$/);
  assert.match(lines[4], /verdicts differ \(2 of 3 cases\)/);
  const sum = stripAnsi(summary(diff));
  assert.ok(sum.includes("iso.icc [docker]"));
});
