import assert from "node:assert/strict";
import { commandLine, netnsPath, nsArgv, pollUntil, runCommand, shellQuote } from "./run.ts";
import { startResponders } from "./responders.ts";
import { probeHttp, probeTcp } from "./probes.ts";

Deno.test("shellQuote / commandLine give paste-able commands", () => {
  assert.equal(shellQuote("10.1.0.3"), "10.1.0.3");
  assert.equal(shellQuote("TCP6:[fd00::2]:80"), "'TCP6:[fd00::2]:80'");
  assert.equal(shellQuote("*"), "'*'");
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(shellQuote(""), "''");
  assert.equal(
    commandLine(nsArgv("/run/netns/x", ["ping", "-c1", "-W", "1", "10.1.0.3"])),
    "nsenter --net=/run/netns/x ping -c1 -W 1 10.1.0.3",
  );
});

Deno.test("netnsPath: paths as is, bare names under /run/netns, junk refused", () => {
  assert.equal(netnsPath("/proc/42/ns/net"), "/proc/42/ns/net");
  assert.equal(netnsPath("cnmt-abc-a"), "/run/netns/cnmt-abc-a");
  assert.throws(() => netnsPath("../etc"), TypeError);
  assert.throws(() => netnsPath(""), TypeError);
});

Deno.test("pollUntil: converges, counts tries, gives up at the deadline", async () => {
  let n = 0;
  const r = await pollUntil(() => Promise.resolve(++n), (v) => v >= 3, {
    deadlineMs: 2000,
    intervalMs: 1,
  });
  assert.deepEqual(r, { value: 3, ok: true, tries: 3 });
  const t0 = performance.now();
  const never = await pollUntil(() => Promise.resolve(0), (v) => v === 1, {
    deadlineMs: 100,
    intervalMs: 20,
  });
  const ms = performance.now() - t0;
  assert.equal(never.ok, false);
  assert.ok(never.tries >= 3 && never.tries <= 7, `${never.tries} tries`);
  assert.ok(ms >= 95 && ms < 400, `${ms} ms`);
});

Deno.test("runCommand: deadline kills, untilLine stops early", async () => {
  const slow = await runCommand(["sleep", "5"], { deadlineMs: 100 });
  assert.equal(slow.timedOut, true);
  assert.ok(slow.ms < 1000);
  const early = await runCommand(["sh", "-c", "echo hi; exec sleep 5"], {
    deadlineMs: 3000,
    untilLine: true,
  });
  assert.equal(early.stdout, "hi\n");
  assert.equal(early.stoppedEarly, true);
  assert.equal(early.timedOut, false);
  assert.ok(early.ms < 1000);
  const input = await runCommand(["cat"], { stdin: "x\n", deadlineMs: 3000 });
  assert.equal(input.stdout, "x\n");
  assert.equal(input.code, 0);
});

Deno.test("startResponders refuses bad identities and ports before starting anything", async () => {
  for (const id of ["", "a b", "x;rm", "é", "a".repeat(65)]) {
    await assert.rejects(() => startResponders("/run/netns/none", id, { tcp: [80] }), TypeError);
  }
  await assert.rejects(() => startResponders("/run/netns/none", "ok", { tcp: [0] }), RangeError);
  await assert.rejects(
    () => startResponders("/run/netns/none", "ok", { tcp: [80], http: [80] }),
    /requested twice/,
  );
});

Deno.test("probes refuse bad ports and URLs", async () => {
  await assert.rejects(() => probeTcp("/run/netns/none", "10.0.0.1", 70000), RangeError);
  await assert.rejects(() => probeHttp("/run/netns/none", "ftp://x"), TypeError);
});
