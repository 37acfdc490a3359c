/**
 * JUnit XML for CI systems: one `<testsuite>` per implementation, one `<testcase>` per
 * case (`classname` = area, `name` = id, `time` in seconds); failures carry message and
 * details, skips their reason, xfails are skipped with `expected divergence: reason`.
 * Residue left by the run is one more failed case, `audit.residue`, in suite `audit`.
 * @module
 */
import type { CaseResult, RunResult } from "../types.ts";
import { failureText, stripAnsi, xfailReason } from "./text.ts";

// deno-lint-ignore no-control-regex
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Escapes text for XML content and attribute values (also drops characters XML forbids). */
export function escapeXml(s: string): string {
  return stripAnsi(s)
    .replace(INVALID_XML, "")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

function testcase(r: CaseResult): string {
  const open = `    <testcase classname="${escapeXml(r.area)}" name="${escapeXml(r.id)}" time="${
    seconds(r.ms)
  }"`;
  switch (r.verdict) {
    case "pass":
      return `${open}/>`;
    case "skip":
      return `${open}>\n      <skipped message="${
        escapeXml(r.reason ?? "skipped")
      }"/>\n    </testcase>`;
    case "xfail":
      return `${open}>\n      <skipped message="${escapeXml(xfailReason(r))}"/>\n    </testcase>`;
    case "fail": {
      const message = escapeXml((r.failure?.message ?? "failed").split("\n")[0]);
      return `${open}>\n      <failure message="${message}" type="conformance">${
        escapeXml(failureText(r.failure))
      }</failure>\n    </testcase>`;
    }
    case "error": {
      const message = escapeXml((r.failure?.message ?? "harness error").split("\n")[0]);
      return `${open}>\n      <error message="${message}" type="harness">${
        escapeXml(failureText(r.failure))
      }</error>\n    </testcase>`;
    }
  }
}

interface Suite {
  name: string;
  cases: string[];
  tests: number;
  failures: number;
  skipped: number;
  ms: number;
}

/** The run as a JUnit XML document. */
export function toJUnit(run: RunResult): string {
  const suites: Suite[] = [];
  const impls = [...run.impls];
  for (const r of run.results) if (!impls.includes(r.impl)) impls.push(r.impl);
  for (const impl of impls) {
    const rs = run.results.filter((r) => r.impl === impl);
    suites.push({
      name: `cnm.conformance.${impl}`,
      cases: rs.map(testcase),
      tests: rs.length,
      failures: rs.filter((r) => r.verdict === "fail" || r.verdict === "error").length,
      skipped: rs.filter((r) => r.verdict === "skip" || r.verdict === "xfail").length,
      ms: rs.reduce((a, r) => a + r.ms, 0),
    });
  }
  if (run.residue.length) {
    const body = escapeXml(run.residue.join("\n"));
    suites.push({
      name: "cnm.conformance.audit",
      cases: [
        `    <testcase classname="audit" name="audit.residue" time="0.000">\n      <failure message="${
          escapeXml(`the run left ${run.residue.length} thing(s) behind`)
        }" type="residue">${body}</failure>\n    </testcase>`,
      ],
      tests: 1,
      failures: 1,
      skipped: 0,
      ms: 0,
    });
  }
  const total = (k: "tests" | "failures" | "skipped") => suites.reduce((a, s) => a + s[k], 0);
  const props = Object.entries(run.environment).map(([k, v]) =>
    `      <property name="${escapeXml(k)}" value="${escapeXml(v)}"/>`
  );
  const out = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="cnm conformance" tests="${total("tests")}" failures="${
      total("failures")
    }" errors="0" skipped="${total("skipped")}" time="${seconds(run.wallMs)}">`,
  ];
  for (const s of suites) {
    out.push(
      `  <testsuite name="${escapeXml(s.name)}" tests="${s.tests}" failures="${s.failures}" ` +
        `errors="0" skipped="${s.skipped}" time="${seconds(s.ms)}" timestamp="${
          escapeXml(run.startedAt)
        }">`,
    );
    if (props.length) out.push("    <properties>", ...props, "    </properties>");
    out.push(...s.cases, "  </testsuite>");
  }
  out.push("</testsuites>", "");
  return out.join("\n");
}
