/**
 * Topology cases: a declarative YAML file (fixtures/*.yaml, or a user's `--topology FILE`)
 * gives networks, sandboxes and their attachments; the case builds it, probes every
 * (sandbox → address) pair over ICMP and compares the observed matrix with the one the file
 * implies (membership, ICC, the file's own `expect:` entries).
 * @module
 */
import { iccEnabled, impliedReachability, loadTopology } from "../topology/schema.ts";
import type { Capability } from "../impl.ts";
import { addr, type Case, convergedMatrix, defineCase, type Sb } from "./framework.ts";

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
      const sbs = new Map<string, Sb>();
      for (const s of topo.sandboxes) {
        const sb = await ctx.sandbox(s.name, s.hostname);
        for (const a of s.networks) {
          await ctx.connect(sb, netNames.get(a.network)!, { ipv4: a.ipv4, aliases: a.aliases });
        }
        sbs.set(s.name, sb);
      }
      const implied = impliedReachability(topo);
      const targets = implied.endpoints.map((e, i) => ({
        label: implied.labels[i],
        ip: addr(sbs.get(e.sandbox)!.eps[netNames.get(e.network)!].ipv4),
      }));
      const sources = implied.endpoints.map((e, i) => ({
        label: implied.labels[i],
        ns: sbs.get(e.sandbox)!.netnsPath,
      }));
      const observed = await convergedMatrix(sources, targets, implied.matrix);
      ctx.showGrid({ labels: implied.labels, expected: implied.matrix, observed });
      const diffs: string[] = [];
      implied.matrix.forEach((row, i) =>
        row.forEach((want, j) => {
          if (observed[i][j] !== want) {
            diffs.push(
              `${sources[i].label} -> ${targets[j].label}: expected ${want ? "reach" : "blocked"}`,
            );
          }
        })
      );
      if (diffs.length) {
        const first = diffs[0];
        const i = sources.findIndex((s) => first.startsWith(`${s.label} -> `));
        const j = targets.findIndex((t) => first.includes(`-> ${t.label}:`));
        ctx.fail(`${diffs.length} pair(s) differ: ${diffs.slice(0, 3).join("; ")}`, {
          expected: "the reachability the topology implies",
          observed: "see grid",
          reproduce: [`nsenter --net=${sources[i].ns} ping -c1 -W1 ${targets[j].ip}`],
        }, {
          labels: implied.labels,
          expected: implied.matrix,
          observed,
        });
      }
    },
  });
}

function needsOf(topo: Awaited<ReturnType<typeof loadTopology>>): Capability[] {
  const needs: Capability[] = ["bridge"];
  if (topo.networks.some((n) => n.internal)) needs.push("bridge.internal");
  if (topo.networks.some((n) => !iccEnabled(n))) needs.push("bridge.icc");
  if (topo.networks.some((n) => n.ipRange)) needs.push("ip-range");
  if (topo.networks.some((n) => n.ipv6Subnet)) needs.push("ipv6");
  if (topo.sandboxes.some((s) => s.networks.some((a) => a.ipv4))) needs.push("static-ip");
  if (topo.sandboxes.some((s) => s.networks.some((a) => a.aliases?.length))) needs.push("aliases");
  return needs;
}
