/**
 * Sandboxes: create (a namespace with loopback up, its hosts, resolv.conf and hostname
 * files), remove (every network left first), inspect. The controller runs these under its
 * lock and undo stack.
 * @module
 */
import { plan } from "../kernel/plan.ts";
import type { UndoStack } from "../kernel/undo.ts";
import { ConflictError, InvalidArgumentError } from "../model/errors.ts";
import { newId, validateName } from "../model/names.ts";
import type { EndpointRecord, SandboxRecord } from "../model/objects.ts";
import { type ControllerContext, endpointsOf, findSandbox } from "./context.ts";
import { disconnectEndpoint } from "./endpoints.ts";
import { hostsFile } from "./files.ts";
import { beginIntent, forgetIntent } from "./journal.ts";
import { sandboxResolvConf } from "./resolver_sync.ts";

/** What `createSandbox` takes. */
export interface SandboxCreateOptions {
  name: string;
  /** Host name inside the sandbox; default the first 12 hex digits of its id (Docker). */
  hostname?: string;
}

/** A sandbox with its endpoints, as `sandbox inspect` shows it. */
export interface SandboxView extends SandboxRecord {
  endpointDetails: (EndpointRecord & { networkName: string })[];
}

const HOSTNAME_RE =
  /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** A sandbox and its endpoints, in join order. */
export function inspectSandbox(ctx: ControllerContext, ref: string): SandboxView {
  const sb = findSandbox(ctx, ref);
  const nets = new Map(ctx.store.list("network").map((n) => [n.id, n.name]));
  return {
    ...sb,
    endpointDetails: endpointsOf(ctx, sb).map((e) => ({
      ...e,
      networkName: nets.get(e.networkId) ?? e.networkId,
    })),
  };
}

/** Creates a sandbox: a namespace with loopback up, its hosts and resolv.conf. */
export async function createSandbox(
  ctx: ControllerContext,
  opts: SandboxCreateOptions,
  undo: UndoStack,
): Promise<SandboxRecord> {
  validateName("sandbox", opts.name);
  if (ctx.store.byName("sandbox", opts.name).length > 0) {
    throw new ConflictError(`sandbox with name ${opts.name} already exists`);
  }
  const id = newId();
  const hostname = opts.hostname ?? id.slice(0, 12);
  if (!HOSTNAME_RE.test(hostname) || hostname.length > 253) {
    throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(hostname)}`);
  }
  const netnsName = `${ctx.prefix}-${ctx.instance}-${id.slice(0, 12)}`;
  const record: SandboxRecord = {
    id,
    name: opts.name,
    hostname,
    netnsName,
    netnsPath: ctx.kernel.netnsPath(netnsName),
    endpoints: [],
    created: new Date().toISOString(),
  };
  const etc = ctx.kernel.etcNetnsPath(netnsName);
  const hostResolv = await ctx.kernel.fs.readTextFile("/etc/resolv.conf");
  await ctx.kernel.apply(
    plan(
      { kind: "netns-add", name: netnsName },
      { kind: "ip", netns: netnsName, lines: ["link set dev lo up"] },
      // IPv6 off, as Docker 20.10 has it in a container (all, default and lo: 1, measured
      // against a private dockerd): an interface gets it back only with an IPv6 address
      // (interfaceSysctls). Links that come up with IPv6 also flood DAD and MLD multicast
      // to every port of their bridge.
      { kind: "sysctl", netns: netnsName, key: "net.ipv6.conf.all.disable_ipv6", value: "1" },
      { kind: "sysctl", netns: netnsName, key: "net.ipv6.conf.default.disable_ipv6", value: "1" },
      {
        kind: "write",
        path: `${etc}/hosts`,
        content: hostsFile(hostname, []),
        undoDir: etc,
      },
      {
        kind: "write",
        path: `${etc}/resolv.conf`,
        content: sandboxResolvConf(ctx, hostResolv),
      },
      { kind: "write", path: `${etc}/hostname`, content: hostname + "\n" },
    ),
    undo,
  );
  const resolver = ctx.resolver;
  if (resolver) {
    await resolver.addSandbox(id, record.netnsPath);
    undo.push(`resolver ${id}`, () => resolver.removeSandbox(id));
  }
  ctx.store.transaction((tx) => tx.put("sandbox", record));
  ctx.log(`sandbox create ${record.name} netns=${netnsName}`);
  return record;
}

/** Removes a sandbox: leaves every network, deletes its namespace and files (§1.2 step 7). */
export async function removeSandbox(ctx: ControllerContext, ref: string): Promise<void> {
  let sb = findSandbox(ctx, ref);
  // journaled first: a crash from here on is finished on restart (./journal.ts)
  const intentId = `sandbox-rm:${sb.id}`;
  beginIntent(ctx, { id: intentId, op: "sandbox-rm", sandboxId: sb.id });
  try {
    const eps = endpointsOf(ctx, sb).reverse();
    // every interface down first, in one call: nothing answers for an address released
    // below while the namespace (which deletes the links) is being cleaned up by the kernel
    const named = eps.flatMap((ep) => ep.ifname ? [`link set dev ${ep.ifname} down`] : []);
    if (named.length > 0 && await ctx.kernel.netnsExists(sb.netnsName)) {
      await ctx.kernel.ipForce(sb.netnsName, named);
    }
    for (const ep of eps) {
      sb = await disconnectEndpoint(ctx, sb, ep, false, true);
    }
    // its sockets would keep the namespace alive
    await ctx.resolver?.removeSandbox(sb.id);
    await ctx.kernel.deleteNetns(sb.netnsName);
    await ctx.kernel.fs.remove(ctx.kernel.etcNetnsPath(sb.netnsName));
  } catch (err) {
    forgetIntent(ctx, intentId);
    throw err;
  }
  ctx.store.transaction((tx) => {
    tx.delete("sandbox", sb.id);
    tx.delete("intent", intentId);
  });
  ctx.log(`sandbox rm ${sb.name}`);
}
