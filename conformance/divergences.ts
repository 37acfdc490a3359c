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
export const DIVERGENCES: Divergence[] = [
  {
    impl: "docker",
    case: "iso.internal-no-route",
    reason:
      "Docker 20.10 gives sandboxes on an internal network a default route via the bridge gateway and filters only FORWARD, so the host's own addresses answer; egress beyond the host is still dropped (iso.internal-network passes). Current libnetwork sets no gateway for internal networks, which is what cnm and its issue 6 ask",
    ref: "observed on docker.io 20.10.24; research/libnetwork.md §3.1 (bridge Join, current)",
  },
  {
    impl: "docker",
    case: "dns.internal-no-forward",
    reason:
      "Docker 20.10 tries the upstream from inside a sandbox that has only internal networks and never answers (the client times out); Docker 23+ answers SERVFAIL without forwarding, which moby's TestInternalNetworkDNS checks and cnm does",
    ref:
      "observed on docker.io 20.10.24 (dig: timeout after 3 s); moby integration/networking TestInternalNetworkDNS",
  },
  {
    impl: "docker",
    case: "macvlan.internal-no-parent",
    reason:
      'Docker 20.10 makes the private parent of a macvlan network without -o parent as a dummy link (dm-<id[:12]>), and this kernel has no dummy links, so the create fails ("operation not supported"); cnm uses a veth pair, as issue 9 asks',
    ref:
      "observed on docker.io 20.10.24 (network create: operation not supported); libnetwork macvlan_network.go createNetwork / createDummyLink",
  },
];
