/**
 * Plain-text helpers shared by the file reporters.
 * @module
 */
import type { CaseResult, Failure } from "../types.ts";

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** Removes ANSI colour/cursor sequences. */
export function stripAnsi(s: string): string {
  return s.replace(ANSI, "");
}

/** A failure as plain text: message, expected/observed, reproduce commands, state. */
export function failureText(f: Failure | undefined): string {
  if (!f) return "(no details)";
  const lines = [f.message];
  if (f.expected !== undefined) lines.push(`expected: ${f.expected}`);
  if (f.observed !== undefined) lines.push(`observed: ${f.observed}`);
  if (f.reproduce.length) lines.push("reproduce:", ...f.reproduce.map((c) => `  ${c}`));
  if (f.state) lines.push("state:", ...f.state.trimEnd().split("\n").map((l) => `  ${l}`));
  return stripAnsi(lines.join("\n"));
}

/** The reason text of an xfail. */
export function xfailReason(r: CaseResult): string {
  return `expected divergence: ${r.reason ?? "(no reason given)"}`;
}
