/**
 * Limits on what a caller may store in one object (issue 14): maps of strings (network
 * labels and options) at most 64 entries, keys at most 128 bytes, values at most 4 KiB, in
 * UTF-8. The API checks them before the controller is called; the controller checks them
 * too, for a program that embeds it.
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";
import { quotedPreview } from "./names.ts";

/** Most entries in one map of strings (labels, options). */
export const MAX_MAP_ENTRIES = 64;
/** Longest key of a map of strings, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 128;
/** Longest value of a map of strings, in UTF-8 bytes (4 KiB). */
export const MAX_VALUE_BYTES = 4096;

const utf8 = new TextEncoder();

function byteLength(s: string): number {
  return utf8.encode(s).length;
}

/** The first way a map of strings breaks the limits, as a message, or undefined. */
export function mapProblem(what: string, map: Record<string, string>): string | undefined {
  const entries = Object.entries(map);
  if (entries.length > MAX_MAP_ENTRIES) {
    return `${entries.length} ${what}s, the limit is ${MAX_MAP_ENTRIES}`;
  }
  for (const [key, value] of entries) {
    const k = byteLength(key);
    if (k > MAX_KEY_BYTES) {
      return `${what} key ${quotedPreview(key)} is ${k} bytes, the limit is ${MAX_KEY_BYTES}`;
    }
    const v = byteLength(value);
    if (v > MAX_VALUE_BYTES) {
      return `the value of ${what} ${
        JSON.stringify(key)
      } is ${v} bytes, the limit is ${MAX_VALUE_BYTES}`;
    }
  }
  return undefined;
}

/** Throws a one-line InvalidArgumentError when a map of strings breaks the limits. */
export function validateStringMap(what: string, map: Record<string, string>): void {
  const problem = mapProblem(what, map);
  if (problem) throw new InvalidArgumentError(problem);
}
