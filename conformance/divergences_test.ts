import assert from "node:assert/strict";
import { applyDivergence, type Divergence } from "./divergences.ts";
import type { CaseResult } from "./types.ts";

const listed: Divergence = {
  impl: "docker",
  case: "iso.internal-no-route",
  assertion: "^the sandbox has a default route via ",
  observed: "^default via \\d+\\.\\d+\\.\\d+\\.\\d+$",
  versions: "^20\\.10\\.",
  reason: "r",
  ref: "ref",
};

function result(verdict: CaseResult["verdict"], message = "", observed = ""): CaseResult {
  return {
    id: "iso.internal-no-route",
    area: "iso",
    profile: "core",
    impl: "docker",
    verdict,
    ms: 1,
    asserts: "",
    mirrors: "",
    ...(verdict === "fail" ? { failure: { message, observed, reproduce: [] } } : {}),
  };
}

Deno.test("a listed divergence that fails exactly as listed on a listed version is an xfail", () => {
  const r = applyDivergence(
    result("fail", "the sandbox has a default route via 10.1.0.1", "default via 10.1.0.1"),
    "docker",
    "20.10.24",
    [listed],
  );
  assert.equal(r.verdict, "xfail");
  assert.match(r.reason ?? "", /20\.10\.24/);
});

Deno.test("a listed case that fails on another assertion is a FAIL, saying so", () => {
  const r = applyDivergence(
    result("fail", "s1 -> host: expected blocked, 3 of 10 packets arrived", "3 of 10"),
    "docker",
    "20.10.24",
    [listed],
  );
  assert.equal(r.verdict, "fail");
  assert.match(r.failure?.message ?? "", /listed as a divergence .* but not this way/);
});

Deno.test("a listed case whose observation differs is a FAIL", () => {
  const r = applyDivergence(
    result("fail", "the sandbox has a default route via fe80::1", "default via fe80::1"),
    "docker",
    "20.10.24",
    [listed],
  );
  assert.equal(r.verdict, "fail");
});

Deno.test("a listed case that passes on a listed version is a FAIL", () => {
  const r = applyDivergence(result("pass"), "docker", "20.10.7", [listed]);
  assert.equal(r.verdict, "fail");
  assert.match(r.failure?.message ?? "", /but passed/);
});

Deno.test("on a version the entry does not name, the case is judged as any other", () => {
  assert.equal(applyDivergence(result("pass"), "docker", "28.0.1", [listed]).verdict, "pass");
  const f = result("fail", "the sandbox has a default route via 10.1.0.1", "default via 10.1.0.1");
  assert.equal(applyDivergence(f, "docker", "28.0.1", [listed]).verdict, "fail");
  assert.equal(applyDivergence(f, "docker", undefined, [listed]).verdict, "fail");
});

Deno.test("other implementations and cases are untouched", () => {
  const f = result("fail", "the sandbox has a default route via 10.1.0.1", "default via 10.1.0.1");
  assert.equal(applyDivergence(f, "reference", "20.10.24", [listed]).verdict, "fail");
});
