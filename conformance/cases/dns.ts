/**
 * DNS cases (profile `dns`): Docker's embedded resolver at 127.0.0.11, observed with dig
 * from inside the sandboxes (research/libnetwork.md §4).
 * @module
 */
import { UPSTREAM_RECORDS } from "../harness/hosts.ts";
import { type DnsProbeResult, pollUntil, probeDns } from "../probes/mod.ts";
import { addr, type CaseContext, defineCase, type Sandbox } from "./framework.ts";
import { afterEachRestart } from "./lifecycle.ts";

const RESOLVER = "127.0.0.11";

function resolverOf(sb: Sandbox): string {
  return sb.resolver ?? RESOLVER;
}

async function lookup(
  from: Sandbox,
  name: string,
  opts: { type?: "A" | "AAAA" | "PTR"; tcp?: boolean } = {},
): Promise<DnsProbeResult> {
  return await probeDns(from.netnsPath, resolverOf(from), name, { timeoutMs: 2000, ...opts });
}

/** Fails unless the lookup gives `rcode` and exactly `answers` (order ignored). */
async function expectAnswer(
  ctx: CaseContext,
  from: Sandbox,
  name: string,
  want: { rcode?: string; answers?: string[] },
  opts: { type?: "A" | "AAAA" | "PTR"; tcp?: boolean } = {},
): Promise<DnsProbeResult> {
  const rcode = want.rcode ?? "NOERROR";
  const same = (r: DnsProbeResult) =>
    r.rcode === rcode &&
    (!want.answers || [...r.answers].sort().join() === [...want.answers].sort().join());
  // records follow connect/disconnect at once, but allow a short bounded convergence
  const poll = await pollUntil(() => lookup(from, name, opts), same, {
    deadlineMs: 2000,
    intervalMs: 100,
  });
  if (!poll.ok) {
    const r = poll.value;
    ctx.fail(
      `${from.name}: ${opts.type ?? "A"} ${name}${opts.tcp ? " over TCP" : ""}: got ${r.rcode} ${
        r.answers.join(", ")
      }`,
      {
        expected: `${rcode}${want.answers ? ` ${want.answers.join(", ")}` : ""}`,
        observed: `${r.rcode} ${r.answers.join(", ") || "(no answers)"}`,
        reproduce: [r.command],
      },
    );
  }
  return poll.value;
}

/** Two sandboxes on one network; returns them with the network's name. */
async function pair(ctx: CaseContext, hostnameB?: string) {
  const net = await ctx.network("dns", { driver: "bridge", subnet: ctx.subnet() });
  const a = await ctx.sandbox("a");
  const b = await ctx.sandbox("b", hostnameB);
  await ctx.connect(a, net.name);
  await ctx.connect(b, net.name);
  return { net: net.name, a, b };
}

export const dnsContainerName = defineCase({
  id: "dns.container-name",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts:
    "A sandbox resolves a peer's name on their shared network to the peer's address, over UDP and over TCP",
  mirrors: "libnetwork dnet ping by name; k8s DNS matrix (UDP+TCP)",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    const ip = addr(b.endpoints[net].ipv4);
    await expectAnswer(ctx, a, b.name, { answers: [ip] });
    await expectAnswer(ctx, a, b.name, { answers: [ip] }, { tcp: true });
  },
});

export const dnsHostname = defineCase({
  id: "dns.hostname",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts: "A sandbox's hostname resolves on its networks to its address",
  mirrors: "issue 7: names on a network include the hostname",
  async run(ctx) {
    const host = ctx.name("web");
    const { net, a, b } = await pair(ctx, host);
    await expectAnswer(ctx, a, host, { answers: [addr(b.endpoints[net].ipv4)] });
  },
});

export const dnsScopedAlias = defineCase({
  id: "dns.scoped-alias",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns", "aliases"],
  asserts:
    "An alias given on connect to network A resolves on A and is NXDOMAIN on network B, though the sandbox is on both",
  mirrors: "moby #18699/#19242 network-scoped aliases",
  async run(ctx) {
    const A = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const B = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [m, pa, pb] = await Promise.all(["m", "pa", "pb"].map((n) => ctx.sandbox(n)));
    const alias = ctx.name("svc");
    await ctx.connect(m, A.name, { aliases: [alias] });
    await ctx.connect(m, B.name);
    await ctx.connect(pa, A.name);
    await ctx.connect(pb, B.name);
    await expectAnswer(ctx, pa, alias, { answers: [addr(m.endpoints[A.name].ipv4)] });
    await expectAnswer(ctx, pb, alias, { rcode: "NXDOMAIN" });
  },
});

export const dnsCrossNetwork = defineCase({
  id: "dns.cross-network-invisible",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts:
    "The name of a sandbox that shares no network with the querier does not resolve (NXDOMAIN)",
  mirrors: "conformance-anchors §7 case 9: isolation applies to discovery",
  async run(ctx) {
    const A = await ctx.network("A", { driver: "bridge", subnet: ctx.subnet() });
    const B = await ctx.network("B", { driver: "bridge", subnet: ctx.subnet() });
    const [a, b] = await Promise.all(["a", "b"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a, A.name);
    await ctx.connect(b, B.name);
    await expectAnswer(ctx, a, b.name, { rcode: "NXDOMAIN" });
  },
});

export const dnsQualified = defineCase({
  id: "dns.qualified-name",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts: "NAME.NETWORK resolves to the sandbox's address on that network",
  mirrors: "libnetwork svcRecords: name.network entries (research §4.2)",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    await expectAnswer(ctx, a, `${b.name}.${net}`, { answers: [addr(b.endpoints[net].ipv4)] });
  },
});

export const dnsMultiA = defineCase({
  id: "dns.multi-a",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns", "aliases"],
  asserts:
    "An alias shared by three sandboxes answers with all three addresses, in an order that varies over queries",
  mirrors: "libnetwork #1054 / PR #974: DNS round robin over shared aliases",
  async run(ctx) {
    const net = await ctx.network("rr", { driver: "bridge", subnet: ctx.subnet() });
    const client = await ctx.sandbox("client");
    await ctx.connect(client, net.name);
    const alias = ctx.name("pool");
    const ips: string[] = [];
    for (const n of ["b1", "b2", "b3"]) {
      const s = await ctx.sandbox(n);
      ips.push(addr((await ctx.connect(s, net.name, { aliases: [alias] })).ipv4));
    }
    await expectAnswer(ctx, client, alias, { answers: ips });
    const firsts = new Set<string>();
    for (let i = 0; i < 20 && firsts.size < 2; i++) {
      firsts.add((await lookup(client, alias)).answers[0]);
    }
    if (firsts.size < 2) {
      ctx.fail(`20 queries for ${alias} always listed ${[...firsts][0]} first`, {
        expected: "the order varies (round robin)",
        observed: "the same order every time",
      });
    }
  },
});

export const dnsPtr = defineCase({
  id: "dns.ptr",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts: "A reverse lookup of a peer's address answers NAME.NETWORK.",
  mirrors: "libnetwork ipMap PTR records (research §4.2)",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    await expectAnswer(ctx, a, addr(b.endpoints[net].ipv4), { answers: [`${b.name}.${net}.`] }, {
      type: "PTR",
    });
  },
});

export const dnsCase = defineCase({
  id: "dns.case-insensitive",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts: "Names match case-insensitively, with or without a trailing dot",
  mirrors: "RFC 4343; libnetwork lowercases names (research §4.3)",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    const ip = addr(b.endpoints[net].ipv4);
    await expectAnswer(ctx, a, b.name.toUpperCase(), { answers: [ip] });
    await expectAnswer(ctx, a, `${b.name}.`, { answers: [ip] });
  },
});

export const dnsNodata = defineCase({
  id: "dns.nodata",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts:
    "An AAAA query for a name that has only an IPv4 address answers NOERROR with no answers (not NXDOMAIN)",
  mirrors: "libnetwork resolver: name known, no record of that family (research §4.4)",
  async run(ctx) {
    const { a, b } = await pair(ctx);
    await expectAnswer(ctx, a, b.name, { rcode: "NOERROR", answers: [] }, { type: "AAAA" });
  },
});

export const dnsUpstream = defineCase({
  id: "dns.upstream-forwarding",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns", "dns.upstream"],
  asserts:
    "Names not known locally are forwarded to the upstream resolver: an answer comes back, and NXDOMAIN is passed through",
  mirrors: "libnetwork resolver forwardExtDNS; moby TestResolvConfLocalhostIPv6",
  async run(ctx) {
    const { a } = await pair(ctx);
    const [name, ip] = Object.entries(UPSTREAM_RECORDS)[0];
    await expectAnswer(ctx, a, name, { answers: [ip] });
    await expectAnswer(ctx, a, "nothing-here.example.test", { rcode: "NXDOMAIN" });
  },
});

export const dnsInternalNoForward = defineCase({
  id: "dns.internal-no-forward",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "bridge.internal", "dns", "dns.upstream"],
  asserts:
    "A sandbox attached only to internal networks gets SERVFAIL for names only the upstream knows, while local names still resolve",
  mirrors: "moby TestInternalNetworkDNS",
  async run(ctx) {
    const net = await ctx.network("int", {
      driver: "bridge",
      subnet: ctx.subnet(),
      internal: true,
    });
    const [a, b] = await Promise.all(["a", "b"].map((n) => ctx.sandbox(n)));
    await ctx.connect(a, net.name);
    await ctx.connect(b, net.name);
    await expectAnswer(ctx, a, b.name, { answers: [addr(b.endpoints[net.name].ipv4)] });
    const r = await probeDns(a.netnsPath, resolverOf(a), Object.keys(UPSTREAM_RECORDS)[0], {
      timeoutMs: 9000,
    });
    if (r.rcode !== "SERVFAIL") {
      ctx.fail(
        `${a.name}: A ${Object.keys(UPSTREAM_RECORDS)[0]}: got ${r.rcode} ${r.answers.join(", ")}`,
        {
          expected: "SERVFAIL",
          observed: `${r.rcode} ${r.answers.join(", ")}`,
          reproduce: [r.command],
        },
      );
    }
  },
});

export const dnsDisconnect = defineCase({
  id: "dns.disconnect-removes-record",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts:
    "After a sandbox disconnects, its name stops resolving for its former peers; reconnecting brings it back",
  mirrors: 'moby TestInternalNetworkDNS; k8s "should update endpoints"',
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    await ctx.impl.disconnect(b.name, net);
    await expectAnswer(ctx, a, b.name, { rcode: "NXDOMAIN" });
    const ep = await ctx.connect(b, net);
    await expectAnswer(ctx, a, b.name, { answers: [addr(ep.ipv4)] });
  },
});

export const dnsRemovedSandbox = defineCase({
  id: "dns.removed-sandbox-record",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns"],
  asserts:
    "After a sandbox is removed, its name and its qualified name stop resolving for its former peers (NXDOMAIN): no stale record",
  mirrors: "libnetwork svcRecords removal on endpoint delete (research §4.2)",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    await expectAnswer(ctx, a, b.name, { answers: [addr(b.endpoints[net].ipv4)] });
    await ctx.impl.removeSandbox(b.name);
    await expectAnswer(ctx, a, b.name, { rcode: "NXDOMAIN" });
    await expectAnswer(ctx, a, `${b.name}.${net}`, { rcode: "NXDOMAIN" });
  },
});

export const dnsRestart = defineCase({
  id: "dns.restart-keeps-records",
  area: "dns",
  profile: "dns",
  needs: ["bridge", "dns", "restart"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9 of the implementation, an existing sandbox's embedded resolver still answers its peer's name, and a name not known locally is still forwarded",
  mirrors: "Docker --live-restore keeps the embedded DNS of running containers",
  async run(ctx) {
    const { net, a, b } = await pair(ctx);
    const ip = addr(b.endpoints[net].ipv4);
    await expectAnswer(ctx, a, b.name, { answers: [ip] });
    await afterEachRestart(ctx, async () => {
      await expectAnswer(ctx, a, b.name, { answers: [ip] });
      if (ctx.caps.has("dns.upstream")) {
        const [name, upstream] = Object.entries(UPSTREAM_RECORDS)[0];
        await expectAnswer(ctx, a, name, { answers: [upstream] });
      }
    });
  },
});

export const dnsCases = [
  dnsContainerName,
  dnsHostname,
  dnsScopedAlias,
  dnsCrossNetwork,
  dnsQualified,
  dnsMultiA,
  dnsPtr,
  dnsCase,
  dnsNodata,
  dnsUpstream,
  dnsInternalNoForward,
  dnsDisconnect,
  dnsRemovedSandbox,
  dnsRestart,
];
