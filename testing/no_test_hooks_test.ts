/**
 * No test hook in production (no root): scans the sources under impl/. No file there may
 * read `CNM_TEST_FAULT` (the old environment switch of the daemon's faults), no
 * production file (anything but `*_test.ts`) may import from testing/, and the
 * environment is read only for defaults of paths (`CNM_SOCKET`).
 */
import assert from "node:assert/strict";

const IMPL = new URL("../impl/", import.meta.url);

/** Every .ts file under impl/, as [path relative to the repo, text]. */
async function implSources(): Promise<[string, string][]> {
  const out: [string, string][] = [];
  async function walk(dir: URL, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`);
      else if (e.isFile && e.name.endsWith(".ts")) {
        out.push([`${rel}${e.name}`, await Deno.readTextFile(new URL(e.name, dir))]);
      }
    }
  }
  await walk(IMPL, "impl/");
  return out.sort(([a], [b]) => a.localeCompare(b));
}

const isTest = (path: string) => path.endsWith("_test.ts");

/** Module specifiers a file imports or re-exports (static and dynamic). */
function specifiers(text: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;
  return [...text.matchAll(re)].map((m) => m[1]);
}

/** Resolves `spec` from `path` (repo-relative) to a repo-relative path, or undefined. */
function resolveFrom(path: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const url = new URL(spec, new URL(path, "file:///repo/"));
  return url.pathname.replace(/^\/repo\//, "");
}

Deno.test("impl/: scanning finds the sources (the scan itself works)", async () => {
  const files = await implSources();
  assert.ok(files.some(([p]) => p === "impl/daemon/daemon.ts"), "sees impl/daemon/daemon.ts");
  assert.ok(files.length > 50, `${files.length} files`);
  assert.deepEqual(specifiers(`import { a } from "../../testing/mod.ts";`), [
    "../../testing/mod.ts",
  ]);
  assert.deepEqual(specifiers(`export * from "./x.ts";\nawait import("./y.ts");`), [
    "./x.ts",
    "./y.ts",
  ]);
  assert.equal(resolveFrom("impl/daemon/daemon.ts", "../../testing/x.ts"), "testing/x.ts");
});

Deno.test("impl/: no file reads CNM_TEST_FAULT", async () => {
  const offenders = (await implSources()).filter(([, t]) => t.includes("CNM_TEST_FAULT"))
    .map(([p]) => p);
  assert.deepEqual(offenders, []);
});

Deno.test("impl/: no production file imports from testing/", async () => {
  const offenders: string[] = [];
  for (const [path, text] of await implSources()) {
    if (isTest(path)) continue;
    for (const spec of specifiers(text)) {
      const target = resolveFrom(path, spec);
      if (target?.startsWith("testing/") || /(^|\/)testing\//.test(spec)) {
        offenders.push(`${path} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("impl/: the environment gives defaults only (CNM_SOCKET), never behaviour", async () => {
  /** The reads allowed: a default socket path, and the CLI passing env to its parser. */
  const allowed = new Set([
    'impl/daemon/daemon.ts: Deno.env.get("CNM_SOCKET")',
    "impl/cli/main.ts: Deno.env.toObject()",
  ]);
  const found: string[] = [];
  for (const [path, text] of await implSources()) {
    if (isTest(path)) continue;
    for (const m of text.matchAll(/Deno\.env\.\w+\([^)]*\)|process\.env\b|Deno\.env\b(?!\.)/g)) {
      found.push(`${path}: ${m[0]}`);
    }
  }
  assert.deepEqual(found.filter((f) => !allowed.has(f)), []);
  // the CLI's parser reads CNM_SOCKET and nothing else from what it is given
  const parse = await Deno.readTextFile(new URL("cli/parse.ts", IMPL));
  assert.deepEqual([...parse.matchAll(/env\[["'](\w+)["']\]/g)].map((m) => m[1]), ["CNM_SOCKET"]);
  assert.ok(!/env\.(get|\w+\()/.test(parse), "parse.ts reads env only by key");
});
