/**
 * Overlay cases (profile `overlay`): global networks across three hosts of an underlay
 * (conformance/harness/underlay.ts: host namespaces on one segment, 203.0.113.0/24, and a
 * real etcd as the cluster store). Each host of the underlay has its underlay address and
 * the store's URL in `Host.underlay`; networks are made on the first and seen on every host,
 * sandboxes live on the host they were made on (research/libnetwork.md §3.4).
 * @module
 */
import type { HarnessHost } from "../harness/hosts.ts";
import { observeAddrs } from "../harness/observe.ts";
import { type DnsProbeResult, pollUntil, probeDns } from "../probes/mod.ts";
import {
  addr,
  type CaseContext,
  defineCase,
  HarnessError,
  PROTOS,
  type Sandbox,
  target,
  worldTarget,
} from "./framework.ts";

/** The overlay driver's default MTU: 1500 less VXLAN's 50 bytes. */
const OVERLAY_MTU = 1450;

const NEEDS = ["overlay", "multi-host"] as const;

/** The hosts of the underlay, in order (o1, o2, o3). */
function cluster(ctx: CaseContext, n: number): HarnessHost[] {
  const hosts = ctx.hosts.filter((h) => h.underlay);
  if (hosts.length < n) {
    throw new HarnessError(`the case needs ${n} underlay hosts, the harness made ${hosts.length}`);
  }
  return hosts;
}

/** An overlay network, made on the first underlay host, on a subnet of the case's own. */
function overlay(ctx: CaseContext, base: string, internal = false) {
  return ctx.network(base, {
    driver: "overlay",
    host: cluster(ctx, 1)[0].name,
    subnet: ctx.subnet(),
    ...(internal ? { internal } : {}),
  });
}

/** A sandbox on `host`, connected to `nets`, with responders answering as its name. */
async function member(
  ctx: CaseContext,
  base: string,
  host: HarnessHost,
  nets: string[],
): Promise<Sandbox> {
  const sb = await ctx.sandbox(base, undefined, host.name);
  for (const n of nets) await ctx.connect(sb, n);
  await ctx.responders(sb);
  return sb;
}

async function lookup(from: Sandbox, name: string): Promise<DnsProbeResult> {
  return await probeDns(from.netnsPath, from.resolver ?? "127.0.0.11", name, {
    timeoutMs: 1000,
  });
}

/** A name that resolved to nothing (an answer came: not a timeout or an error). */
function unresolved(r: DnsProbeResult): boolean {
  return !r.ok && (r.rcode === "NXDOMAIN" || r.rcode === "NOERROR");
}

/** Fails unless `name` resolves from `from` to exactly `ip` (bounded convergence). */
async function expectName(ctx: CaseContext, from: Sandbox, name: string, ip: string) {
  const poll = await pollUntil(
    () => lookup(from, name),
    (r) => r.ok && r.answers.join() === ip,
    { deadlineMs: 3000, intervalMs: 100 },
  );
  if (!poll.ok) {
    const r = poll.value;
    ctx.fail(`${from.name}: A ${name}: got ${r.rcode} ${r.answers.join(", ")}`, {
      expected: `NOERROR ${ip}`,
      observed: `${r.rcode} ${r.answers.join(", ") || "(no answers)"}`,
      reproduce: [r.command],
    });
  }
}

/** Fails unless `name` stops resolving from `from` within `ms`; returns when it went. */
async function expectNameGone(
  ctx: CaseContext,
  from: Sandbox,
  name: string,
  ms: number,
  why: string,
): Promise<number> {
  const t0 = performance.now();
  let gone = Infinity;
  const poll = await pollUntil(
    async () => {
      const asked = performance.now();
      const r = await lookup(from, name);
      if (unresolved(r)) gone = asked - t0;
      return r;
    },
    unresolved,
    { deadlineMs: ms, intervalMs: 100 },
  );
  if (!poll.ok) {
    const r = poll.value;
    ctx.fail(`${from.name}: A ${name} still resolves ${why}`, {
      expected: `NXDOMAIN (or no answers) within ${ms} ms`,
      observed: `${r.rcode} ${r.answers.join(", ") || "(no answers)"}`,
      reproduce: [r.command],
    });
  }
  return gone;
}

export const overlayCrossHost = defineCase({
  id: "overlay.cross-host",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS],
  asserts:
    "A sandbox on host o1 and one on host o2, on one overlay network, reach each other by IP over ICMP, TCP and UDP, both ways, and the responder is the sandbox addressed",
  mirrors: "libnetwork overlay driver (VXLAN across hosts); docker network create -d overlay",
  async run(ctx) {
    const [o1, o2] = cluster(ctx, 2);
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    await Promise.all(
      PROTOS.flatMap((p) => [
        ctx.expectReach(a, target(b, net.name), p),
        ctx.expectReach(b, target(a, net.name), p),
      ]),
    );
  },
});

export const overlayIsolation = defineCase({
  id: "overlay.isolation",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS, "bridge"],
  asserts:
    "No traffic crosses between two overlay networks (sandboxes on o1 and o2, ICMP, TCP and UDP), nor between an overlay sandbox and a bridge network's sandbox on the same host; each negative after a positive control from the same source",
  mirrors:
    "libnetwork: one VXLAN (VNI) and one namespace per overlay; DOCKER-ISOLATION between bridges",
  async run(ctx) {
    const [o1, o2] = cluster(ctx, 2);
    const [ov1, ov2] = await Promise.all([overlay(ctx, "ov1"), overlay(ctx, "ov2")]);
    const br = await ctx.network("br", { driver: "bridge", host: o2.name, subnet: ctx.subnet() });
    const a = await member(ctx, "a", o1, [ov1.name]);
    const b = await member(ctx, "b", o2, [ov1.name]);
    const x = await member(ctx, "x", o1, [ov2.name]);
    const y = await member(ctx, "y", o2, [ov2.name]);
    const z = await member(ctx, "z", o2, [br.name]);
    const z2 = await member(ctx, "z2", o2, [br.name]);
    const checks: Promise<unknown>[] = [];
    for (const p of PROTOS) {
      // across overlays, across hosts: the control is the same source's own overlay peer
      checks.push(ctx.expectBlocked(a, target(y, ov2.name), p, { control: target(b, ov1.name) }));
      checks.push(ctx.expectBlocked(x, target(b, ov1.name), p, { control: target(y, ov2.name) }));
      // overlay vs bridge on host o2, both ways
      checks.push(ctx.expectBlocked(b, target(z, br.name), p, { control: target(a, ov1.name) }));
      checks.push(ctx.expectBlocked(z, target(b, ov1.name), p, { control: target(z2, br.name) }));
    }
    await Promise.all(checks);
  },
});

export const overlayMtu = defineCase({
  id: "overlay.mtu",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS],
  asserts:
    `An overlay endpoint has MTU ${OVERLAY_MTU}; across hosts a ${OVERLAY_MTU}-byte ICMP packet with don't-fragment passes and a ${
      OVERLAY_MTU + 1
    }-byte one does not (after a control of ${OVERLAY_MTU} bytes)`,
  mirrors: "libnetwork overlay: default MTU 1450 (VXLAN's 50-byte header on a 1500 underlay)",
  async run(ctx) {
    const [o1, o2] = cluster(ctx, 2);
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    const ip = addr(a.endpoints[net.name].ipv4);
    const inside = (await observeAddrs(a.netnsPath)).find((x) => x.address === ip);
    if (!inside || inside.mtu !== OVERLAY_MTU) {
      ctx.fail(`${a.name}'s overlay interface has MTU ${inside?.mtu ?? "?"}`, {
        expected: `MTU ${OVERLAY_MTU}`,
        observed: `MTU ${inside?.mtu ?? "unknown"} on ${inside?.ifname ?? "?"}`,
        reproduce: [`nsenter --net=${a.netnsPath} ip link`],
      });
    }
    const peer = target(b, net.name);
    // ICMP payload = MTU - 20 (IPv4 header) - 8 (ICMP header)
    await ctx.expectReach(a, peer, "icmp", { size: OVERLAY_MTU - 28, dontFragment: true });
    await ctx.expectBlocked(a, peer, "icmp", {
      size: OVERLAY_MTU - 27,
      dontFragment: true,
      control: peer,
      controlSize: OVERLAY_MTU - 28,
    });
  },
});

export const overlayDns = defineCase({
  id: "overlay.dns",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS, "dns"],
  asserts:
    "On an overlay, a sandbox on o1 resolves by name sandboxes on o2 and o3 to their overlay addresses; once the o2 sandbox is disconnected its name no longer resolves on o1 while the o3 one still does",
  mirrors: "libnetwork: service records of a global network are shared by every host",
  async run(ctx) {
    const [o1, o2, o3] = cluster(ctx, 3);
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    const c = await member(ctx, "c", o3, [net.name]);
    await expectName(ctx, a, b.name, addr(b.endpoints[net.name].ipv4));
    await expectName(ctx, a, c.name, addr(c.endpoints[net.name].ipv4));
    await ctx.disconnect(b, net.name);
    await expectNameGone(ctx, a, b.name, 3000, `after ${b.name} was disconnected on o2`);
    // the resolver still answers for the overlay (the name went, not the resolver)
    await expectName(ctx, a, c.name, addr(c.endpoints[net.name].ipv4));
  },
});

/** Sandboxes each host connects at once in overlay.unique-addresses. */
const PER_HOST = 12;

export const overlayUniqueAddresses = defineCase({
  id: "overlay.unique-addresses",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS],
  asserts:
    `When hosts o1 and o2 each connect ${PER_HOST} sandboxes to one overlay at the same time, every endpoint gets an address of the subnet no other endpoint has, and holds it on its interface`,
  mirrors: "libnetwork: global IPAM of an overlay's pool, in the cluster store",
  async run(ctx) {
    const [o1, o2] = cluster(ctx, 2);
    // internal: no docker_gwbridge endpoints, only the overlay's addresses are at stake
    const net = await overlay(ctx, "ov", true);
    const many = async (h: HarnessHost, tag: string) => {
      const sbs = await Promise.all(
        Array.from({ length: PER_HOST }, (_, i) => ctx.sandbox(`${tag}${i}`, undefined, h.name)),
      );
      return sbs;
    };
    const [s1, s2] = await Promise.all([many(o1, "p"), many(o2, "q")]);
    const all = [...s1, ...s2];
    await Promise.all(all.map((sb) => ctx.connect(sb, net.name)));
    const ips = all.map((sb) => addr(sb.endpoints[net.name].ipv4));
    const seen = new Map<string, string[]>();
    for (const [i, ip] of ips.entries()) seen.set(ip, [...(seen.get(ip) ?? []), all[i].name]);
    const dup = [...seen].filter(([, names]) => names.length > 1);
    if (dup.length) {
      ctx.fail(`${dup.length} address(es) given to more than one endpoint`, {
        expected: `${all.length} distinct addresses`,
        observed: dup.map(([ip, names]) => `${ip}: ${names.join(", ")}`).join("; "),
      });
    }
    const prefix = net.subnet.split(".").slice(0, 3).join(".") + ".";
    const outside = ips.filter((ip) => !ip.startsWith(prefix));
    if (outside.length) {
      ctx.fail(`addresses outside ${net.subnet}`, { observed: outside.join(", ") });
    }
    const missing: string[] = [];
    await Promise.all(all.map(async (sb, i) => {
      const held = (await observeAddrs(sb.netnsPath)).some((x) => x.address === ips[i]);
      if (!held) missing.push(`${sb.name} (${ips[i]})`);
    }));
    if (missing.length) {
      ctx.fail(`endpoints without their reported address on an interface`, {
        observed: missing.join(", "),
        reproduce: [`nsenter --net=${all[0].netnsPath} ip -br addr`],
      });
    }
    ctx.note(`${all.length} endpoints, ${seen.size} distinct addresses`);
  },
});

export const overlayEgress = defineCase({
  id: "overlay.egress",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS, "bridge.masquerade"],
  asserts:
    "A sandbox on a (non-internal) overlay reaches its host's outside world over ICMP, TCP and UDP (through docker_gwbridge), and the world's responder answers",
  mirrors: "libnetwork: docker_gwbridge gives overlay endpoints their default route",
  async run(ctx) {
    const [o1] = cluster(ctx, 1);
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    await Promise.all(PROTOS.map((p) => ctx.expectReach(a, worldTarget(o1), p)));
  },
});

export const overlayInternal = defineCase({
  id: "overlay.internal",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS],
  asserts:
    "A sandbox on an internal overlay does not reach its host's outside world (ICMP, TCP, UDP) while it reaches its overlay peer on another host",
  mirrors: "docker network create -d overlay --internal (no docker_gwbridge endpoint)",
  async run(ctx) {
    const [o1, o2] = cluster(ctx, 2);
    const net = await overlay(ctx, "ov", true);
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    await Promise.all(
      PROTOS.map((p) => ctx.expectBlocked(a, worldTarget(o1), p, { control: target(b, net.name) })),
    );
  },
});

export const overlayNodeLoss = defineCase({
  id: "overlay.node-loss",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS, "dns", "restart"],
  exclusive: true,
  asserts:
    "When host o2 is lost (its implementation killed, its underlay link down), its sandbox's name goes on o1 and o3 within the store TTL plus 1 s, while the survivors on o1 and o3 still resolve and reach each other over ICMP, TCP and UDP",
  mirrors: "libnetwork: a dead node's endpoints expire with its store lease (peer delete)",
  async run(ctx) {
    const [o1, o2, o3] = cluster(ctx, 3);
    if (!ctx.impl.stopHost || !o2.cluster) {
      throw new HarnessError(`${ctx.impl.name} declares multi-host but has no stopHost`);
    }
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    const c = await member(ctx, "c", o3, [net.name]);
    const ipA = addr(a.endpoints[net.name].ipv4);
    const ipB = addr(b.endpoints[net.name].ipv4);
    const ipC = addr(c.endpoints[net.name].ipv4);
    // before: the checks below can see what they then wait to go
    await ctx.expectReach(a, target(b, net.name), "icmp");
    await Promise.all([expectName(ctx, a, b.name, ipB), expectName(ctx, c, b.name, ipB)]);
    const ul = o2.cluster;
    ctx.defer(async () => {
      // the host comes back, so its sandboxes can be removed like any others
      await ul.setHostLink(o2.netns, true);
      await ctx.impl.restart!(o2.name, "kill");
    });
    const ttlMs = await ctx.impl.stopHost(o2.name);
    await ul.setHostLink(o2.netns, false);
    const within = ttlMs + 1000;
    const [goneA, goneC] = await Promise.all([
      expectNameGone(ctx, a, b.name, within, `${within} ms after o2 was lost`),
      expectNameGone(ctx, c, b.name, within, `${within} ms after o2 was lost`),
    ]);
    ctx.note(
      `o2's name gone on o1 after ${goneA.toFixed(0)} ms, on o3 after ${goneC.toFixed(0)} ms ` +
        `(TTL ${ttlMs} ms)`,
    );
    await Promise.all([expectName(ctx, a, c.name, ipC), expectName(ctx, c, a.name, ipA)]);
    await Promise.all(
      PROTOS.flatMap((p) => [
        ctx.expectReach(a, target(c, net.name), p),
        ctx.expectReach(c, target(a, net.name), p),
      ]),
    );
  },
});

/** How long an operation that needs the stopped store may take to fail (not hang). */
const OUTAGE_FAIL_MS = 10_000;
/** How long after the store is back an operation may take to work again. */
const RECOVERY_MS = 15_000;

/** Settles `p` within `ms`: its error (undefined when it succeeded), or "hung". */
async function settleWithin(p: Promise<unknown>, ms: number): Promise<Error | undefined | "hung"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), ms));
  try {
    return await Promise.race([p.then(() => undefined, (e) => e as Error), hung]);
  } finally {
    clearTimeout(timer);
  }
}

export const overlayStoreOutage = defineCase({
  id: "overlay.store-outage",
  area: "overlay",
  profile: "overlay",
  needs: [...NEEDS],
  exclusive: true,
  asserts:
    "With the cluster store stopped, traffic between existing sandboxes on two hosts keeps flowing, creating an overlay fails with a typed error within 10 s and leaves nothing (the name is free afterwards), and once the store is back a new sandbox on a third host connects and reaches the others without any restart",
  mirrors:
    "libnetwork with a libkv store: the data plane is programmed in the kernel and needs no store; global-scope writes go to the store",
  async run(ctx) {
    const [o1, o2, o3] = cluster(ctx, 3);
    const ul = o1.cluster;
    if (!ul) throw new HarnessError("the underlay hosts carry no cluster handle");
    const net = await overlay(ctx, "ov");
    const a = await member(ctx, "a", o1, [net.name]);
    const b = await member(ctx, "b", o2, [net.name]);
    await ctx.expectReach(a, target(b, net.name), "icmp");
    // the store comes back whatever happens below
    ctx.defer(() => ul.startStore());
    await ul.stopStore();
    // the data plane needs no store
    for (const p of PROTOS) await ctx.expectReach(a, target(b, net.name), p);
    await ctx.expectReach(b, target(a, net.name), "tcp");
    // a global write fails, typed and bounded, and makes nothing
    const name = ctx.name("ov-out");
    const t0 = performance.now();
    const outcome = await settleWithin(
      ctx.impl.createNetwork({ name, driver: "overlay", host: o1.name, subnet: ctx.subnet() }),
      OUTAGE_FAIL_MS,
    );
    const ms = performance.now() - t0;
    if (outcome === "hung" || outcome === undefined || !(outcome as { kind?: string }).kind) {
      ctx.fail(
        `create overlay ${name} with the store stopped: ${
          outcome === "hung"
            ? `no answer within ${OUTAGE_FAIL_MS} ms`
            : outcome === undefined
            ? "it succeeded"
            : `an untyped error: ${outcome.message}`
        }`,
        {
          expected: `a typed refusal within ${OUTAGE_FAIL_MS} ms`,
          observed: outcome === "hung" ? "still pending" : String(outcome?.message ?? "success"),
        },
      );
    }
    ctx.note(
      `create with the store stopped failed after ${ms.toFixed(0)} ms: ${
        (outcome as Error).message
      }`,
    );
    await ul.startStore();
    // recovery without a restart: a new member on o3 joins and reaches the others
    const t1 = performance.now();
    const c = await ctx.sandbox("c", undefined, o3.name);
    const poll = await pollUntil(
      async () => {
        try {
          await ctx.connect(c, net.name);
          return true;
        } catch {
          return false;
        }
      },
      (ok) => ok,
      { deadlineMs: RECOVERY_MS, intervalMs: 250 },
    );
    if (!poll.ok) {
      ctx.fail(`connect on ${o3.name} still fails ${RECOVERY_MS} ms after the store is back`, {
        expected: `a connect within ${RECOVERY_MS} ms of the store's return`,
      });
    }
    ctx.note(
      `connect on ${o3.name} worked ${
        (performance.now() - t1).toFixed(0)
      } ms after the store was back`,
    );
    await ctx.responders(c);
    await ctx.expectReach(c, target(a, net.name), "tcp");
    await ctx.expectReach(a, target(c, net.name), "icmp");
    // the failed create left no claim: the name is free
    await ctx.network("ov-out", { driver: "overlay", host: o1.name, subnet: ctx.subnet() });
  },
});

/** Every overlay case. */
export const overlayCases = [
  overlayCrossHost,
  overlayIsolation,
  overlayMtu,
  overlayDns,
  overlayUniqueAddresses,
  overlayEgress,
  overlayInternal,
  overlayNodeLoss,
  overlayStoreOutage,
];
