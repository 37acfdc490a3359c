import assert from "node:assert/strict";
import { classifyProbe } from "./outcome.ts";
import { classifyError, harnessProblem, type ProbeResult } from "./probes.ts";

const cmd = "nsenter --net=/run/netns/x true";
const answered = (identity?: string): ProbeResult => ({
  ok: true,
  ...(identity === undefined ? {} : { identity }),
  detail: identity === undefined ? "64 bytes from 10.0.0.2 (1 ms)" : `reply "${identity}" in 1 ms`,
  command: cmd,
});
const failed = (failure: ProbeResult["failure"], detail: string): ProbeResult => ({
  ok: false,
  detail,
  command: cmd,
  failure,
});

Deno.test("classifyProbe: a probe that could not run is a harness error, whatever arrived", () => {
  const probe = failed("error", "error: nsenter: cannot open /run/netns/nope: No such file");
  for (const arrivals of [0, 3]) {
    const v = classifyProbe({ probe, arrivals });
    assert.equal(v.outcome, "harness-error");
    assert.match(v.why, /could not run: .*nsenter: cannot open/);
  }
});

Deno.test("classifyProbe: arrived and answered is reached; another identity is named", () => {
  assert.equal(classifyProbe({ probe: answered("b"), arrivals: 1 }).outcome, "reached");
  assert.equal(
    classifyProbe({ probe: answered("b"), arrivals: 2, expectIdentity: "b" }).outcome,
    "reached",
  );
  assert.equal(classifyProbe({ probe: answered(), arrivals: 1 }).outcome, "reached");
  const other = classifyProbe({ probe: answered("c"), arrivals: 1, expectIdentity: "b" });
  assert.equal(other.outcome, "reached");
  assert.match(other.why, /"c" answered, not "b"/);
});

Deno.test("classifyProbe: arrived but not answered is target-refused", () => {
  const rst = classifyProbe({
    probe: failed("refused", "refused: socat E connect(...): Connection refused"),
    arrivals: 1,
  });
  assert.equal(rst.outcome, "target-refused");
  assert.match(rst.why, /saw 1 packet, but no answer came from it \(refused: socat/);
  assert.equal(
    classifyProbe({ probe: failed("timeout", "timeout"), arrivals: 4 }).outcome,
    "target-refused",
  );
  assert.equal(
    classifyProbe({ probe: failed("status", "HTTP 503"), arrivals: 1 }).outcome,
    "target-refused",
  );
});

Deno.test("classifyProbe: the target answered but its witness saw nothing: harness error", () => {
  const same = classifyProbe({ probe: answered("b"), arrivals: 0, expectIdentity: "b" });
  assert.equal(same.outcome, "harness-error");
  assert.match(same.why, /witness saw nothing: the witness is broken/);
  // an ICMP echo reply carries no identity: assumed to be the target's
  const icmp = classifyProbe({ probe: answered(), arrivals: 0, expectIdentity: "b" });
  assert.equal(icmp.outcome, "harness-error");
  assert.equal(classifyProbe({ probe: answered(), arrivals: 0 }).outcome, "harness-error");
});

Deno.test("classifyProbe: someone else answered and nothing arrived: reached, says who", () => {
  const other = classifyProbe({ probe: answered("c"), arrivals: 0, expectIdentity: "b" });
  assert.equal(other.outcome, "reached");
  assert.match(other.why, /answered by "c", not "b"; nothing arrived at the target/);
  const unknown = classifyProbe({ probe: answered("c"), arrivals: 0 });
  assert.equal(unknown.outcome, "reached");
  assert.match(unknown.why, /answered by "c"/);
});

Deno.test("classifyProbe: nothing arrived, no answer: blocked, dropped or rejected", () => {
  const dropped = classifyProbe({ probe: failed("timeout", "timeout"), arrivals: 0 });
  assert.equal(dropped.outcome, "blocked");
  assert.match(dropped.why, /dropped on the way \(timeout/);
  const rejected = classifyProbe({
    probe: failed("unreachable", "unreachable: Destination Port Unreachable from 10.99.0.1"),
    arrivals: 0,
  });
  assert.equal(rejected.outcome, "blocked");
  assert.match(rejected.why, /rejected by something other than the target .*from 10\.99\.0\.1/);
  const refused = classifyProbe({ probe: failed("refused", "refused: ..."), arrivals: 0 });
  assert.equal(refused.outcome, "blocked");
  assert.match(refused.why, /rejected by something other than the target/);
  const proxy = classifyProbe({ probe: failed("status", 'HTTP 403 "denied"'), arrivals: 0 });
  assert.equal(proxy.outcome, "blocked");
  assert.match(proxy.why, /answered by something other than the target/);
  const silent = classifyProbe({
    probe: { ok: false, detail: "no reply", command: cmd },
    arrivals: 0,
  });
  assert.equal(silent.outcome, "blocked");
});

Deno.test("classifyProbe: one-way probes: reached when anything arrived, else blocked", () => {
  const sent: ProbeResult = { ok: true, detail: "sent 5 datagrams", command: cmd, oneWay: true };
  assert.equal(classifyProbe({ probe: sent, arrivals: 5 }).outcome, "reached");
  const none = classifyProbe({ probe: sent, arrivals: 0 });
  assert.equal(none.outcome, "blocked");
  assert.match(none.why, /nothing arrived at the target \(sent 5 datagrams\)/);
  const err = { ...failed("error", "error: cannot start: bash"), oneWay: true };
  assert.equal(classifyProbe({ probe: err, arrivals: 0 }).outcome, "harness-error");
});

Deno.test("classifyProbe refuses nonsense counts", () => {
  assert.throws(() => classifyProbe({ probe: answered(), arrivals: -1 }), RangeError);
  assert.throws(() => classifyProbe({ probe: answered(), arrivals: 0.5 }), RangeError);
});

Deno.test("classifyError: network outcomes from error texts (captured from socat/ping/bash)", () => {
  const cases: [string, ProbeResult["failure"]][] = [
    ["socat[11509] E connect(5, AF=2 10.99.0.2:7999, 16): Connection refused", "refused"],
    ["socat[11514] E read(5, 0x56306d85a000, 8192): Connection refused", "refused"],
    ["socat[11510] E connect(5, AF=2 10.200.0.2:7999, 16): Network is unreachable", "unreachable"],
    ["ping: connect: Network is unreachable", "unreachable"],
    ["socat[1] E connect(5, AF=2 10.0.0.1:80, 16): No route to host", "unreachable"],
    // a local filter (nft drop on output) refuses the send with EPERM
    ["ping: sendmsg: Operation not permitted", "unreachable"],
    ["socat[11610] E write(5, 0x56111bd91000, 2): Operation not permitted", "unreachable"],
    ["x: line 1: printf: write error: Operation not permitted", "unreachable"],
    ["socat[11608] E connecting to AF=2 10.99.0.2:7999: Connection timed out", "timeout"],
    ["curl: (28) Connection timed out after 1001 milliseconds", "timeout"],
    // not network outcomes
    ["ping: socket: Operation not permitted", "error"],
    ['socat[11490] E parseopts_table(): unknown option "bogusopt"', "error"],
    ["ping: patterns must be specified as hex digits: zz", "error"],
    ["socat[1] E bind(5, {AF=2 0.0.0.0:20001}, 16): Address already in use", "error"],
  ];
  for (const [text, want] of cases) assert.equal(classifyError(text), want, text);
});

Deno.test("harnessProblem: nsenter's own errors and command-not-found exits", () => {
  assert.equal(
    harnessProblem({
      stderr: "nsenter: cannot open /run/netns/nope: No such file or directory\n",
      code: 1,
    }),
    "nsenter: cannot open /run/netns/nope: No such file or directory",
  );
  // a path that happens to contain a network word is still nsenter's complaint
  assert.match(
    harnessProblem({
      stderr: "nsenter: cannot open /run/netns/timeout-refused: No such file\n",
      code: 1,
    })!,
    /^nsenter: cannot open/,
  );
  assert.equal(
    harnessProblem({ stderr: "nsenter: failed to execute nosuchprog: No such file\n", code: 127 }),
    "nsenter: failed to execute nosuchprog: No such file",
  );
  assert.equal(
    harnessProblem({ stderr: "bash: x: command not found\n", code: 127 }),
    "bash: x: command not found",
  );
  assert.equal(
    harnessProblem({ stderr: "socat E connect(): Connection refused\n", code: 1 }),
    undefined,
  );
  assert.equal(harnessProblem({ stderr: "", code: 1 }), undefined);
});
