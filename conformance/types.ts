/**
 * Shared types of the runner, the cases and the reports.
 * @module
 */
import type { Capability } from "./impl.ts";

/** How a case ended. `xfail`: a listed divergence that failed as listed. */
export type Verdict = "pass" | "fail" | "skip" | "xfail";

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
}

/** A whole run. */
export interface RunResult {
  impls: string[];
  results: CaseResult[];
  startedAt: string;
  wallMs: number;
  /** What the run left on the machine (fails the run when not empty). */
  residue: string[];
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
