/**
 * The run as pretty JSON (the `RunResult` as is), for tools and for the full details a
 * truncated console block leaves out.
 * @module
 */
import type { RunResult } from "../types.ts";

/** The run as pretty-printed JSON, newline-terminated. */
export function toJson(run: RunResult): string {
  return JSON.stringify(run, null, 2) + "\n";
}
