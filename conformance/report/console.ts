/**
 * Console rendering of a run: one line per case, failure blocks, reachability grids, a
 * differential table, and the summary whose last line is `N passed, N failed, N skipped`.
 * Pure functions: they return text and print nothing.
 * @module
 */
import pc from "picocolors";
import type { CaseResult, Grid, RunResult, Verdict } from "../types.ts";

const LABEL: Record<Verdict, string> = {
  pass: "PASS",
  fail: "FAIL",
  skip: "SKIP",
  xfail: "XFAIL",
  error: "ERROR",
};
const COLOUR: Record<Verdict, (s: string) => string> = {
  pass: pc.green,
  fail: pc.red,
  skip: pc.yellow,
  xfail: pc.cyan,
  error: pc.magenta,
};

/** Options of {@linkcode caseLine}. */
export interface CaseLineOptions {
  /** Show the implementation's name (differential runs). Default: false. */
  showImpl?: boolean;
  /** Width the case id is padded to (default 34). */
  idWidth?: number;
  /** Width the implementation name is padded to (default 10). */
  implWidth?: number;
}

/** A verdict as coloured text, padded to 5 columns when `pad`. */
export function verdictText(v: Verdict, pad = true): string {
  return COLOUR[v](pad ? LABEL[v].padEnd(5) : LABEL[v]);
}

/** Milliseconds as `12 ms` or `3.4 s`. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "? ms";
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * One line for a finished case: coloured verdict, padded id, the implementation (when
 * `showImpl`), the time, and the skip/xfail reason (dimmed) or the failure's message.
 */
export function caseLine(r: CaseResult, opts: CaseLineOptions = {}): string {
  const parts = [verdictText(r.verdict), r.id.padEnd(opts.idWidth ?? 34)];
  if (opts.showImpl) parts.push(r.impl.padEnd(opts.implWidth ?? 10));
  parts.push(formatMs(r.ms).padStart(8));
  let line = parts.join(" ");
  if ((r.verdict === "skip" || r.verdict === "xfail") && r.reason) {
    line += "  " + pc.dim(r.reason);
  } else if ((r.verdict === "fail" || r.verdict === "error") && r.failure?.message) {
    line += "  " + pc.red(firstLine(r.failure.message));
  } else if (r.verdict === "pass" && r.notes?.length) {
    line += "  " + pc.dim(r.notes.join("; "));
  }
  return line;
}

function firstLine(s: string): string {
  return s.split("\n")[0];
}

function indent(text: string, by: string): string[] {
  return text.replace(/\s+$/, "").split("\n").map((l) => by + l);
}

/** Options of {@linkcode failureBlock}. */
export interface FailureBlockOptions {
  /** At most this many lines (default 60); the rest is cut with a note. */
  maxLines?: number;
}

/**
 * The explanation of a failed case: message, expected vs observed, the reachability grid
 * when it has one, the commands to reproduce it, and the kernel state; at most ~60 lines.
 * Empty for a case without failure details that did not fail.
 */
export function failureBlock(r: CaseResult, opts: FailureBlockOptions = {}): string {
  if (!r.failure && r.verdict !== "fail" && r.verdict !== "error") return "";
  const f = r.failure;
  const lines: string[] = [pc.bold(`${verdictText(r.verdict, false)} ${r.id} [${r.impl}]`)];
  lines.push(...indent(f?.message ?? "(no details)", "  "));
  if (r.asserts) lines.push(pc.dim(`  asserts: ${r.asserts}`));
  if (f?.expected !== undefined) lines.push(...labelled("expected", f.expected));
  if (f?.observed !== undefined) lines.push(...labelled("observed", f.observed));
  if (r.grid) lines.push(...indent(gridBlock(r.grid), "  "));
  if (f?.reproduce.length) {
    lines.push("  reproduce:");
    for (const cmd of f.reproduce) lines.push(...indent(cmd, "    "));
  }
  if (f?.state) {
    lines.push("  state:");
    lines.push(...indent(f.state, "    ").map((l) => pc.dim(l)));
  }
  const max = Math.max(opts.maxLines ?? 60, 2);
  if (lines.length > max) {
    const cut = lines.length - (max - 1);
    lines.splice(max - 1, cut, pc.dim(`  … ${cut} more lines (see the JSON report)`));
  }
  return lines.join("\n");
}

function labelled(label: string, value: string): string[] {
  if (!value.includes("\n")) return [`  ${label}: ${value}`];
  return [`  ${label}:`, ...indent(value, "    ")];
}

/** Cell glyphs of {@linkcode gridBlock}. */
export const GRID_GLYPHS = {
  reachable: "✓",
  blocked: "·",
  differs: "!",
  unknown: "?",
} as const;

/**
 * A reachability grid (rows: sources, columns: destinations, same labels): `✓` reachable
 * as expected, `·` blocked as expected, `!` differs (each difference listed below with
 * what was expected and observed). Long labels are numbered in the header.
 */
export function gridBlock(grid: Grid): string {
  const n = grid.labels.length;
  const numbered = grid.labels.some((l) => l.length > 3);
  const heads = grid.labels.map((l, i) => numbered ? String(i + 1) : l);
  const colWidth = Math.max(1, ...heads.map((h) => h.length)) + 1;
  const rowLabels = grid.labels.map((l, i) => numbered ? `${String(i + 1).padStart(2)} ${l}` : l);
  const rowWidth = Math.max(0, ...rowLabels.map((l) => l.length));
  const lines = [`${" ".repeat(rowWidth)} ${heads.map((h) => h.padStart(colWidth)).join("")}`];
  const diffs: string[] = [];
  const word = (v: boolean | undefined) =>
    v === undefined ? "unknown" : v ? "reachable" : "blocked";
  for (let i = 0; i < n; i++) {
    let row = `${rowLabels[i].padEnd(rowWidth)} `;
    for (let j = 0; j < n; j++) {
      const e = grid.expected[i]?.[j];
      const o = grid.observed[i]?.[j];
      let cell: string;
      if (e === undefined || o === undefined) cell = GRID_GLYPHS.unknown;
      else if (e !== o) {
        cell = pc.red(GRID_GLYPHS.differs);
        diffs.push(
          `  ! ${grid.labels[i]} → ${grid.labels[j]}: expected ${word(e)}, observed ${word(o)}`,
        );
      } else cell = e ? pc.green(GRID_GLYPHS.reachable) : pc.dim(GRID_GLYPHS.blocked);
      row += " ".repeat(colWidth - 1) + cell;
    }
    lines.push(row.trimEnd());
  }
  lines.push(
    pc.dim(
      `${GRID_GLYPHS.reachable} = reachable as expected, ${GRID_GLYPHS.blocked} = blocked as expected, ` +
        `${GRID_GLYPHS.differs} = differs: expected X observed Y`,
    ),
  );
  if (diffs.length) lines.push(`${diffs.length} differ:`, ...diffs);
  return lines.join("\n");
}

/**
 * Counts as the summary line reports them (xfail under skipped; error and residue as
 * failures).
 */
export function counts(run: RunResult): { passed: number; failed: number; skipped: number } {
  let passed = 0, failed = 0, skipped = 0;
  for (const r of run.results) {
    if (r.verdict === "pass") passed++;
    else if (r.verdict === "fail" || r.verdict === "error") failed++;
    else skipped++;
  }
  if (run.residue.length > 0) failed++;
  return { passed, failed, skipped };
}

/**
 * The end of a run's output: wall time, failures, skip reasons, expected divergences
 * (xfail) with their reasons, residue; and as the last line, alone and uncoloured,
 * `N passed, N failed, N skipped` (xfail counted as skipped, residue as one failed audit).
 */
export function summary(run: RunResult): string {
  const lines: string[] = [];
  const several = run.impls.length > 1;
  const who = (r: CaseResult) => several ? `${r.id} [${r.impl}]` : r.id;
  lines.push(
    `Ran ${run.results.length} case results against ${run.impls.join(", ") || "(none)"} ` +
      `in ${(run.wallMs / 1000).toFixed(1)} s (started ${run.startedAt})`,
  );
  for (const t of run.timings ?? []) {
    const budget = t.budgetMs === undefined
      ? ""
      : ` (budget ${formatMs(t.budgetMs)}${t.ms > t.budgetMs ? pc.red(", over") : ""})`;
    lines.push(`  profile ${t.profile} [${t.impl}]: ${formatMs(t.ms)}${budget}`);
  }
  for (const [impl, v] of Object.entries(run.versions ?? {})) {
    lines.push(pc.dim(`  ${impl} reports version ${v}`));
  }
  const failed = run.results.filter((r) => r.verdict === "fail");
  if (failed.length) {
    lines.push(pc.red(`Failed (${failed.length}):`));
    for (const r of failed) {
      lines.push(`  ${who(r)}: ${firstLine(r.failure?.message ?? "(no details)")}`);
    }
  }
  const errors = run.results.filter((r) => r.verdict === "error");
  if (errors.length) {
    lines.push(pc.magenta(`Harness errors, counted as failed (${errors.length}):`));
    for (const r of errors) {
      lines.push(`  ${who(r)}: ${firstLine(r.failure?.message ?? "(no details)")}`);
    }
  }
  if (run.unstable?.length) {
    lines.push(pc.red(`Verdicts that changed between repetitions (${run.unstable.length}):`));
    for (const u of run.unstable) lines.push(`  ${u}`);
  }
  const skipped = run.results.filter((r) => r.verdict === "skip");
  if (skipped.length) {
    const byReason = new Map<string, number>();
    for (const r of skipped) {
      const k = r.reason ?? "(no reason)";
      byReason.set(k, (byReason.get(k) ?? 0) + 1);
    }
    lines.push(pc.yellow(`Skipped (${skipped.length}):`));
    for (const [reason, n] of byReason) lines.push(pc.dim(`  ${n} × ${reason}`));
  }
  const xfails = run.results.filter((r) => r.verdict === "xfail");
  if (xfails.length) {
    lines.push(pc.cyan(`Expected divergences (xfail, counted as skipped) (${xfails.length}):`));
    for (const r of xfails) lines.push(`  ${who(r)}: ${r.reason ?? "(no reason given)"}`);
  }
  if (run.residue.length) {
    lines.push(pc.red(`Audit failed: the run left ${run.residue.length} thing(s) behind:`));
    for (const item of run.residue) lines.push(`  ${item}`);
  }
  if (run.forced?.length) {
    lines.push(pc.dim(`Force-removed after the audit (${run.forced.length}):`));
    for (const item of run.forced) lines.push(pc.dim(`  ${item}`));
  }
  const c = counts(run);
  lines.push(`${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`);
  return lines.join("\n");
}

/**
 * For a run against two or more implementations: one row per case id, one column per
 * implementation with its verdict; rows whose verdicts differ are marked `*`. Empty for a
 * single implementation.
 */
export function differentialTable(run: RunResult): string {
  if (run.impls.length < 2) return "";
  const ids: string[] = [];
  const cell = new Map<string, Verdict>();
  for (const r of run.results) {
    if (!ids.includes(r.id)) ids.push(r.id);
    cell.set(`${r.id}\0${r.impl}`, r.verdict);
  }
  const idWidth = Math.max(4, ...ids.map((id) => id.length));
  const widths = run.impls.map((i) => Math.max(5, i.length));
  const lines = [
    `  ${"case".padEnd(idWidth)}  ${run.impls.map((i, k) => i.padEnd(widths[k])).join("  ")}`
      .trimEnd(),
  ];
  let differing = 0;
  for (const id of ids) {
    const verdicts = run.impls.map((impl) => cell.get(`${id}\0${impl}`));
    const differ = new Set(verdicts.map((v) => v ?? "-")).size > 1;
    if (differ) differing++;
    const cells = verdicts.map((v, k) => {
      const text = v ? LABEL[v] : "-";
      const padded = text.padEnd(widths[k]);
      return v ? COLOUR[v](padded) : pc.dim(padded);
    });
    lines.push(`${differ ? "*" : " "} ${id.padEnd(idWidth)}  ${cells.join("  ")}`.trimEnd());
  }
  lines.push(pc.dim(`* = verdicts differ (${differing} of ${ids.length} cases)`));
  return lines.join("\n");
}
