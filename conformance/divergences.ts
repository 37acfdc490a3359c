/**
 * Expected divergences: cases where an implementation is known to differ from the
 * reference behaviour, each with its exact SIGNATURE: which assertion fails, what is
 * observed, and the engine versions it applies to. A listed case is an `xfail` only when it
 * fails exactly that way on a listed version; any other failure is a FAIL, and a listed case
 * that passes on a listed version is a FAIL too (keep this list true). On a version the
 * entry does not name (a newer Docker on a user's CI), the case is judged as any other.
 * @module
 */
import type { CaseResult } from "./types.ts";

/** One listed divergence. Patterns are regular-expression sources (case-sensitive). */
export interface Divergence {
  /** Implementation name (as its adapter reports it). */
  impl: string;
  /** Case id. */
  case: string;
  /** The failing assertion: a pattern the failure message must match. */
  assertion: string;
  /** What is observed: a pattern the failure's `observed` text must match. */
  observed: string;
  /** The engine versions it applies to: a pattern on the adapter's `version()`. */
  versions: string;
  reason: string;
  /** Where the behaviour comes from (Docker code, docs, issue). */
  ref: string;
}

/** The list. The Docker adapter's entries come with it. */
export const DIVERGENCES: Divergence[] = [
  {
    impl: "docker",
    case: "iso.internal-no-route",
    assertion: "^the sandbox has a default route via ",
    observed: "^default via \\d+\\.\\d+\\.\\d+\\.\\d+$",
    versions: "^20\\.10\\.",
    reason:
      "Docker 20.10 gives sandboxes on an internal network a default route via the bridge gateway and filters only FORWARD; egress beyond the host is still dropped (iso.internal-network passes). Current libnetwork sets no gateway for internal networks, which is what cnm and its issue 6 ask",
    ref: "observed on docker.io 20.10.24; research/libnetwork.md §3.1 (bridge Join, current)",
  },
  {
    impl: "docker",
    case: "dns.internal-no-forward",
    assertion: ": A www\\.example\\.test: got timeout",
    observed: "^timeout",
    versions: "^20\\.10\\.",
    reason:
      "Docker 20.10 tries the upstream from inside a sandbox that has only internal networks and never answers (the client times out); Docker 23+ answers SERVFAIL without forwarding, which moby's TestInternalNetworkDNS checks and cnm does",
    ref:
      "observed on docker.io 20.10.24 (dig: timeout after 3 s); moby integration/networking TestInternalNetworkDNS",
  },
  {
    impl: "docker",
    case: "iso.stable-during-changes",
    assertion:
      "while other networks were created and removed: expected blocked, [1-9]\\d* of 1000 packets arrived",
    observed: "^[1-9]\\d* of 1000 arrived$",
    versions: "^20\\.10\\.",
    reason:
      "Docker 20.10 rewrites its FORWARD jumps with separate iptables calls (delete, then insert) whenever a network is created or removed, so packets between two other networks cross meanwhile (measured here: 32 of 3000 pings during 6 create/remove cycles, 0 of 3000 without them; the reference: 0 of 3000 with them, its nft changes are atomic)",
    ref:
      "observed on docker.io 20.10.24; libnetwork iptables EnsureJumpRule / arrangeUserFilterRule (-D then -I)",
  },
  {
    impl: "docker",
    case: "macvlan.missing-parent-rejected",
    assertion: '^a macvlan network on parent nosuchif0: refused as "internal"',
    observed: "^internal: invalid subinterface vlan name nosuchif0",
    versions: "^20\\.10\\.",
    reason:
      "Docker 20.10 refuses a missing parent, and leaves nothing, but with an untyped error (HTTP 500): it takes a parent that does not exist for a VLAN sub-interface to create and fails on its name; the suite asks for a typed refusal (invalid or not-found), as cnm gives",
    ref:
      'observed on docker.io 20.10.24 (500 "invalid subinterface vlan name nosuchif0, example formatting is eth0.10"); libnetwork macvlan_setup.go parseVlan',
  },
];

/** The engine version a result was judged against, when the adapter reported one. */
function applies(d: Divergence, r: CaseResult, implName: string): boolean {
  return d.impl === implName && d.case === r.id;
}

/**
 * Judges a result against the listed divergences (for `version` of `implName`): an exact
 * match of a failure becomes `xfail`; a listed case that passes, or fails differently, on a
 * listed version becomes `fail` with the reason.
 */
export function applyDivergence(
  r: CaseResult,
  implName: string,
  version: string | undefined,
  list: Divergence[] = DIVERGENCES,
): CaseResult {
  const d = list.find((x) => applies(x, r, implName));
  if (!d) return r;
  const onVersion = version !== undefined && new RegExp(d.versions).test(version);
  if (!onVersion) return r;
  if (r.verdict === "fail") {
    const message = r.failure?.message ?? "";
    const observed = r.failure?.observed ?? "";
    if (new RegExp(d.assertion).test(message) && new RegExp(d.observed).test(observed)) {
      return { ...r, verdict: "xfail", reason: `${d.reason} (${d.ref}; ${implName} ${version})` };
    }
    return {
      ...r,
      failure: {
        ...(r.failure ?? { reproduce: [] }),
        message:
          `${message} — listed as a divergence of ${implName} ${version}, but not this way ` +
          `(expected a failure matching /${d.assertion}/ observing /${d.observed}/)`,
        reproduce: r.failure?.reproduce ?? [],
      },
    };
  }
  if (r.verdict === "pass") {
    return {
      ...r,
      verdict: "fail",
      failure: {
        message:
          `listed as a divergence of ${implName} ${version} but passed: update conformance/divergences.ts`,
        reproduce: [],
      },
    };
  }
  return r;
}
