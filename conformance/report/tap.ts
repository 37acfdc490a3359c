/**
 * TAP version 13: one test point per case result (`ok N - id`, `not ok N - id` with a
 * YAML diagnostic block, `ok N - id # SKIP reason`); an xfail is
 * `not ok N - id # TODO expected divergence: reason` (TAP's expected failure, which does
 * not fail the run). Residue is one more `not ok` point, `audit.residue`.
 * @module
 */
import { stringify } from "yaml";
import type { CaseResult, RunResult } from "../types.ts";
import { stripAnsi, xfailReason } from "./text.ts";

/** A directive's text: one line, no `#`. */
function directive(s: string): string {
  return stripAnsi(s).replace(/[\r\n]+/g, " ").replaceAll("#", "\\#");
}

function description(r: CaseResult, several: boolean): string {
  const d = several ? `${r.id} [${r.impl}]` : r.id;
  return d.replaceAll("#", "\\#");
}

function yamlBlock(data: Record<string, unknown>): string[] {
  const body = stringify(data, { lineWidth: 0 }).trimEnd().split("\n");
  return ["  ---", ...body.map((l) => `  ${l}`), "  ..."];
}

/** The run as a TAP version 13 stream. */
export function toTap(run: RunResult): string {
  const several = run.impls.length > 1;
  const points = run.results.length + (run.residue.length ? 1 : 0);
  const out = ["TAP version 13", `1..${points}`];
  run.results.forEach((r, i) => {
    const n = i + 1;
    const d = description(r, several);
    switch (r.verdict) {
      case "pass":
        out.push(`ok ${n} - ${d}`);
        break;
      case "skip":
        out.push(`ok ${n} - ${d} # SKIP ${directive(r.reason ?? "skipped")}`);
        break;
      case "xfail":
        out.push(`not ok ${n} - ${d} # TODO ${directive(xfailReason(r))}`);
        break;
      case "fail":
      case "error": {
        out.push(`not ok ${n} - ${d}`);
        const f = r.failure;
        const diag: Record<string, unknown> = {
          message: stripAnsi(f?.message ?? "failed"),
          severity: r.verdict,
          impl: r.impl,
          area: r.area,
          duration_ms: Math.round(r.ms),
        };
        if (f?.expected !== undefined) diag.expected = stripAnsi(f.expected);
        if (f?.observed !== undefined) diag.observed = stripAnsi(f.observed);
        if (f?.reproduce.length) diag.reproduce = f.reproduce.map(stripAnsi);
        if (f?.state) diag.state = stripAnsi(f.state);
        out.push(...yamlBlock(diag));
        break;
      }
    }
  });
  if (run.residue.length) {
    out.push(`not ok ${points} - audit.residue`);
    out.push(...yamlBlock({
      message: `the run left ${run.residue.length} thing(s) behind`,
      severity: "fail",
      residue: run.residue,
    }));
  }
  return out.join("\n") + "\n";
}
