/**
 * The suite against the reference (the project's main job, inside `deno task test`), and
 * its self-validation: every fault in adapters/faults.ts must be caught by the cases named
 * for it, each failing on the assertion the fault breaks; an adapter that leaks is reported
 * with its residue named. Needs root.
 */
import assert from "node:assert/strict";
import { FAULTS } from "./adapters/faults.ts";
import { runConformance } from "./mod.ts";
import type { RunResult } from "./types.ts";

const ignore = Deno.uid() !== 0;

function problems(run: RunResult): string[] {
  return run.results.filter((r) => r.verdict === "fail" || r.verdict === "error").map((r) =>
    `${r.id} [${r.verdict}]: ${r.failure?.message}`
  );
}

Deno.test({
  name: "every profile passes against the reference and leaves nothing behind (root)",
  ignore,
  async fn() {
    const run = await runConformance({ impls: ["reference"], profiles: ["all"] });
    assert.deepEqual(problems(run), [], "no case fails or errs");
    assert.deepEqual(run.residue, [], "no residue");
    const skipped = run.results.filter((r) => r.verdict === "skip" || r.verdict === "xfail");
    assert.deepEqual(
      skipped.filter((r) => !r.reason?.startsWith("precondition: ")).map((r) =>
        `${r.id}: ${r.reason}`
      ),
      [],
      "the reference skips only precondition-gated cases, each with its reason",
    );
    for (const t of run.timings ?? []) {
      console.log(
        `profile ${t.profile}: ${(t.ms / 1000).toFixed(1)} s (budget ${
          (t.budgetMs ?? 0) / 1000
        } s)`,
      );
    }
  },
});

Deno.test({
  name: "two runs of the core profile give the same verdicts (root)",
  ignore,
  async fn() {
    const run = await runConformance({ impls: ["reference"], profiles: ["core"], repeat: 2 });
    assert.deepEqual(run.unstable, [], "no verdict changed between the two runs");
    assert.deepEqual(problems(run), []);
    assert.deepEqual(run.residue, []);
  },
});

const caught: string[] = [];

for (const fault of FAULTS) {
  Deno.test({
    name: `fault "${fault.name}" is caught by ${
      fault.caughtBy.map((c) => c.case).join(", ")
    }, on the assertion it breaks (root)`,
    ignore,
    async fn() {
      const ids = [...new Set(fault.caughtBy.map((c) => c.case))];
      const filter = new RegExp(`^(${ids.map((c) => c.replace(/\./g, "\\.")).join("|")})$`);
      const run = await runConformance({
        impls: ["reference"],
        fault: fault.name,
        profiles: fault.profile ? [fault.profile, "core"] : undefined,
        filter,
        fixtures: false,
      });
      const byId = new Map(run.results.map((r) => [r.id, r]));
      for (const c of fault.caughtBy) {
        const r = byId.get(c.case);
        assert.ok(r, `${c.case} ran`);
        assert.equal(
          r.verdict,
          "fail",
          `${c.case} must fail under ${fault.name}: ${r.failure?.message ?? r.reason}`,
        );
        assert.match(
          r.failure?.message ?? "",
          new RegExp(c.assertion),
          `${c.case} must fail on the assertion the fault breaks`,
        );
      }
      // the fault's own objects (cnmfault_*) come and go with it; the leak rules-leaked
      // makes is what its case catches
      const own = run.residue.filter((x) =>
        !x.includes("cnmfault_") && !(fault.name === "rules-leaked" && x.includes("leaked_"))
      );
      assert.deepEqual(own, [], "no residue under a fault, except the leak it makes");
      caught.push(fault.name);
    },
  });
}

Deno.test({
  name: "every fault was caught",
  ignore,
  fn() {
    console.log(`faults caught: ${caught.length}/${FAULTS.length}`);
    assert.equal(
      caught.length,
      FAULTS.length,
      `missed: ${FAULTS.filter((f) => !caught.includes(f.name)).map((f) => f.name).join(", ")}`,
    );
  },
});

Deno.test({
  name:
    "an adapter that leaks a namespace, a process and an nft rule is reported with the residue named (root)",
  ignore,
  async fn() {
    const leaky = new URL("../testing/leaky_adapter.ts", import.meta.url).pathname;
    const run = await runConformance({
      impls: [leaky],
      profiles: ["core"],
      filter: /^conn\.same-network$/,
      fixtures: false,
    });
    const text = run.residue.join("\n");
    assert.match(text, /netns cnmt-[0-9a-f]{6}-h1-leaked/, `the namespace is named:\n${text}`);
    assert.match(text, /process \d+ sleep 3600/, `the process is named:\n${text}`);
    assert.match(text, /nft .*cnmt_leaky/, `the nft table is named:\n${text}`);
    assert.ok(
      run.forced?.some((f) => f.includes("-h1-leaked")),
      `the harness force-removed the namespace after reporting it: ${run.forced?.join(", ")}`,
    );
  },
});

const haveDockerd = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/dockerd`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
})();

Deno.test({
  name: "every profile passes against Docker 20.10, divergences exactly as listed (root, dockerd)",
  ignore: ignore || !haveDockerd,
  async fn() {
    // one case at a time: Docker 20.10 rewrites its FORWARD jumps while a network is
    // created, and a packet of another case's negative burst can cross in that window
    // (observed here; README "Reference vs Docker 20.10")
    const run = await runConformance({ impls: ["docker"], profiles: ["all"], concurrency: 1 });
    assert.deepEqual(problems(run), [], "no unexpected failure");
    assert.deepEqual(run.residue, [], "no residue");
    assert.ok(run.results.filter((r) => r.verdict === "pass").length >= 20, "cases ran");
    const skips = run.results.filter((r) =>
      r.verdict === "skip" && r.reason?.startsWith("precondition")
    );
    for (const s of skips) console.log(`docker skip ${s.id}: ${s.reason}`);
  },
});
