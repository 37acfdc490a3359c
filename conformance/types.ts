/**
 * Shared types of the runner, the cases and the reports.
 * @module
 */
import type { Capability } from "./impl.ts";

/**
 * How a case ended. `xfail`: a listed divergence that failed exactly as listed (same
 * assertion, same observation, a listed engine version). `error`: the harness could not
 * judge (a probe could not run, a witness missed its own control): never a pass, and
 * counted as failed.
 */
export type Verdict = "pass" | "fail" | "skip" | "xfail" | "error";

/** A reachability grid: rows are sources, columns destinations. */
export interface Grid {
  /** Column (destination) labels; also the row labels when `rows` is absent. */
  labels: string[];
  /** Row (source) labels, when sources differ from destinations. */
  rows?: string[];
  expected: boolean[][];
  observed: boolean[][];
}

/** Why a case failed, with what a user needs to look into it. */
export interface Failure {
  message: string;
  expected?: string;
  observed?: string;
  /** Commands the user can paste to reproduce (`nsenter --net=... ping ...`). */
  reproduce: string[];
  /** Relevant kernel state (`ip addr`, `ip route`, `nft list ruleset`). */
  state?: string;
}

/** The result of one case against one implementation. */
export interface CaseResult {
  id: string;
  area: string;
  profile: string;
  impl: string;
  verdict: Verdict;
  /** Why it was skipped, or the divergence's reason for an xfail. */
  reason?: string;
  ms: number;
  /** What the case asserts (one sentence). */
  asserts: string;
  /** Which Docker behaviour or test it mirrors. */
  mirrors: string;
  failure?: Failure;
  grid?: Grid;
  /** Details a case reports (observed shares, timings). */
  notes?: string[];
  /** Which run of the case this is, with `--repeat N` (0-based). */
  repeat?: number;
}

/** Wall time of one profile's cases against one implementation, with its budget. */
export interface ProfileTiming {
  impl: string;
  profile: string;
  ms: number;
  /** The speed budget on a 2-core machine, when the profile has one. */
  budgetMs?: number;
}

/** A whole run. */
export interface RunResult {
  impls: string[];
  results: CaseResult[];
  startedAt: string;
  wallMs: number;
  /**
   * What the implementation left on the machine after its own teardown, found before any
   * forced removal (fails the run when not empty).
   */
  residue: string[];
  /** What the harness then had to remove by force (namespaces, processes, files). */
  forced?: string[];
  /** Wall time per profile and implementation. */
  timings?: ProfileTiming[];
  /** With `--repeat N`: cases whose verdict changed between repetitions. */
  unstable?: string[];
  /** Engine versions the adapters reported (`docker: 20.10.24`). */
  versions?: Record<string, string>;
  /** Facts about the machine: kernel, nft version, ... */
  environment: Record<string, string>;
}

/** Static facts of a case, used by listings. */
export interface CaseMeta {
  id: string;
  area: string;
  profile: string;
  needs: Capability[];
  asserts: string;
  mirrors: string;
}
