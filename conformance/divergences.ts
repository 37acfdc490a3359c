/**
 * Expected divergences: cases where an implementation is known to differ from the
 * reference behaviour, with the reason. A listed case that fails is an `xfail`; a listed
 * case that passes is a failure (keep this list true).
 * @module
 */

/** One listed divergence. */
export interface Divergence {
  /** Implementation name (as its adapter reports it). */
  impl: string;
  /** Case id. */
  case: string;
  reason: string;
  /** Where the behaviour comes from (Docker code, docs, issue). */
  ref: string;
}

/** The list. The Docker adapter's entries come with it. */
export const DIVERGENCES: Divergence[] = [];
