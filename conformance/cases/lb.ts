/**
 * Load-balancing cases (profile `lb`): services with a virtual IP or DNS round robin,
 * observed by connecting from sandboxes and reading which backend answered
 * (research/libnetwork.md §4.5; conformance-anchors §7 cases 13-19).
 * @module
 */
import { probeDns, probeTcp, probeUdp, tcpIdentities } from "../probes/mod.ts";
import { addr, type CaseContext, defineCase, type Sandbox } from "./framework.ts";
import { afterEachRestart } from "./lifecycle.ts";

const PORT = 8080;

/** A network, `n` backends with TCP/UDP responders, a client, and a service over them. */
async function setup(
  ctx: CaseContext,
  n: number,
  mode: "vip" | "dnsrr" = "vip",
  extra: { affinity?: "client-ip"; add?: boolean } = {},
) {
  const net = await ctx.network("lb", { driver: "bridge", subnet: ctx.subnet() });
  const client = await ctx.sandbox("client");
  await ctx.connect(client, net.name);
  const svc = await ctx.service("svc", {
    network: net.name,
    mode,
    ports: [{ port: PORT, protocol: "tcp" }, { port: PORT, protocol: "udp" }],
    affinity: extra.affinity,
  });
  // backends come up side by side (sandbox, connect, responders); they join the service in
  // order, so be0 is the first backend
  const backends: Sandbox[] = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const b = await ctx.sandbox(`be${i}`);
    await ctx.connect(b, net.name);
    await ctx.responders(b, { tcp: [PORT], udp: [PORT] });
    return b;
  }));
  if (extra.add !== false) {
    for (const b of backends) await ctx.impl.addBackend!(svc.name, b.name);
  }
  return { net: net.name, client, svc, backends };
}

function vipOf(ctx: CaseContext, svc: { name: string; vip?: string }): string {
  if (!svc.vip) ctx.fail(`service ${svc.name} has no VIP`, { expected: "a virtual IP" });
  return addr(svc.vip);
}

/**
 * `count` fresh TCP connections to ip:port from `from`, in `parallel` streams of one
 * process each (tcpIdentities); the identities that answered.
 */
async function hits(
  from: Sandbox,
  ip: string,
  count: number,
  parallel = 4,
): Promise<(string | undefined)[]> {
  const streams = Array.from(
    { length: Math.min(parallel, count) },
    (_, k) => Math.floor(count / parallel) + (k < count % parallel ? 1 : 0),
  ).filter((n) => n > 0);
  const out = await Promise.all(streams.map((n) => tcpIdentities(from.netnsPath, ip, PORT, n)));
  return out.flat();
}

function tally(ids: (string | undefined)[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id ?? "(no answer)", (m.get(id ?? "(no answer)") ?? 0) + 1);
  return m;
}

/**
 * Fails unless connections to the VIP reach every backend within N²+30 tries and nothing
 * but a backend answers (k8s verifyServeHostnameServiceUp's bound).
 */
async function expectAllBackends(
  ctx: CaseContext,
  client: Sandbox,
  vip: string,
  backends: Sandbox[],
  when: string,
) {
  const names = new Set(backends.map((b) => b.name));
  const tries = backends.length ** 2 + 30;
  const seen = new Set<string>();
  for (let i = 0; i < tries && seen.size < names.size; i++) {
    const r = await probeTcp(client.netnsPath, vip, PORT, { timeoutMs: 2000 });
    if (!r.ok) {
      ctx.fail(`${when}connection ${i + 1} to ${vip}:${PORT} failed: ${r.detail}`, {
        reproduce: [r.command],
      });
    }
    if (!names.has(r.identity ?? "")) {
      ctx.fail(`${when}${vip}:${PORT} answered as "${r.identity}", not a backend`, {
        reproduce: [r.command],
      });
    }
    seen.add(r.identity!);
  }
  if (seen.size < names.size) {
    ctx.fail(`${when}only ${[...seen].join(", ")} answered in ${tries} tries`, {
      expected: [...names].join(", "),
    });
  }
}

export const lbAllBackends = defineCase({
  id: "lb.all-backends-reached",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts:
    "Repeated connections to a service's VIP reach every backend within N²+30 tries, and nothing else answers",
  mirrors: "k8s DialFromContainer / verifyServeHostnameServiceUp (maxTries = N²+30)",
  async run(ctx) {
    const { client, svc, backends } = await setup(ctx, 3);
    const vip = vipOf(ctx, svc);
    await expectAllBackends(ctx, client, vip, backends, "");
  },
});

export const lbDistribution = defineCase({
  id: "lb.distribution",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts:
    "Over 600 fresh connections to a VIP with 3 backends, each backend's share lies within the 99.9% binomial bound around 1/3 (200 ± 38)",
  mirrors: "conformance-anchors gap #17; kube-proxy nftables numgen random mod N",
  async run(ctx) {
    const { client, svc, backends } = await setup(ctx, 3);
    const vip = vipOf(ctx, svc);
    const n = 600;
    const counts = tally(await hits(client, vip, n));
    // binomial(n, 1/3): sd = sqrt(n p (1-p)); two-sided 99.9% → z = 3.29
    const sd = Math.sqrt(n * (1 / 3) * (2 / 3));
    const lo = Math.floor(n / 3 - 3.29 * sd), hi = Math.ceil(n / 3 + 3.29 * sd);
    const shares = backends.map((b) =>
      `${b.name.slice(b.name.lastIndexOf("-") + 1)} ${counts.get(b.name) ?? 0}`
    );
    ctx.note(`shares: ${shares.join(", ")} (bound ${lo}-${hi})`);
    const bad = backends.filter((b) => {
      const c = counts.get(b.name) ?? 0;
      return c < lo || c > hi;
    });
    if (bad.length || counts.has("(no answer)")) {
      ctx.fail(
        `shares outside ${lo}-${hi}: ${[...counts].map(([k, v]) => `${k} ${v}`).join(", ")}`,
        {
          expected: `each backend ${lo}-${hi} of ${n}`,
          observed: shares.join(", "),
        },
      );
    }
  },
});

export const lbRemoval = defineCase({
  id: "lb.backend-removal",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts:
    "After a backend is removed from a service, none of 30 new connections to the VIP arrives at it (its witness sees none), and the other backends answer them all",
  mirrors: 'k8s "should update endpoints"',
  async run(ctx) {
    const { client, svc, backends } = await setup(ctx, 3);
    const vip = vipOf(ctx, svc);
    const removed = backends[0];
    await ctx.impl.removeBackend!(svc.name, removed.name);
    const to = { ip: vip, label: `${vip}:${PORT}`, at: removed };
    const seen: string[] = [];
    let arrived = 0;
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < 30) {
        next++;
        const o = await ctx.observe(client, to, "tcp", { port: PORT, timeoutMs: 2000 });
        arrived += o.arrivals.length ? 1 : 0;
        seen.push(o.probe.ok ? o.probe.identity ?? "?" : "(no answer)");
      }
    }));
    const counts = tally(seen);
    if (arrived || counts.has(removed.name) || counts.has("(no answer)")) {
      ctx.fail(
        `after removing ${removed.name}: ${arrived} of 30 connections arrived at it; answers ${
          [...counts].map(([k, v]) => `${k} ${v}`).join(", ")
        }`,
        { expected: `no connection arrives at ${removed.name}, none lost` },
      );
    }
    for (const b of backends.slice(1)) {
      if (!counts.has(b.name)) ctx.fail(`${b.name} got none of 30 connections after the removal`);
    }
  },
});

export const lbAdded = defineCase({
  id: "lb.backend-added",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts: "A backend added to a service starts receiving new connections at once",
  mirrors: "issue 8: backend changes take effect at once",
  async run(ctx) {
    const { client, svc, net } = await setup(ctx, 2);
    const vip = vipOf(ctx, svc);
    const late = await ctx.sandbox("late");
    await ctx.connect(late, net);
    await ctx.responders(late, { tcp: [PORT] });
    await ctx.impl.addBackend!(svc.name, late.name);
    const counts = tally(await hits(client, vip, 30, 4));
    if (!counts.has(late.name)) {
      ctx.fail(`the added backend got none of 30 connections`, {
        observed: [...counts].map(([k, v]) => `${k} ${v}`).join(", "),
      });
    }
  },
});

export const lbVipVsDnsrr = defineCase({
  id: "lb.vip-vs-dnsrr",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "dns", "lb.vip", "lb.dnsrr"],
  asserts:
    "In VIP mode the service name resolves to the one VIP (no backend's address); in DNS-RR mode it resolves to every backend's address and there is no VIP",
  mirrors: "libnetwork PR #1263 (endpoint_mode vip vs dnsrr)",
  async run(ctx) {
    const v = await setup(ctx, 2, "vip");
    const vip = vipOf(ctx, v.svc);
    const r = await probeDns(v.client.netnsPath, v.client.resolver ?? "127.0.0.11", v.svc.name);
    if (r.answers.join() !== vip) {
      ctx.fail(`VIP mode: ${v.svc.name} resolves to ${r.answers.join(", ") || r.rcode}`, {
        expected: vip,
        reproduce: [r.command],
      });
    }
    const net = await ctx.network("rr", { driver: "bridge", subnet: ctx.subnet() });
    const svc = await ctx.service("rr", { network: net.name, mode: "dnsrr" });
    if (svc.vip) ctx.fail(`DNS-RR service got a VIP ${svc.vip}`);
    const ips: string[] = [];
    for (const n of ["r0", "r1"]) {
      const s = await ctx.sandbox(n);
      ips.push(addr((await ctx.connect(s, net.name)).ipv4));
      await ctx.impl.addBackend!(svc.name, s.name);
    }
    const q = await ctx.sandbox("q");
    await ctx.connect(q, net.name);
    const rr = await probeDns(q.netnsPath, q.resolver ?? "127.0.0.11", svc.name);
    if ([...rr.answers].sort().join() !== [...ips].sort().join()) {
      ctx.fail(`DNS-RR mode: ${svc.name} resolves to ${rr.answers.join(", ") || rr.rcode}`, {
        expected: ips.join(", "),
        reproduce: [rr.command],
      });
    }
  },
});

export const lbTasks = defineCase({
  id: "lb.tasks-name",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "dns", "lb.vip"],
  asserts: "tasks.NAME resolves to every backend's address",
  mirrors: "Docker swarm tasks.<service> DNS name",
  async run(ctx) {
    const { client, svc, backends, net } = await setup(ctx, 3);
    const ips = backends.map((b) => addr(b.endpoints[net].ipv4)).sort();
    const r = await probeDns(
      client.netnsPath,
      client.resolver ?? "127.0.0.11",
      `tasks.${svc.name}`,
    );
    if ([...r.answers].sort().join() !== ips.join()) {
      ctx.fail(`tasks.${svc.name} resolves to ${r.answers.join(", ") || r.rcode}`, {
        expected: ips.join(", "),
        reproduce: [r.command],
      });
    }
  },
});

export const lbHairpin = defineCase({
  id: "lb.hairpin",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts:
    "A backend connecting to its own service's VIP always gets an answer, including from itself",
  mirrors: "conformance-anchors §7 case 18 (masquerade for hairpin)",
  async run(ctx) {
    const { svc, backends } = await setup(ctx, 2);
    const vip = vipOf(ctx, svc);
    const counts = tally(await hits(backends[0], vip, 30, 4));
    if (counts.has("(no answer)")) {
      ctx.fail(
        `${counts.get("(no answer)")} of 30 connections from a backend to its VIP got no answer`,
      );
    }
    if (!counts.has(backends[0].name)) {
      ctx.fail(`the backend never reached itself through the VIP in 30 tries`);
    }
  },
});

export const lbUdp = defineCase({
  id: "lb.udp-parallel",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts: "50 parallel UDP datagrams to the VIP all get an answer from a backend",
  mirrors: "kernel selftests conntrack_clash.sh (no insert-clash loss)",
  async run(ctx) {
    const { client, svc, backends } = await setup(ctx, 3);
    const vip = vipOf(ctx, svc);
    const names = new Set(backends.map((b) => b.name));
    const rs = await Promise.all(
      Array.from({ length: 50 }, () => probeUdp(client.netnsPath, vip, PORT, { timeoutMs: 2000 })),
    );
    const lost = rs.filter((r) => !r.ok || !names.has(r.identity ?? ""));
    if (lost.length) {
      ctx.fail(`${lost.length} of 50 UDP datagrams got no backend answer`, {
        reproduce: [lost[0].command],
      });
    }
  },
});

export const lbEmpty = defineCase({
  id: "lb.empty-service-refuses",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip"],
  asserts: "Connecting to a service with no backends is refused promptly (no hang)",
  mirrors: "kube-proxy: services without endpoints reject (ICMP/RST)",
  async run(ctx) {
    const { client, svc } = await setup(ctx, 0);
    const vip = vipOf(ctx, svc);
    const t0 = performance.now();
    const r = await probeTcp(client.netnsPath, vip, PORT, { timeoutMs: 3000 });
    const ms = performance.now() - t0;
    if (r.ok || ms > 1500) {
      ctx.fail(
        `connecting to an empty service: ${
          r.ok ? "answered" : `no answer for ${Math.round(ms)} ms`
        }`,
        {
          expected: "refused within 1.5 s",
          observed: r.detail,
          reproduce: [r.command],
        },
      );
    }
  },
});

export const lbAffinity = defineCase({
  id: "lb.affinity",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip", "lb.affinity"],
  asserts:
    "With client-IP affinity, 15 consecutive connections from one client reach the same backend",
  mirrors: "k8s CheckAffinity (AffinityConfirmCount = 15)",
  async run(ctx) {
    const { client, svc } = await setup(ctx, 3, "vip", { affinity: "client-ip" });
    const vip = vipOf(ctx, svc);
    const ids = await hits(client, vip, 15, 1);
    if (new Set(ids).size !== 1 || ids[0] === undefined) {
      ctx.fail(
        `15 connections reached ${[...tally(ids)].map(([k, v]) => `${k} ${v}`).join(", ")}`,
        { expected: "one backend" },
      );
    }
  },
});

export const lbRestart = defineCase({
  id: "lb.restart-keeps-services",
  area: "lb",
  profile: "lb",
  needs: ["bridge", "lb.vip", "restart"],
  exclusive: true,
  asserts:
    "After a graceful restart and after a kill -9 of the implementation, a service's VIP still reaches every one of its backends",
  mirrors: "Docker --live-restore; issue 8 (services survive a daemon restart)",
  async run(ctx) {
    const { client, svc, backends } = await setup(ctx, 3);
    const vip = vipOf(ctx, svc);
    await afterEachRestart(ctx, async (how) => {
      await expectAllBackends(ctx, client, vip, backends, `after a ${how} restart: `);
    });
  },
});

export const lbCases = [
  lbAllBackends,
  lbDistribution,
  lbRemoval,
  lbAdded,
  lbVipVsDnsrr,
  lbTasks,
  lbHairpin,
  lbUdp,
  lbEmpty,
  lbAffinity,
  lbRestart,
];
