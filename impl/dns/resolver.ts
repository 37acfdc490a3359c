/**
 * The resolver's decisions, free of sockets: one DNS message in, the bytes to send back out
 * (or a promise of them when the query is forwarded, or null to stay silent). The service
 * (service.ts) feeds it from each sandbox's listeners; the tests feed it directly.
 *
 * Docker 20.10's response semantics (research/libnetwork.md §4.4):
 * - A, AAAA and PTR are answered from the sandbox's networks; MX for a local name is
 *   NOERROR with no answers; every other type, and every name not found, is forwarded;
 * - a local name without an address of the asked family: NODATA (NOERROR, no answers);
 * - several addresses: all of them, in a random order on every query;
 * - forwarding happens only when the sandbox has a non-internal network and upstreams are
 *   configured; otherwise SERVFAIL (`TestInternalNetworkDNS`, `TestReplySERVFAIL`);
 * - UDP answers are cut at 512 bytes or the client's EDNS0 size with TC set; TCP answers
 *   go up to 65535 bytes (`TestOversizedDNSReply`);
 * - malformed queries: FORMERR when the header can be answered, NOTIMP for opcodes other
 *   than QUERY, silence for responses and runts (miekg/dns's acceptance rules).
 *
 * Local answers are cached per view (a sandbox's ordered network set), query type and
 * lower-case name, as encoded templates; a hit copies the template and patches the ID,
 * flags and question (wire.ts). Record changes drop the caches of the views concerned.
 * @module
 */
import { DnsRecords, type View } from "./records.ts";
import {
  type AnswerTemplate,
  buildTemplate,
  CLASS_ANY,
  CLASS_IN,
  isFailure,
  MAX_MESSAGE,
  type ParsedQuery,
  parseQuery,
  RCODE,
  rcodeReply,
  renderTemplate,
  TYPE_A,
  TYPE_AAAA,
  TYPE_MX,
  TYPE_PTR,
} from "./wire.ts";

/**
 * Sends a query upstream: resolves to the upstream's reply (with the client's ID), or null
 * when no upstream answered usefully (the resolver then answers SERVFAIL).
 */
export type ForwardFn = (msg: Uint8Array, q: ParsedQuery, tcp: boolean) => Promise<
  Uint8Array | null
>;

/** Counters of what the resolver did, since it started. */
export interface ResolverStats {
  /** Messages handed to the resolver. */
  queries: number;
  /** Answered from local records (including NODATA). */
  local: number;
  /** Of those, answered from the cache. */
  cached: number;
  /** Sent upstream. */
  forwarded: number;
  /** SERVFAIL because forwarding was not allowed or not possible. */
  servfail: number;
  /** FORMERR or NOTIMP replies to malformed or unsupported messages. */
  rejected: number;
  /** Messages dropped without a reply (responses, runts). */
  dropped: number;
}

/** Options of a {@linkcode Resolver}. */
export interface ResolverOptions {
  /** How to forward; absent when there are no upstreams (unknown names get SERVFAIL). */
  forward?: ForwardFn;
  /** Most cached answers per view before the view's cache is emptied (default 10000). */
  maxCacheEntries?: number;
}

const REVERSE_V4 = ".in-addr.arpa";
const REVERSE_V6 = ".ip6.arpa";

/** Answers DNS messages for sandboxes from a {@linkcode DnsRecords}. */
export class Resolver {
  /** The records answers come from; change them through the service or directly. */
  readonly records: DnsRecords = new DnsRecords();
  /** What the resolver did so far. */
  readonly stats: ResolverStats = {
    queries: 0,
    local: 0,
    cached: 0,
    forwarded: 0,
    servfail: 0,
    rejected: 0,
    dropped: 0,
  };
  #forward?: ForwardFn;
  readonly #maxCache: number;

  constructor(opts: ResolverOptions = {}) {
    this.#forward = opts.forward;
    this.#maxCache = opts.maxCacheEntries ?? 10000;
  }

  /**
   * The reply to `msg`, a query that reached sandbox `sandboxId` over UDP or TCP: bytes to
   * send, null to send nothing, or a promise of either (forwarded queries). Never throws
   * for anything in `msg`.
   */
  answer(
    sandboxId: string,
    msg: Uint8Array,
    tcp: boolean,
  ): Uint8Array | null | Promise<Uint8Array | null> {
    this.stats.queries++;
    const q = parseQuery(msg);
    if (isFailure(q)) {
      if (q.drop) {
        this.stats.dropped++;
        return null;
      }
      this.stats.rejected++;
      return rcodeReply(msg, q.rcode);
    }
    const view = this.records.viewOf(sandboxId);
    const qt = q.qtype;
    if (
      q.plain && (q.qclass === CLASS_IN || q.qclass === CLASS_ANY) &&
      (qt === TYPE_A || qt === TYPE_AAAA || qt === TYPE_PTR || qt === TYPE_MX)
    ) {
      let byName = view.cache.get(qt) as Map<string, AnswerTemplate> | undefined;
      let t = byName?.get(q.name);
      if (t) this.stats.cached++;
      else {
        t = this.#build(view, q);
        if (t) {
          if (view.cacheSize >= this.#maxCache) view.invalidate();
          byName = view.cache.get(qt) as Map<string, AnswerTemplate> | undefined;
          if (!byName) view.cache.set(qt, byName = new Map());
          byName.set(q.name, t);
          view.cacheSize++;
        }
      }
      if (t && t.questionLength === q.questionEnd - 12) {
        this.stats.local++;
        return renderTemplate(t, msg, q.questionEnd, tcp ? MAX_MESSAGE : q.udpSize, tcp);
      }
    }
    return this.#forwardOrFail(view, msg, q, tcp);
  }

  /** The local answer to a query, or undefined when the name is not local (forward it). */
  #build(view: View, q: ParsedQuery): AnswerTemplate | undefined {
    const name = q.name;
    if (q.qtype === TYPE_PTR) {
      if (!name.endsWith(REVERSE_V4) && !name.endsWith(REVERSE_V6)) return undefined;
      const target = view.resolvePtr(name);
      return target === undefined ? undefined : buildTemplate(name, q.qtype, { ptrTarget: target });
    }
    const rec = view.resolve(name);
    if (!rec) return undefined;
    const addresses = q.qtype === TYPE_A ? rec.v4 : q.qtype === TYPE_AAAA ? rec.v6 : [];
    return buildTemplate(name, q.qtype, { addresses });
  }

  #forwardOrFail(
    view: View,
    msg: Uint8Array,
    q: ParsedQuery,
    tcp: boolean,
  ): Uint8Array | Promise<Uint8Array | null> {
    if (!view.proxy || !this.#forward) {
      this.stats.servfail++;
      return rcodeReply(msg, RCODE.SERVFAIL, q.questionEnd);
    }
    this.stats.forwarded++;
    // The caller may reuse msg's buffer for the next datagram: forward a copy.
    const copy = msg.slice();
    return this.#forward(copy, q, tcp).then(
      (reply) => reply ?? this.#servfail(copy, q),
      () => this.#servfail(copy, q),
    );
  }

  #servfail(msg: Uint8Array, q: ParsedQuery): Uint8Array {
    this.stats.servfail++;
    return rcodeReply(msg, RCODE.SERVFAIL, q.questionEnd);
  }
}
