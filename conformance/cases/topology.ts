/**
 * Topology cases: a declarative YAML file (fixtures/*.yaml, or a user's `--topology FILE`)
 * gives networks, sandboxes and their attachments; the case builds it, probes every
 * (sandbox → address) pair over ICMP (witnessed at the target; negatives as bursts after a
 * control) and compares the observed matrix with the one the file implies (membership, ICC,
 * the file's own `expect:` entries); then each sandbox's egress to the external world.
 * @module
 */
import {
  iccEnabled,
  impliedEgress,
  impliedReachability,
  loadTopology,
} from "../topology/schema.ts";
import type { Capability } from "../impl.ts";
import {
  type Case,
  defineCase,
  gridDiffs,
  type MatrixCell,
  type Sandbox,
  type Target,
  target,
  worldTarget,
} from "./framework.ts";

/** Builds the case of one topology file. */
export async function topologyCase(path: string): Promise<Case> {
  const topo = await loadTopology(path);
  const fixture = path.includes("/fixtures/");
  return defineCase({
    id: `topology.${topo.name}`,
    area: "topology",
    profile: "core",
    needs: needsOf(topo),
    asserts: `${topo.description ?? topo.name} (${fixture ? "fixture" : "topology file"} ${
      path.split("/").pop()
    })`,
    mirrors: topo.mirrors ?? "declared reachability",
    async run(ctx) {
      const netNames = new Map<string, string>();
      for (const n of topo.networks) {
        const created = await ctx.network(n.name, {
          driver: n.driver ?? "bridge",
          subnet: n.subnet,
          gateway: n.gateway,
          ipRange: n.ipRange,
          internal: n.internal,
          options: n.options,
        });
        netNames.set(n.name, created.name);
      }
      const sbs = new Map<string, Sandbox>();
      for (const s of topo.sandboxes) {
        const sb = await ctx.sandbox(s.name, s.hostname);
        for (const a of s.networks) {
          await ctx.connect(sb, netNames.get(a.network)!, { ipv4: a.ipv4, aliases: a.aliases });
        }
        sbs.set(s.name, sb);
      }
      const implied = impliedReachability(topo);
      const sbOf = (e: { sandbox: string }) => sbs.get(e.sandbox)!;
      const targets: Target[] = implied.endpoints.map((e, i) => ({
        ...target(sbOf(e), netNames.get(e.network)!),
        label: implied.labels[i],
      }));
      const cells: MatrixCell[][] = implied.endpoints.map((src, i) =>
        targets.map((to, j) => ({ from: sbOf(src), to, want: implied.matrix[i][j] }))
      );
      const controls = implied.endpoints.map((src, i) =>
        targets.find((t, j) => implied.matrix[i][j] && t.at !== sbOf(src))
      );
      const observed = await ctx.matrix(cells, controls);
      ctx.showGrid({ labels: implied.labels, expected: implied.matrix, observed });
      const diffs = gridDiffs(implied.labels, implied.matrix, observed);
      if (diffs.length) {
        const { i, j } = diffs[0];
        ctx.fail(
          `${diffs.length} pair(s) differ: ${diffs.slice(0, 3).map((d) => d.text).join("; ")}`,
          {
            expected: "the reachability the topology implies",
            observed: "see grid",
            reproduce: [
              `nsenter --net=${cells[i][j].from.netnsPath} ping -c1 -W1 ${targets[j].ip}`,
            ],
          },
          { labels: implied.labels, expected: implied.matrix, observed },
        );
      }
      // egress: each sandbox reaches the external world iff the file says (or implies) so
      const egress = impliedEgress(topo);
      const world = worldTarget(ctx.hosts[0]);
      await Promise.all(topo.sandboxes.map(async (s, k) => {
        const sb = sbs.get(s.name)!;
        if (egress[k].reach) return void await ctx.expectReach(sb, world, "icmp");
        const i = implied.endpoints.findIndex((e) => e.sandbox === s.name);
        const control = i >= 0 ? controls[i] : undefined;
        if (!control) {
          ctx.note(`${s.name}: no peer to control its egress check with; checked without one`);
          const o = await ctx.observe(sb, world, "icmp");
          if (o.arrivals.length) ctx.fail(`${s.name} -> external world: expected blocked, arrived`);
          return;
        }
        await ctx.expectBlocked(sb, world, "icmp", { control });
      }));
    },
  });
}

function needsOf(topo: Awaited<ReturnType<typeof loadTopology>>): Capability[] {
  const needs: Capability[] = ["bridge"];
  if (impliedEgress(topo).some((e) => e.reach)) needs.push("bridge.masquerade");
  if (topo.networks.some((n) => n.internal)) needs.push("bridge.internal");
  if (topo.networks.some((n) => !iccEnabled(n))) needs.push("bridge.icc");
  if (topo.networks.some((n) => n.ipRange)) needs.push("ip-range");
  if (topo.networks.some((n) => n.ipv6Subnet)) needs.push("ipv6");
  if (topo.sandboxes.some((s) => s.networks.some((a) => a.ipv4))) needs.push("static-ip");
  if (topo.sandboxes.some((s) => s.networks.some((a) => a.aliases?.length))) needs.push("aliases");
  return needs;
}
