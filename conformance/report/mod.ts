/**
 * Reporters of a conformance run: console text (lines, failure blocks, grids, summary,
 * differential table), JUnit XML, TAP 13 and JSON. All pure: they take a `RunResult` (or
 * a part of it) and return text.
 * @module
 */
export {
  caseLine,
  type CaseLineOptions,
  counts,
  differentialTable,
  failureBlock,
  type FailureBlockOptions,
  formatMs,
  GRID_GLYPHS,
  gridBlock,
  summary,
  verdictText,
} from "./console.ts";
export { escapeXml, toJUnit } from "./junit.ts";
export { toTap } from "./tap.ts";
export { toJson } from "./json.ts";
export { failureText, stripAnsi } from "./text.ts";
