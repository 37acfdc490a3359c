/**
 * `deno task conformance [--impl reference|docker|PATH.ts]... [--impl-opt K=V]...
 * [--docker-host unix://...] [--profile NAME]... [--filter REGEX] [--skip REGEX]
 * [--topology FILE]... [--fault NAME] [--list] [--junit F] [--tap F] [--json F]
 * [--keep-on-failure] [--cleanup]`
 *
 * Prints a line per case while running, then failures, grids, the summary; the LAST line
 * alone is `N passed, N failed, N skipped`. Exits non-zero on any failure.
 * @module
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { ensureMachine } from "../tools/preflight.ts";
import { FAULTS } from "./adapters/faults.ts";
import { removeByPrefix } from "./harness/hosts.ts";
import { runConformance, selectCases } from "./mod.ts";
import { caseLine, differentialTable, failureBlock, gridBlock, summary } from "./report/console.ts";
import { toJUnit } from "./report/junit.ts";
import { toJson } from "./report/json.ts";
import { toTap } from "./report/tap.ts";

const USAGE = `usage: deno task conformance [--impl reference|docker|PATH.ts]... [--impl-opt K=V]...
  [--docker-host unix://PATH] [--profile NAME]... [--filter REGEX] [--skip REGEX]
  [--topology FILE]... [--fault NAME] [--list] [--junit F] [--tap F] [--json F]
  [--keep-on-failure] [--cleanup] [--concurrency N] [--repeat N]`;

function die(message: string, code = 2): never {
  console.error(`conformance: ${message}`);
  console.log("0 passed, 1 failed, 0 skipped");
  Deno.exit(code);
}

let parsed;
try {
  parsed = parseArgs({
    args: Deno.args,
    options: {
      impl: { type: "string", multiple: true },
      "impl-opt": { type: "string", multiple: true },
      "docker-host": { type: "string" },
      profile: { type: "string", multiple: true },
      filter: { type: "string" },
      skip: { type: "string" },
      topology: { type: "string", multiple: true },
      fault: { type: "string" },
      list: { type: "boolean" },
      junit: { type: "string" },
      tap: { type: "string" },
      json: { type: "string" },
      "keep-on-failure": { type: "boolean" },
      cleanup: { type: "boolean" },
      concurrency: { type: "string" },
      repeat: { type: "string" },
      "no-fixtures": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
    strict: true,
  });
} catch (err) {
  die(`${err instanceof Error ? err.message : err}\n${USAGE}`);
}
const v = parsed.values;
if (v.help) {
  console.log(USAGE);
  console.log(`faults: ${FAULTS.map((f) => f.name).join(", ")}`);
  Deno.exit(0);
}

function regex(flag: string, text?: string): RegExp | undefined {
  if (text === undefined) return undefined;
  try {
    return new RegExp(text);
  } catch (err) {
    die(`--${flag} ${text}: ${err instanceof Error ? err.message : err}`);
  }
}

const implOptions: Record<string, string> = {};
for (const kv of v["impl-opt"] ?? []) {
  const eq = kv.indexOf("=");
  if (eq <= 0) die(`--impl-opt ${kv}: expected KEY=VALUE`);
  implOptions[kv.slice(0, eq)] = kv.slice(eq + 1);
}
if (v["docker-host"]) implOptions["docker-host"] = v["docker-host"];
if (v.fault && !FAULTS.some((f) => f.name === v.fault)) {
  die(`unknown fault "${v.fault}" (known: ${FAULTS.map((f) => f.name).join(", ")})`);
}
const concurrency = v.concurrency ? Number(v.concurrency) : undefined;
if (concurrency !== undefined && !(concurrency >= 1 && concurrency <= 32)) {
  die(`--concurrency ${v.concurrency}: expected 1 to 32`);
}

const repeat = v.repeat ? Number(v.repeat) : undefined;
if (repeat !== undefined && !(Number.isInteger(repeat) && repeat >= 1 && repeat <= 100)) {
  die(`--repeat ${v.repeat}: expected 1 to 100`);
}

const opts = {
  impls: v.impl?.length ? v.impl : ["reference"],
  implOptions,
  profiles: v.profile,
  filter: regex("filter", v.filter),
  skip: regex("skip", v.skip),
  topologies: v.topology,
  fixtures: !v["no-fixtures"],
  fault: v.fault,
  keepOnFailure: v["keep-on-failure"],
  concurrency,
  repeat,
};

if (v.list) {
  let cases;
  try {
    cases = await selectCases(opts);
  } catch (err) {
    die(err instanceof Error ? err.message : String(err));
  }
  for (const c of cases) {
    console.log(`${c.id.padEnd(44)} ${pc.dim(`[${c.profile}] needs ${c.needs.join(", ")}`)}`);
    console.log(`  ${c.asserts}`);
    console.log(pc.dim(`  mirrors: ${c.mirrors}`));
  }
  Deno.exit(0);
}

try {
  await ensureMachine(true);
} catch (err) {
  die(err instanceof Error ? err.message : String(err), 1);
}

if (v.cleanup) {
  const removed = await removeByPrefix("cnmt-");
  for (const r of removed) console.log(`removed ${r}`);
  console.log(`cleanup: ${removed.length} item(s) removed`);
  Deno.exit(0);
}

const several = opts.impls.length > 1;
console.log(
  pc.bold(`cnm conformance: ${opts.impls.join(" vs ")}${v.fault ? ` (fault ${v.fault})` : ""}`),
);
let run;
try {
  run = await runConformance({
    ...opts,
    onResult: (r) => console.log(caseLine(r, { showImpl: several })),
  });
} catch (err) {
  die(err instanceof Error ? err.message : String(err), 1);
}

for (const r of run.results) {
  if (r.grid && r.verdict === "pass") {
    console.log(`\n${r.id} (${r.impl})`);
    console.log(gridBlock(r.grid));
  }
}
for (const r of run.results.filter((x) => x.verdict === "fail" || x.verdict === "error")) {
  console.log("\n" + failureBlock(r));
}
if (several) console.log("\n" + differentialTable(run));
if (v.junit) await Deno.writeTextFile(v.junit, toJUnit(run));
if (v.tap) await Deno.writeTextFile(v.tap, toTap(run));
if (v.json) await Deno.writeTextFile(v.json, toJson(run));
const text = summary(run);
console.log("\n" + text);
const last = text.trim().split("\n").pop() ?? "";
Deno.exit(/ 0 failed/.test(last) ? 0 : 1);
