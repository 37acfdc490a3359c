/**
 * `deno task test`: checks the machine, runs every test file (unit tests anywhere;
 * integration tests need root and are skipped with a reason otherwise), then prints one
 * final line `N passed, N failed, N skipped`.
 * @module
 */
import { ensureMachine } from "./preflight.ts";

try {
  await ensureMachine(false);
} catch (err) {
  console.error(`cnm: ${err instanceof Error ? err.message : err}`);
  console.log("0 passed, 1 failed");
  Deno.exit(1);
}

const args = ["test", "-A", "--unstable-net", ...Deno.args];
const child = new Deno.Command(Deno.execPath(), {
  args,
  stdout: "piped",
  stderr: "inherit",
  env: { NO_COLOR: "1" },
}).spawn();

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  const text = decoder.decode(chunk, { stream: true });
  await Deno.stdout.write(chunk);
  tail = (tail + text).slice(-4000);
}
const status = await child.status;

// Deno's summary: "ok | 20 passed (59 steps) | 0 failed | 2 ignored (1s)"
const m = /(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed(?:[^|]*\| (\d+) ignored)?/.exec(tail);
let passed = 0, failed = 0, skipped = 0;
if (m) {
  passed = Number(m[1]);
  failed = Number(m[2]);
  skipped = Number(m[3] ?? 0);
}
if (!m || (status.code !== 0 && failed === 0)) failed += 1; // a crash or a compile error
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
Deno.exit(failed > 0 ? 1 : 0);
