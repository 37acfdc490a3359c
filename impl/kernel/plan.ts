/**
 * Plans: ordered kernel operations, each with its undo, built by drivers and the controller
 * without running anything, then applied by {@linkcode Kernel.apply}. Unit tests render plans
 * to text and compare them with golden files.
 * @module
 */

/** `ip [-n NETNS] -batch -` with one command per line; `undo` lines run with `-force`. */
export interface IpOp {
  kind: "ip";
  /** Namespace name under /run/netns; absent = the process's own (root) namespace. */
  netns?: string;
  lines: string[];
  undo?: string[];
}

/**
 * `bridge -batch -` in a namespace (forwarding database entries, e.g. the overlay's
 * MAC -> VTEP entries); `undo` lines run with `-force`.
 */
export interface BridgeOp {
  kind: "bridge";
  netns?: string;
  lines: string[];
  undo?: string[];
}

/** One atomic `nft -f -` transaction; `undo` is another transaction. */
export interface NftOp {
  kind: "nft";
  netns?: string;
  script: string;
  undo?: string;
}

/** `ip netns add NAME`; undo deletes it. */
export interface NetnsAddOp {
  kind: "netns-add";
  name: string;
}

/** A sysctl in a namespace (not undone: it is namespace-wide state, like Docker's). */
export interface SysctlOp {
  kind: "sysctl";
  netns?: string;
  key: string;
  value: string;
}

/** Writes a file (making its directory); undo removes the directory when `undoDir` is set. */
export interface WriteOp {
  kind: "write";
  path: string;
  content: string;
  /** Directory to remove on undo (e.g. /etc/netns/NAME). */
  undoDir?: string;
}

/** A kernel operation. */
export type Op = IpOp | BridgeOp | NftOp | NetnsAddOp | SysctlOp | WriteOp;

/** A plan: operations in order. */
export interface Plan {
  ops: Op[];
}

/** Builds a plan from operations, dropping empty ones. */
export function plan(...ops: (Op | undefined | false)[]): Plan {
  return {
    ops: ops.filter((o): o is Op =>
      !!o && !((o.kind === "ip" || o.kind === "bridge") && o.lines.length === 0)
    ),
  };
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((l) => "  | " + l).join("\n");
}

function nsFlag(netns?: string): string {
  return netns ? ` -n ${netns}` : "";
}

/** Renders a plan as stable text for golden files and logs. */
export function renderPlan(p: Plan): string {
  const out: string[] = [];
  for (const op of p.ops) {
    switch (op.kind) {
      case "ip":
        out.push(`ip${nsFlag(op.netns)} -batch -`, indent(op.lines.join("\n")));
        if (op.undo?.length) {
          out.push(`  undo: ip${nsFlag(op.netns)} -force -batch -`, indent(op.undo.join("\n")));
        }
        break;
      case "bridge":
        out.push(
          `bridge${op.netns ? ` (netns ${op.netns})` : ""} -batch -`,
          indent(op.lines.join("\n")),
        );
        if (op.undo?.length) out.push(`  undo: bridge -force -batch -`, indent(op.undo.join("\n")));
        break;
      case "nft":
        out.push(`nft${op.netns ? ` (netns ${op.netns})` : ""} -f -`, indent(op.script));
        if (op.undo) out.push(`  undo: nft -f -`, indent(op.undo));
        break;
      case "netns-add":
        out.push(`ip netns add ${op.name}`, `  undo: ip netns del ${op.name}`);
        break;
      case "sysctl":
        out.push(`sysctl${op.netns ? ` (netns ${op.netns})` : ""} ${op.key}=${op.value}`);
        break;
      case "write":
        out.push(`write ${op.path}`, indent(op.content));
        if (op.undoDir) out.push(`  undo: rm -r ${op.undoDir}`);
        break;
    }
  }
  return out.join("\n") + "\n";
}
