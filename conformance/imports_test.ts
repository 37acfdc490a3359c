/**
 * The suite shares no code with what it judges: no module under conformance/ may import
 * from impl/ or from the repository's top-level mod.ts, directly or through a local module
 * outside conformance/. The checker lives in tools/imports.ts.
 */
import assert from "node:assert/strict";
import { findSpecifiers, forbiddenImports } from "../tools/imports.ts";

// --- the checker's own tests --------------------------------------------------------------

Deno.test("findSpecifiers: static, type-only, side-effect, re-exports and dynamic", () => {
  const src = `// import { no } from "../impl/comment.ts";
/* import "../impl/block.ts"; */
import { a, type B } from "./a.ts";
import type { C } from "../c.ts";
import * as ns from "./ns.ts";
import def, { e } from "./def.ts";
import "./side.ts";
import {
  x,
  y,
} from "./multi.ts";
import data from "./data.json" with { type: "json" };
export { f } from "./f.ts";
export * from "./star.ts";
export * as g from "./g.ts";
export type { H } from "./h.ts";
export { local };
export const z = 1;
const s = "import { no } from './impl/string.ts'";
const t = \`import("./no/template.ts") \${import("./dyn-in-tpl.ts")}\`;
const r = /import "no"/;
const m = await import("./dyn.ts");
const n = await import(\`./tpl.ts\`);
const o = await import(path);
type T = typeof import("./type.ts");
const meta = import.meta.url;
`;
  const got = findSpecifiers(src).map((s) => `${s.line}:${s.kind[0]}:${s.specifier}`);
  assert.deepEqual(got, [
    "3:s:./a.ts",
    "4:s:../c.ts",
    "5:s:./ns.ts",
    "6:s:./def.ts",
    "7:s:./side.ts",
    "11:s:./multi.ts",
    "12:s:./data.json",
    "13:s:./f.ts",
    "14:s:./star.ts",
    "15:s:./g.ts",
    "16:s:./h.ts",
    "20:d:./dyn-in-tpl.ts",
    "22:d:./dyn.ts",
    "23:d:./tpl.ts",
    "25:d:./type.ts",
  ]);
});

Deno.test("findSpecifiers: division is not a regex, regex quotes are not strings", () => {
  const src = `const a = b / 2; const c = d / e;
const re = x.split(/"/);
if (ok) return /'/.test(s);
import { after } from "./after.ts";
`;
  assert.deepEqual(findSpecifiers(src).map((s) => s.specifier), ["./after.ts"]);
});

Deno.test("forbiddenImports: fails on impl/ and mod.ts, directly, dynamically and transitively", () => {
  const files: Record<string, string> = {
    "conformance/cases/x.ts": `import { ok } from "../impl.ts";
import { randomHex } from "../../impl/model/names.ts";
`,
    "conformance/mod.ts": `import { fine } from "./cases/x.ts";
const m = await import("../mod.ts");
import type { Helper } from "../testing/helper.ts";
import { z } from "zod";
import { cnm } from "cnm/model/ip.ts";
`,
    "conformance/impl.ts": `export interface Implementation {}`,
    "testing/helper.ts": `export { ip } from "../impl/model/ip.ts";`,
    "testing/clean.ts": `export const clean = 1;`,
    "conformance/clean.ts": `import { clean } from "../testing/clean.ts";
import { impl } from "./impl.ts";
`,
  };
  const problems = forbiddenImports({
    root: new URL("file:///repo/"),
    files: Object.keys(files).filter((f) => f.startsWith("conformance/")),
    read: (p) => files[p],
    imports: { zod: "npm:zod@4.6.7", "cnm/": "./impl/" },
  });
  assert.deepEqual(problems, [
    `conformance/cases/x.ts:2: imports "../../impl/model/names.ts" (impl/model/names.ts): the suite must share no code with what it judges`,
    `conformance/mod.ts:2: dynamically imports "../mod.ts" (mod.ts): the suite must share no code with what it judges`,
    `conformance/mod.ts:3: imports "../testing/helper.ts", and testing/helper.ts:1 imports "../impl/model/ip.ts" (impl/model/ip.ts): the suite must share no code with what it judges`,
    `conformance/mod.ts:5: imports "cnm/model/ip.ts" (impl/model/ip.ts): the suite must share no code with what it judges`,
  ]);
  const clean = forbiddenImports({
    root: new URL("file:///repo/"),
    files: ["conformance/clean.ts", "conformance/impl.ts"],
    read: (p) => files[p],
  });
  assert.deepEqual(clean, []);
});

// --- the rule itself ------------------------------------------------------------------------

const ROOT = new URL("../", import.meta.url);

async function conformanceFiles(dir: URL, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) {
      out.push(...await conformanceFiles(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`));
    } else if (e.isFile && e.name.endsWith(".ts")) {
      out.push(`${prefix}${e.name}`);
    }
  }
  return out.sort();
}

Deno.test("no module under conformance/ imports impl/ or the top-level mod.ts", async () => {
  const files = await conformanceFiles(new URL("conformance/", ROOT), "conformance/");
  assert.ok(files.length > 10 && files.includes("conformance/imports_test.ts"), "walked");
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const problems = forbiddenImports({
    root: ROOT,
    files,
    imports: config.imports ?? {},
    read: (p) => {
      try {
        return Deno.readTextFileSync(new URL(p, ROOT));
      } catch {
        return undefined;
      }
    },
  });
  assert.deepEqual(problems, [], `\n${problems.join("\n")}`);
});
