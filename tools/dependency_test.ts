/**
 * The dependency direction of impl/, as a test (Deno's std keeps its layering the same way):
 * - `impl/model/` imports nothing of ours outside itself;
 * - a driver (`impl/drivers/`) never imports the controller, the embedded DNS or the load
 *   balancer;
 * - nothing under impl/, tests included, imports the top-level mod.ts;
 * - only `impl/kernel/` and `impl/cli/` (`cnm exec`) spawn processes (tests excepted).
 * (conformance/imports_test.ts keeps the suite away from impl/.)
 */
import assert from "node:assert/strict";
import { findSpecifiers, resolveSpecifier } from "./imports.ts";

const SPAWN = /\bDeno\.(Command|run)\b|["']node:child_process["']/;

/** Every breach of the rules above in `files` (repository-relative path → source). */
export function dependencyProblems(files: Map<string, string>, root: URL): string[] {
  const problems: string[] = [];
  for (const [path, src] of files) {
    if (!path.startsWith("impl/")) continue;
    const test = /_test\.ts$/.test(path);
    for (const s of findSpecifiers(src)) {
      const url = resolveSpecifier(s.specifier, new URL(path, root), {}, root);
      if (!url || !url.href.startsWith(root.href)) continue;
      const to = decodeURIComponent(url.href.slice(root.href.length));
      const at = `${path}:${s.line} imports ${to}`;
      if (to === "mod.ts") problems.push(`${at}: nothing under impl/ imports the top-level mod.ts`);
      if (path.startsWith("impl/model/") && !test && !to.startsWith("impl/model/")) {
        problems.push(`${at}: the model imports nothing of ours`);
      }
      if (
        path.startsWith("impl/drivers/") && !test &&
        /^impl\/(controller|dns|lb)\//.test(to)
      ) {
        problems.push(`${at}: a driver never imports the controller, dns or lb`);
      }
    }
    if (
      !test && !path.startsWith("impl/kernel/") && !path.startsWith("impl/cli/") &&
      SPAWN.test(src.replace(/\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, ""))
    ) {
      problems.push(`${path}: spawns a process (only impl/kernel and impl/cli do)`);
    }
  }
  return problems.sort();
}

const ROOT = new URL("../", import.meta.url);

Deno.test("dependencyProblems: each rule can fail", () => {
  const files = new Map([
    ["impl/model/a.ts", `import { k } from "../kernel/k.ts";`],
    ["impl/drivers/x/x.ts", `import { C } from "../../controller/controller.ts";`],
    ["impl/drivers/y/y.ts", `import type { R } from "../../dns/records.ts";`],
    ["impl/daemon/d_test.ts", `import { openController } from "../../mod.ts";`],
    ["impl/dns/forward.ts", `const c = new Deno.Command("dig");`],
    ["impl/kernel/runner.ts", `const c = new Deno.Command("ip");`],
    ["impl/cli/run.ts", `const c = new Deno.Command("nsenter");`],
    ["impl/lb/ok.ts", `// new Deno.Command is only in a comment here`],
  ]);
  assert.deepEqual(dependencyProblems(files, ROOT), [
    "impl/daemon/d_test.ts:1 imports mod.ts: nothing under impl/ imports the top-level mod.ts",
    "impl/dns/forward.ts: spawns a process (only impl/kernel and impl/cli do)",
    "impl/drivers/x/x.ts:1 imports impl/controller/controller.ts: a driver never imports the controller, dns or lb",
    "impl/drivers/y/y.ts:1 imports impl/dns/records.ts: a driver never imports the controller, dns or lb",
    "impl/model/a.ts:1 imports impl/kernel/k.ts: the model imports nothing of ours",
  ]);
});

async function walk(dir: URL, prefix: string, out: Map<string, string>) {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`, out);
    else if (e.isFile && e.name.endsWith(".ts")) {
      out.set(`${prefix}${e.name}`, await Deno.readTextFile(new URL(e.name, dir)));
    }
  }
}

Deno.test("impl/ keeps its dependency direction", async () => {
  const files = new Map<string, string>();
  await walk(new URL("impl/", ROOT), "impl/", files);
  assert.ok(files.size > 30, "walked impl/");
  const problems = dependencyProblems(files, ROOT);
  assert.deepEqual(problems, [], `\n${problems.join("\n")}`);
});
