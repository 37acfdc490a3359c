/**
 * The suite against the reference (the project's main job, inside `deno task test`), and
 * its self-validation: every fault in adapters/faults.ts must be caught by the cases named
 * for it. Needs root.
 */
import assert from "node:assert/strict";
import { FAULTS } from "./adapters/faults.ts";
import { runConformance } from "./mod.ts";

const ignore = Deno.uid() !== 0;

Deno.test({
  name: "every profile passes against the reference and leaves nothing behind (root)",
  ignore,
  async fn() {
    const run = await runConformance({ impls: ["reference"], profiles: ["all"] });
    const failed = run.results.filter((r) => r.verdict === "fail");
    assert.deepEqual(
      failed.map((r) => `${r.id}: ${r.failure?.message}`),
      [],
      "no case fails",
    );
    assert.deepEqual(run.residue, [], "no residue");
    const skipped = run.results.filter((r) => r.verdict !== "pass");
    assert.deepEqual(skipped.map((r) => `${r.id}: ${r.reason}`), [], "the reference skips nothing");
  },
});

for (const fault of FAULTS) {
  Deno.test({
    name: `fault "${fault.name}" is caught by ${fault.caughtBy.join(", ")} (root)`,
    ignore,
    async fn() {
      const filter = new RegExp(
        `^(${fault.caughtBy.map((c) => c.replace(/\./g, "\\.")).join("|")})$`,
      );
      const run = await runConformance({
        impls: ["reference"],
        fault: fault.name,
        profiles: fault.profile ? [fault.profile] : undefined,
        filter,
        fixtures: false,
      });
      const byId = new Map(run.results.map((r) => [r.id, r.verdict]));
      for (const id of fault.caughtBy) {
        assert.equal(byId.get(id), "fail", `${id} must fail under fault ${fault.name}`);
      }
      assert.deepEqual(run.residue, [], "no residue even under a fault");
    },
  });
}

const haveDockerd = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/dockerd`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
})();

Deno.test({
  name: "every profile passes against Docker 20.10, divergences as listed (root, dockerd)",
  ignore: ignore || !haveDockerd,
  async fn() {
    const run = await runConformance({ impls: ["docker"], profiles: ["all"] });
    const failed = run.results.filter((r) => r.verdict === "fail");
    assert.deepEqual(
      failed.map((r) => `${r.id}: ${r.failure?.message}`),
      [],
      "no unexpected failure",
    );
    assert.deepEqual(run.residue, [], "no residue");
    assert.ok(run.results.filter((r) => r.verdict === "pass").length >= 20, "cases ran");
  },
});
