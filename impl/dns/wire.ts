/**
 * DNS wire format for the embedded resolver's hot path: a hand parser of queries that reads
 * the question straight from the bytes (labels, type, class, the EDNS0 OPT record's UDP
 * size), answer templates built once per name and patched per query (ID, flags, the
 * client's question bytes), Docker's random order for several addresses, and truncation.
 *
 * The record data inside templates is encoded with npm `dns-packet` (the cold path); a
 * query is never decoded with it, because a full decode and encode per query measured
 * about 53k queries/s here, below Docker's 70k (issue 7). The tests check the hand parser
 * against `dns-packet` on many query shapes.
 *
 * Header flags follow Docker 20.10's resolver (research/libnetwork.md §4.4; miekg/dns
 * `SetReply` plus `RecursionAvailable = true`): QR, opcode QUERY, RD and CD copied from the
 * query, RA set, AA clear. Local answers use TTL 600 and a compression pointer to the
 * question (`0xC00C`) as their owner name, so the answer shows the name as the client
 * spelled it.
 * @module
 */
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";

/** Record type A. */
export const TYPE_A = 1;
/** Record type PTR. */
export const TYPE_PTR = 12;
/** Record type MX (answered NODATA for local names, as Docker does). */
export const TYPE_MX = 15;
/** Record type AAAA. */
export const TYPE_AAAA = 28;
/** Record type OPT (EDNS0 pseudo-record). */
export const TYPE_OPT = 41;
/** Class IN. */
export const CLASS_IN = 1;
/** Class ANY (QCLASS `*`). */
export const CLASS_ANY = 255;

/** Response codes used here. */
export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** TTL of local answers (Docker's `respTTL`, research/libnetwork.md §4.4). */
export const LOCAL_TTL = 600;
/** Largest UDP answer without EDNS0 (RFC 1035). */
export const MIN_UDP_SIZE = 512;
/** Largest DNS message (TCP framing limit). */
export const MAX_MESSAGE = 65535;

/** A query as the hand parser sees it. */
export interface ParsedQuery {
  /** The question name, lower-cased, without a trailing dot (`""` is the root). */
  name: string;
  /**
   * False when a label holds a byte that cannot be part of a local name (a dot, a
   * backslash, a space or control character, non-ASCII): such a name is never answered
   * locally, since its text form would be ambiguous.
   */
  plain: boolean;
  qtype: number;
  qclass: number;
  /** Offset just past the question: the question's bytes are `msg[12 .. questionEnd)`. */
  questionEnd: number;
  /** Largest UDP answer the client takes: 512, or its EDNS0 size when larger. */
  udpSize: number;
  /** True when the query carries an EDNS0 OPT record. */
  edns: boolean;
}

/** What to do with a message the parser refuses: drop it, or answer with this rcode. */
export type ParseFailure = { drop: true } | { drop: false; rcode: number };

const DROP: ParseFailure = { drop: true };
const FORMERR: ParseFailure = { drop: false, rcode: RCODE.FORMERR };
const NOTIMP: ParseFailure = { drop: false, rcode: RCODE.NOTIMP };

const nameCodes = new Uint16Array(256);

// dns-packet's name and record data encoders; @types/dns-packet leaves them out.
interface Coder {
  encode(data: string): Uint8Array;
}
const rdata = dnsPacket as unknown as { name: Coder; a: Coder; aaaa: Coder; ptr: Coder };

/**
 * Skips a resource record's owner name at `at` (labels, possibly ending in a compression
 * pointer); returns the offset after it, or -1 when the name runs out of the message or is
 * malformed.
 */
function skipName(msg: Uint8Array, at: number): number {
  let len = 0;
  while (at < msg.length) {
    const l = msg[at];
    if (l === 0) return at + 1;
    if ((l & 0xc0) === 0xc0) return at + 2 <= msg.length ? at + 2 : -1;
    if (l & 0xc0) return -1;
    len += l + 1;
    if (len > 254) return -1; // longer than 255 bytes with the root label
    at += l + 1;
  }
  return -1;
}

/**
 * Parses a query the way miekg/dns's default acceptance does (what Docker's resolver runs
 * on): a message shorter than a header or with QR set is dropped; an opcode other than
 * QUERY gets NOTIMP; anything but exactly one question, or more than one answer, one
 * authority or two additional records, gets FORMERR; so does a question that runs past the
 * end, uses a compression pointer (a lone question has nothing earlier to point to), or is
 * longer than 255 bytes. The additional section is scanned for an EDNS0 OPT record (its
 * class is the client's UDP size). Trailing bytes after the sections are ignored.
 */
export function parseQuery(msg: Uint8Array): ParsedQuery | ParseFailure {
  const len = msg.length;
  if (len < 12) return DROP;
  const b2 = msg[2];
  if (b2 & 0x80) return DROP; // a response: never answer one (no loops)
  if ((b2 & 0x78) !== 0) return NOTIMP; // opcode != QUERY
  if (msg[4] !== 0 || msg[5] !== 1) return FORMERR; // QDCOUNT must be 1
  const an = (msg[6] << 8) | msg[7];
  const ns = (msg[8] << 8) | msg[9];
  const ar = (msg[10] << 8) | msg[11];
  if (an > 1 || ns > 1 || ar > 2) return FORMERR;

  // The question name, lower-cased into nameCodes (dots between labels).
  let at = 12;
  let n = 0;
  let plain = true;
  for (;;) {
    if (at >= len) return FORMERR;
    const l = msg[at];
    if (l === 0) {
      at++;
      break;
    }
    if (l & 0xc0) return FORMERR; // pointer or extended label type in a lone question
    const end = at + 1 + l;
    // at most 255 bytes with the root label (miekg/dns's budget; issue 14)
    if (end > len || end - 12 > 254) return FORMERR;
    if (n > 0) nameCodes[n++] = 46;
    for (let i = at + 1; i < end; i++) {
      let c = msg[i];
      if (c >= 65 && c <= 90) c += 32;
      else if (c <= 32 || c >= 127 || c === 46 || c === 92) plain = false;
      nameCodes[n++] = c;
    }
    at = end;
  }
  if (at + 4 > len) return FORMERR;
  const qtype = (msg[at] << 8) | msg[at + 1];
  const qclass = (msg[at + 2] << 8) | msg[at + 3];
  const questionEnd = at + 4;

  // Answer/authority records (rare in queries): skipped. Additional: look for OPT.
  let udpSize = MIN_UDP_SIZE;
  let edns = false;
  at = questionEnd;
  const total = an + ns + ar;
  for (let r = 0; r < total; r++) {
    const nameStart = at;
    at = skipName(msg, at);
    if (at < 0 || at + 10 > len) return FORMERR;
    const type = (msg[at] << 8) | msg[at + 1];
    const rdlen = (msg[at + 8] << 8) | msg[at + 9];
    if (r >= an + ns && type === TYPE_OPT) {
      if (edns || msg[nameStart] !== 0) return FORMERR; // one OPT, owned by the root
      edns = true;
      const size = (msg[at + 2] << 8) | msg[at + 3];
      if (size > udpSize) udpSize = size;
    }
    at += 10 + rdlen;
    if (at > len) return FORMERR;
  }

  const name = n === 0 ? "" : String.fromCharCode.apply(null, nameCodes.subarray(0, n) as never);
  return { name, plain, qtype, qclass, questionEnd, udpSize, edns };
}

/** True when `parseQuery` returned a failure rather than a query. */
export function isFailure(r: ParsedQuery | ParseFailure): r is ParseFailure {
  return (r as ParseFailure).drop !== undefined;
}

/** Response header bytes 2-3 for a query: QR, opcode 0, RD and CD copied, RA, the rcode. */
function replyFlags(out: Uint8Array, msg: Uint8Array, rcode: number): void {
  out[2] = 0x80 | (msg[2] & 0x01);
  out[3] = 0x80 | (msg[3] & 0x10) | (rcode & 0x0f);
}

/**
 * A reply carrying only an rcode. With `questionEnd` (the query parsed) the question is
 * echoed (SERVFAIL, REFUSED); without it the reply is a bare header (FORMERR and NOTIMP,
 * as miekg/dns answers a message it rejects), keeping the query's opcode.
 */
export function rcodeReply(msg: Uint8Array, rcode: number, questionEnd?: number): Uint8Array {
  const qEnd = questionEnd ?? 12;
  const out = new Uint8Array(qEnd);
  out[0] = msg[0];
  out[1] = msg[1];
  replyFlags(out, msg, rcode);
  if (questionEnd === undefined) {
    out[2] = 0x80 | (msg[2] & 0x79); // QR, opcode and RD as asked
    return out;
  }
  out[5] = 1;
  out.set(msg.subarray(12, qEnd), 12);
  return out;
}

/** Wire form of a name (`a.b` → 1 a 1 b 0); `""` is the root. Labels must be 1-63 bytes. */
export function encodeName(name: string): Uint8Array {
  return rdata.name.encode(name);
}
/** A local answer encoded once and patched per query. */
export interface AnswerTemplate {
  /** Header, question (lower-case placeholder) and answers; ID and flags are patched. */
  bytes: Uint8Array;
  /** Length of the question section the template was built for. */
  questionLength: number;
  /** Number of answer records. */
  count: number;
  /** Size of each answer record (all the same for A and AAAA, so they can be reordered). */
  rrSize: number;
  /** Size of the record data inside each record (4 for A, 16 for AAAA). */
  rdSize: number;
}

/**
 * Builds the answer for `name` (lower-case, as parsed): `addresses` as A or AAAA records,
 * or `ptrTarget` as one PTR record, or nothing (NODATA: NOERROR with no answers). Record
 * data is encoded with dns-packet; owner names point at the question.
 */
export function buildTemplate(
  name: string,
  qtype: number,
  answer: { addresses?: string[]; ptrTarget?: string },
): AnswerTemplate {
  const question = encodeName(name);
  const questionLength = question.length + 4;
  const datas: Uint8Array[] = [];
  if (answer.ptrTarget !== undefined) datas.push(rdata.ptr.encode(answer.ptrTarget));
  else if (qtype === TYPE_A || qtype === TYPE_AAAA) {
    const coder = qtype === TYPE_A ? rdata.a : rdata.aaaa;
    for (const ip of answer.addresses ?? []) datas.push(coder.encode(ip));
  }
  const rrType = answer.ptrTarget !== undefined ? TYPE_PTR : qtype;
  let size = 12 + questionLength;
  for (const d of datas) size += 10 + d.length; // pointer 2 + type 2 + class 2 + ttl 4 + rdata
  const out = new Uint8Array(size);
  out[5] = 1;
  out[6] = datas.length >> 8;
  out[7] = datas.length & 0xff;
  out.set(question, 12);
  let at = 12 + question.length;
  out[at] = qtype >> 8;
  out[at + 1] = qtype & 0xff;
  out[at + 3] = CLASS_IN;
  at += 4;
  for (const d of datas) {
    out[at] = 0xc0;
    out[at + 1] = 0x0c;
    out[at + 3] = rrType;
    out[at + 5] = CLASS_IN;
    new DataView(out.buffer).setUint32(at + 6, LOCAL_TTL);
    out.set(d, at + 10);
    at += 10 + d.length;
  }
  const rrSize = datas.length ? 10 + datas[0].length : 0;
  return { bytes: out, questionLength, count: datas.length, rrSize, rdSize: rrSize - 12 };
}

/**
 * The reply to `msg` from a template: the query's ID, flags (RD, CD) and question bytes
 * (so case and 0x20 randomisation come back as sent) over the template; several addresses
 * shuffled at random on every call (Docker's round robin, research/libnetwork.md §4.4);
 * over UDP, cut to `maxSize` with TC set when it does not fit (Docker's `truncateResp`:
 * whole answer records are dropped from the end). Over TCP `maxSize` is 65535 and TC is
 * never set.
 */
export function renderTemplate(
  t: AnswerTemplate,
  msg: Uint8Array,
  questionEnd: number,
  maxSize: number,
  tcp: boolean,
): Uint8Array {
  let out = t.bytes.slice();
  out[0] = msg[0];
  out[1] = msg[1];
  replyFlags(out, msg, 0);
  out.set(msg.subarray(12, questionEnd), 12);
  const first = 12 + t.questionLength;
  if (t.count > 1) {
    // Fisher-Yates over the record data: the records differ in their data only.
    const rd = t.rdSize;
    const tmp = new Uint8Array(rd);
    for (let i = t.count - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      if (j === i) continue;
      const a = first + i * t.rrSize + 12, b = first + j * t.rrSize + 12;
      tmp.set(out.subarray(a, a + rd));
      out.copyWithin(a, b, b + rd);
      out.set(tmp, b);
    }
  }
  if (out.length > maxSize) {
    const fit = t.rrSize ? Math.max(0, Math.floor((maxSize - first) / t.rrSize)) : 0;
    out = out.subarray(0, first + fit * t.rrSize);
    out[6] = fit >> 8;
    out[7] = fit & 0xff;
    if (!tcp) out[2] |= 0x02;
  }
  return out;
}

/**
 * The reverse-lookup name of an address, lower-case and without a trailing dot:
 * `10.0.0.2` → `2.0.0.10.in-addr.arpa`, IPv6 as 32 nibbles under `ip6.arpa`. `value` is
 * the address as a bigint (see impl/model/ip.ts).
 */
export function reverseName(family: 4 | 6, value: bigint): string {
  if (family === 4) {
    const parts: string[] = [];
    for (let i = 0; i < 4; i++) parts.push(String((value >> BigInt(8 * i)) & 255n));
    return `${parts.join(".")}.in-addr.arpa`;
  }
  const nibbles: string[] = [];
  for (let i = 0; i < 32; i++) nibbles.push(((value >> BigInt(4 * i)) & 15n).toString(16));
  return `${nibbles.join(".")}.ip6.arpa`;
}

/** The rcode of a DNS message (low 4 bits of byte 3); -1 when shorter than a header. */
export function rcodeOf(msg: Uint8Array): number {
  return msg.length < 12 ? -1 : msg[3] & 0x0f;
}
