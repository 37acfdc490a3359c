/**
 * Runs a parsed {@linkcode Invocation}: talks to the daemon, prints results, and returns the
 * exit status (0 ok, 1 error, 2 usage).
 * @module
 */
import type { SandboxView } from "../controller/controller.ts";
import type { NetworkView } from "../controller/controller.ts";
import { runDaemon } from "../daemon/daemon.ts";
import type { EndpointRecord, NetworkRecord, SandboxRecord } from "../model/objects.ts";
import { ApiClient, ApiError, NoDaemonError, seg } from "./client.ts";
import { networkTable, prettyJson, sandboxTable } from "./format.ts";
import type { CliCommand, Invocation } from "./parse.ts";
import type { ServiceRecord } from "../model/objects.ts";
import { serviceTable } from "./service.ts";

/** Where the CLI writes: whole lines, without their newline. */
export interface CliIo {
  /** Writes a line to standard output. */
  out(line: string): void;
  /** Writes a line to standard error. */
  err(line: string): void;
}

/** stdout and stderr. */
export const consoleIo: CliIo = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/** Runs `ip netns exec NETNS CMD...` with inherited stdio; returns CMD's exit status. */
export async function execInNetns(netnsName: string, cmd: string[]): Promise<number> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netnsName, ...cmd],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const forward = signals.map((sig) => {
    const fn = () => {
      try {
        child.kill(sig);
      } catch { /* exited */ }
    };
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  try {
    const status = await child.status;
    return status.code;
  } finally {
    for (const [sig, fn] of forward) Deno.removeSignalListener(sig, fn);
  }
}

async function run(c: Exclude<CliCommand, { kind: "help" | "daemon" }>, api: ApiClient, io: CliIo) {
  switch (c.kind) {
    case "network-create": {
      const net = await api.request<NetworkRecord>("POST", "/networks", c.body);
      io.out(net.id);
      return 0;
    }
    case "network-ls": {
      const nets = await api.request<NetworkRecord[]>("GET", "/networks");
      io.out(c.format === "json" ? prettyJson(nets) : networkTable(nets));
      return 0;
    }
    case "network-inspect": {
      const net = await api.request<NetworkView>("GET", `/networks/${seg(c.name)}`);
      io.out(c.format === "json" ? prettyJson(net) : networkTable([net]));
      return 0;
    }
    case "network-rm":
      return await removeEach(c.names, (n) => api.request("DELETE", `/networks/${seg(n)}`), io);
    case "sandbox-create": {
      const sb = await api.request<SandboxRecord>("POST", "/sandboxes", c.body);
      io.out(sb.id);
      return 0;
    }
    case "sandbox-ls": {
      const sbs = await api.request<SandboxView[]>("GET", "/sandboxes");
      io.out(c.format === "json" ? prettyJson(sbs) : sandboxTable(sbs));
      return 0;
    }
    case "sandbox-inspect": {
      const sb = await api.request<SandboxView>("GET", `/sandboxes/${seg(c.name)}`);
      io.out(c.format === "json" ? prettyJson(sb) : sandboxTable([sb]));
      return 0;
    }
    case "sandbox-rm":
      return await removeEach(c.names, (n) => api.request("DELETE", `/sandboxes/${seg(n)}`), io);
    case "connect":
      await api.request<EndpointRecord>("POST", `/networks/${seg(c.network)}/endpoints`, c.body);
      return 0;
    case "disconnect":
      await api.request(
        "DELETE",
        `/networks/${seg(c.network)}/endpoints/${seg(c.sandbox)}`,
      );
      return 0;
    case "exec": {
      const sb = await api.request<SandboxView>("GET", `/sandboxes/${seg(c.sandbox)}`);
      return await execInNetns(sb.netnsName, c.cmd);
    }
    // services (issue 8)
    case "service-create": {
      const svc = await api.request<ServiceRecord>("POST", "/services", c.body);
      io.out(svc.id);
      return 0;
    }
    case "service-add":
      await api.request("POST", `/services/${seg(c.service)}/backends`, { sandbox: c.sandbox });
      return 0;
    case "service-remove":
      await api.request("DELETE", `/services/${seg(c.service)}/backends/${seg(c.sandbox)}`);
      return 0;
    case "service-ls": {
      const svcs = await api.request<ServiceRecord[]>("GET", "/services");
      io.out(c.format === "json" ? prettyJson(svcs) : serviceTable(svcs));
      return 0;
    }
    case "service-inspect": {
      const svc = await api.request<ServiceRecord>("GET", `/services/${seg(c.name)}`);
      io.out(c.format === "json" ? prettyJson(svc) : serviceTable([svc]));
      return 0;
    }
    case "service-rm":
      return await removeEach(c.names, (n) => api.request("DELETE", `/services/${seg(n)}`), io);
  }
}

/** Removes each name in turn, as `docker rm` does: prints each removed, reports each failure. */
async function removeEach(
  names: string[],
  remove: (name: string) => Promise<unknown>,
  io: CliIo,
): Promise<number> {
  let status = 0;
  for (const name of names) {
    try {
      await remove(name);
      io.out(name);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      io.err(`cnm: ${err.message}`);
      status = 1;
    }
  }
  return status;
}

/** Runs an invocation; returns the exit status. Errors print one line `cnm: ...`. */
export async function execute(inv: Invocation, io: CliIo = consoleIo): Promise<number> {
  const c = inv.command;
  if (c.kind === "help") {
    (c.error ? io.err : io.out)(c.text.trimEnd());
    return c.error ? 2 : 0;
  }
  if (c.kind === "daemon") return await runDaemon(c.args, { socket: inv.socket });
  const api = new ApiClient(inv.socket);
  try {
    return await run(c, api, io);
  } catch (err) {
    if (err instanceof ApiError || err instanceof NoDaemonError) {
      io.err(`cnm: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    api.close();
  }
}
