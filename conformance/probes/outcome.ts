/**
 * Deciding a probe's outcome from both ends: what the prober saw (a {@linkcode ProbeResult})
 * and how many of its token-carrying packets the target's witness saw arrive. A pure
 * function, so every rule is unit-tested.
 * @module
 */
import type { ProbeResult } from "./probes.ts";

/** What happened to a probe, judged from the receiving side. */
export type Outcome =
  /** The packet arrived at the target (and, for a two-way probe, an answer came back). */
  | "reached"
  /** Nothing arrived at the target: dropped, or rejected on the way. */
  | "blocked"
  /** The packet arrived at the target, but no answer (or a reset) came from it. */
  | "target-refused"
  /** The probe could not run, or the witness contradicts the prober: fix the harness. */
  | "harness-error";

/** Input of {@linkcode classifyProbe}. */
export interface ProbeEvidence {
  /** What the prober saw. */
  probe: ProbeResult;
  /** Packets carrying the probe's token that the target's witness saw (after a sync). */
  arrivals: number;
  /** The identity the target answers with (its responders'), when known. */
  expectIdentity?: string;
}

/** The verdict of {@linkcode classifyProbe}, with the reason in words. */
export interface ProbeVerdict {
  outcome: Outcome;
  why: string;
}

function failureText(probe: ProbeResult): string {
  const failure = probe.failure ?? "no answer";
  return probe.detail.startsWith(`${failure}:`) ? probe.detail : `${failure}: ${probe.detail}`;
}

/**
 * Classifies a probe from the prober's result and the target witness's count:
 *
 * - the probe could not run (`failure: "error"`) → `harness-error`;
 * - arrived and answered → `reached` (`why` names the answer, and says so when it came
 *   from another identity than expected);
 * - arrived, not answered → `target-refused` (the target got it; no answer or a reset
 *   came from it);
 * - nothing arrived but the expected identity (or an identity-less ICMP reply) answered →
 *   `harness-error`: the target answered but its witness saw nothing, so the witness is
 *   broken;
 * - nothing arrived and another identity answered → `reached` (answered by someone else:
 *   `why` says who; without `expectIdentity` any identity counts as someone else);
 * - nothing arrived, no answer → `blocked` (`why` tells a silent drop from a rejection
 *   by something other than the target, from `failure` and `detail`).
 *
 * A one-way probe (`oneWay`, {@linkcode burstUdp}) expects no answer: `reached` when
 * something arrived, else `blocked`.
 */
export function classifyProbe(evidence: ProbeEvidence): ProbeVerdict {
  const { probe, arrivals, expectIdentity } = evidence;
  if (!Number.isInteger(arrivals) || arrivals < 0) {
    throw new RangeError(`invalid arrival count ${arrivals}`);
  }
  if (probe.failure === "error") {
    return { outcome: "harness-error", why: `the probe could not run: ${probe.detail}` };
  }
  const seen = `the target's witness saw ${arrivals} packet${arrivals === 1 ? "" : "s"}`;
  if (probe.oneWay) {
    if (arrivals > 0) return { outcome: "reached", why: `${seen} (${probe.detail})` };
    return { outcome: "blocked", why: `nothing arrived at the target (${probe.detail})` };
  }
  const who = probe.identity === undefined ? undefined : JSON.stringify(probe.identity);
  if (arrivals > 0) {
    if (probe.ok) {
      if (
        expectIdentity !== undefined && probe.identity !== undefined &&
        probe.identity !== expectIdentity
      ) {
        return {
          outcome: "reached",
          why: `${seen}, but ${who} answered, not ${JSON.stringify(expectIdentity)}`,
        };
      }
      return { outcome: "reached", why: `${seen}; ${probe.detail}` };
    }
    return {
      outcome: "target-refused",
      why: `${seen}, but no answer came from it (${failureText(probe)})`,
    };
  }
  if (probe.ok) {
    if (probe.identity === undefined || probe.identity === expectIdentity) {
      return {
        outcome: "harness-error",
        why: `the target answered (${probe.detail}) but its witness saw nothing: ` +
          `the witness is broken`,
      };
    }
    return {
      outcome: "reached",
      why: `answered by ${who}${
        expectIdentity === undefined ? "" : `, not ${JSON.stringify(expectIdentity)}`
      }; nothing arrived at the target`,
    };
  }
  const how = probe.failure === "refused" || probe.failure === "unreachable"
    ? `rejected by something other than the target (${failureText(probe)})`
    : probe.failure === "status"
    ? `answered by something other than the target (${probe.detail})`
    : `dropped on the way (${failureText(probe)})`;
  return { outcome: "blocked", why: `nothing arrived at the target: ${how}` };
}
