/**
 * Test-only: a {@linkcode Resolver} in a worker for fuzz_test.ts, so that a message that made
 * the handler loop forever is caught by the test's timeout instead of hanging it.
 *
 * Messages in: `{ init: endpoints, forward }` first (answered `{ ready: true }`), then
 * `{ id, sandbox, msg, tcp }`
 * (answered `{ id, reply, took }`, `took` being the ms spent in the handler itself, or
 * `{ id, error }` when it threw) or `{ id, stats: true }` (answered `{ id, stats }`).
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import type { DnsEndpoint } from "./records.ts";
import { type ForwardFn, Resolver } from "./resolver.ts";
import { RCODE } from "./wire.ts";

/**
 * A stub upstream: example.com is A 192.0.2.10, anything else NXDOMAIN; the reply is the
 * client's header and question with an answer pointing at it, as an upstream sends.
 */
const stubForward: ForwardFn = (msg, q) => {
  const known = q.name === "example.com" && q.qtype === 1;
  const rr = known ? [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 10] : [];
  const out = new Uint8Array([...msg.subarray(0, q.questionEnd), ...rr]);
  out[2] = 0x80 | (msg[2] & 0x01);
  out[3] = 0x80 | (known ? 0 : RCODE.NXDOMAIN);
  out.fill(0, 6, 12);
  out[7] = known ? 1 : 0;
  return Promise.resolve(out);
};

let resolver: Resolver | undefined;

self.onmessage = async (e: MessageEvent) => {
  const m = e.data;
  if (m.init) {
    resolver = new Resolver({ forward: m.forward ? stubForward : undefined });
    for (const ep of m.init as DnsEndpoint[]) resolver.records.upsert(ep);
    self.postMessage({ ready: true });
    return;
  }
  if (m.stats) {
    self.postMessage({ id: m.id, stats: { ...resolver!.stats } });
    return;
  }
  try {
    const started = performance.now();
    const out = resolver!.answer(m.sandbox, m.msg, m.tcp);
    const took = performance.now() - started;
    const reply = out instanceof Promise ? await out : out;
    self.postMessage({ id: m.id, reply, took });
  } catch (err) {
    self.postMessage({ id: m.id, error: String(err) });
  }
};
