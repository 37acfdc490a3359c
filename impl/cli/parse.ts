/**
 * Parsing of the `cnm` command line into an {@linkcode Invocation}: what to do, with which
 * socket. No side effects (no daemon, no files), so it is unit-tested on its own.
 *
 * ```
 * cnm [--socket PATH] daemon ...
 * cnm network create [--driver D] [--subnet CIDR] [--gateway IP] [--ip-range CIDR] [--ipv6]
 *                    [--ipv6-subnet CIDR] [--ipv6-gateway IP] [--internal] [-o|--opt K=V]...
 *                    [--label K=V]... NAME
 * cnm network ls [--format json] | network inspect NAME [--format json|table] | network rm NAME...
 * cnm sandbox create [--hostname H] NAME | sandbox ls [--format json]
 * cnm sandbox inspect NAME [--format json|table] | sandbox rm NAME...
 * cnm connect [--ip IP] [--ip6 IP] [--alias A]...
 *             [--publish [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]]... NETWORK SANDBOX
 * cnm disconnect NETWORK SANDBOX
 * cnm exec SANDBOX -- CMD [ARG...]
 * cnm service create [--mode vip|dnsrr] [--port PORT[/tcp|/udp]]... [--affinity client-ip]
 *                    --network NETWORK NAME
 * cnm service add NAME SANDBOX | service remove NAME SANDBOX | service ls [--format json]
 * cnm service inspect NAME [--format json|table] | service rm NAME...
 * ```
 * @module
 */
import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { ConnectBody, NetworkCreateBody, SandboxCreateBody } from "../daemon/api.ts";
import { VERSION } from "../daemon/daemon.ts";
import { commanderMessage, DEFAULT_SOCKET, UsageError } from "../daemon/flags.ts";
import { collectPublish } from "./publish.ts";
import type { ServiceCreateBody } from "../daemon/api.ts";
import { collectPort } from "./service.ts";

export { UsageError };

/** Output format of `ls` and `inspect`. */
export type OutputFormat = "table" | "json";

/** One thing the CLI can do. */
export type CliCommand =
  | { kind: "help"; text: string; error: boolean }
  | { kind: "daemon"; args: string[] }
  | { kind: "network-create"; body: NetworkCreateBody }
  | { kind: "network-ls"; format: OutputFormat }
  | { kind: "network-inspect"; name: string; format: OutputFormat }
  | { kind: "network-rm"; names: string[] }
  | { kind: "sandbox-create"; body: SandboxCreateBody }
  | { kind: "sandbox-ls"; format: OutputFormat }
  | { kind: "sandbox-inspect"; name: string; format: OutputFormat }
  | { kind: "sandbox-rm"; names: string[] }
  | { kind: "connect"; network: string; body: ConnectBody }
  | { kind: "disconnect"; network: string; sandbox: string }
  | { kind: "exec"; sandbox: string; cmd: string[] }
  | { kind: "service-create"; body: ServiceCreateBody }
  | { kind: "service-add"; service: string; sandbox: string }
  | { kind: "service-remove"; service: string; sandbox: string }
  | { kind: "service-ls"; format: OutputFormat }
  | { kind: "service-inspect"; name: string; format: OutputFormat }
  | { kind: "service-rm"; names: string[] };

/** A parsed command line: the command and the daemon socket it talks to. */
export interface Invocation {
  /** The API socket: `--socket`, else `CNM_SOCKET`, else /run/cnm/cnm.sock. */
  socket: string;
  /** What to do. */
  command: CliCommand;
}

/** The socket to use: the flag, else `CNM_SOCKET`, else the default. */
export function resolveSocket(flag: string | undefined, env: Record<string, string>): string {
  if (flag) return flag;
  const fromEnv = env["CNM_SOCKET"];
  return fromEnv ? fromEnv : DEFAULT_SOCKET;
}

/** Parses `KEY=VALUE`; the key must not be empty (the value may be). */
export function parseKeyValue(text: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`Expected KEY=VALUE, got "${text}".`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

const collect = (v: string, prev: string[]) => [...prev, v];
const collectKv = (v: string, prev: [string, string][]) => [...prev, parseKeyValue(v)];

function format(value: string | undefined, allowed: OutputFormat[]): OutputFormat {
  if (value === undefined) return allowed[0];
  if ((allowed as string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(
    `Invalid --format "${value}": use ${allowed.map((f) => `"${f}"`).join(" or ")}`,
  );
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Builds the commander program; `done` receives the parsed command. */
function program(out: { text: string }, done: (c: CliCommand) => void): Command {
  const p = new Command("cnm")
    .description("cnm: a reference implementation of Docker's Container Network Model")
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({
      writeOut: (s) => out.text += s,
      writeErr: (s) => out.text += s,
      outputError: () => {},
    })
    .version(VERSION, "-v, --version", "print the version")
    .option("--socket <path>", `daemon socket (default: $CNM_SOCKET or ${DEFAULT_SOCKET})`);

  p.command("daemon")
    .description("run the daemon (see `cnm daemon --help`)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .passThroughOptions()
    .argument("[args...]")
    .action((args: string[]) => done({ kind: "daemon", args }));

  const network = p.command("network").description("manage networks");
  network.command("create")
    .description("create a network; prints its id")
    .argument("<name>")
    .option("-d, --driver <driver>", 'network driver (default "bridge")')
    .option("--subnet <cidr>", "IPv4 subnet")
    .option("--gateway <ip>", "IPv4 gateway")
    .option("--ip-range <cidr>", "allocate addresses from this sub-range")
    .option("--ipv6", "enable IPv6")
    .option("--ipv6-subnet <cidr>", "IPv6 subnet")
    .option("--ipv6-gateway <ip>", "IPv6 gateway")
    .option("--internal", "no external connectivity")
    .option("-o, --opt <key=value>", "driver option (repeatable)", collectKv, [])
    .option("--label <key=value>", "label (repeatable)", collectKv, [])
    .action((name: string, o) => {
      const opts = Object.fromEntries(o.opt as [string, string][]);
      const labels = Object.fromEntries(o.label as [string, string][]);
      done({
        kind: "network-create",
        body: defined({
          name,
          driver: o.driver,
          subnet: o.subnet,
          gateway: o.gateway,
          ipRange: o.ipRange,
          ipv6: o.ipv6 ? true : undefined,
          ipv6Subnet: o.ipv6Subnet,
          ipv6Gateway: o.ipv6Gateway,
          internal: o.internal ? true : undefined,
          options: Object.keys(opts).length ? opts : undefined,
          labels: Object.keys(labels).length ? labels : undefined,
        }),
      });
    });
  network.command("ls").alias("list")
    .description("list networks")
    .option("--format <format>", 'output format: "table" or "json"')
    .action((o) => done({ kind: "network-ls", format: format(o.format, ["table", "json"]) }));
  network.command("inspect")
    .description("show a network (JSON, or a one-row table)")
    .argument("<name>")
    .option("--format <format>", 'output format: "json" or "table"')
    .action((name: string, o) =>
      done({ kind: "network-inspect", name, format: format(o.format, ["json", "table"]) })
    );
  network.command("rm").alias("remove")
    .description("remove networks; prints each name removed")
    .argument("<name...>")
    .action((names: string[]) => done({ kind: "network-rm", names }));

  const sandbox = p.command("sandbox").description("manage sandboxes");
  sandbox.command("create")
    .description("create a sandbox (a network namespace); prints its id")
    .argument("<name>")
    .option("--hostname <name>", "host name inside the sandbox")
    .action((name: string, o) =>
      done({ kind: "sandbox-create", body: defined({ name, hostname: o.hostname }) })
    );
  sandbox.command("ls").alias("list")
    .description("list sandboxes")
    .option("--format <format>", 'output format: "table" or "json"')
    .action((o) => done({ kind: "sandbox-ls", format: format(o.format, ["table", "json"]) }));
  sandbox.command("inspect")
    .description("show a sandbox (JSON, or a one-row table)")
    .argument("<name>")
    .option("--format <format>", 'output format: "json" or "table"')
    .action((name: string, o) =>
      done({ kind: "sandbox-inspect", name, format: format(o.format, ["json", "table"]) })
    );
  sandbox.command("rm").alias("remove")
    .description("remove sandboxes; prints each name removed")
    .argument("<name...>")
    .action((names: string[]) => done({ kind: "sandbox-rm", names }));

  p.command("connect")
    .description("connect a sandbox to a network")
    .argument("<network>")
    .argument("<sandbox>")
    .option("--ip <ip>", "static IPv4 address")
    .option("--ip6 <ip>", "static IPv6 address")
    .option("--alias <alias>", "network-scoped alias (repeatable)", collect, [])
    .option(
      "-p, --publish <spec>",
      "publish a port, [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] (repeatable; empty or 0 host port = ephemeral)",
      collectPublish,
      [],
    )
    .action((network: string, sb: string, o) =>
      done({
        kind: "connect",
        network,
        body: defined({
          sandbox: sb,
          ipv4: o.ip,
          ipv6: o.ip6,
          aliases: (o.alias as string[]).length ? o.alias : undefined,
          publish: (o.publish as unknown[]).length ? o.publish : undefined,
        }),
      })
    );
  p.command("disconnect")
    .description("disconnect a sandbox from a network")
    .argument("<network>")
    .argument("<sandbox>")
    .action((network: string, sb: string) => done({ kind: "disconnect", network, sandbox: sb }));
  p.command("exec")
    .description("run a command in a sandbox (with its hosts and resolv.conf)")
    .argument("<sandbox>")
    .argument("[cmd...]")
    .passThroughOptions()
    .action((sb: string, cmd: string[]) => {
      const argv = cmd[0] === "--" ? cmd.slice(1) : cmd;
      if (argv.length === 0) throw new UsageError(`exec needs a command: cnm exec ${sb} -- CMD`);
      done({ kind: "exec", sandbox: sb, cmd: argv });
    });

  // services (issue 8)
  const service = p.command("service").description("manage services (load balancing)");
  service.command("create")
    .description("create a service on a network; prints its id")
    .argument("<name>")
    .requiredOption("--network <network>", "the network the service lives on")
    .option("--mode <mode>", '"vip" (default: a virtual IP) or "dnsrr" (DNS round robin)')
    .option("--port <port>", "a balanced port, PORT[/tcp|/udp] (repeatable)", collectPort, [])
    .option("--affinity <affinity>", '"client-ip": one client keeps one backend')
    .action((name: string, o) =>
      done({
        kind: "service-create",
        body: defined({
          name,
          network: o.network,
          mode: o.mode,
          ports: (o.port as unknown[]).length ? o.port : undefined,
          affinity: o.affinity,
        }),
      })
    );
  service.command("add")
    .description("add a sandbox to a service's backends")
    .argument("<service>")
    .argument("<sandbox>")
    .action((svc: string, sb: string) => done({ kind: "service-add", service: svc, sandbox: sb }));
  service.command("remove")
    .description("remove a sandbox from a service's backends")
    .argument("<service>")
    .argument("<sandbox>")
    .action((svc: string, sb: string) =>
      done({ kind: "service-remove", service: svc, sandbox: sb })
    );
  service.command("ls").alias("list")
    .description("list services")
    .option("--format <format>", 'output format: "table" or "json"')
    .action((o) => done({ kind: "service-ls", format: format(o.format, ["table", "json"]) }));
  service.command("inspect")
    .description("show a service (JSON, or a one-row table)")
    .argument("<name>")
    .option("--format <format>", 'output format: "json" or "table"')
    .action((name: string, o) =>
      done({ kind: "service-inspect", name, format: format(o.format, ["json", "table"]) })
    );
  service.command("rm")
    .description("remove services; prints each name removed")
    .argument("<name...>")
    .action((names: string[]) => done({ kind: "service-rm", names }));
  return p;
}

/**
 * Parses a command line (without the program name). Throws {@linkcode UsageError} (exit
 * status 2) for an unknown flag or command, a missing argument or a bad value. `--help`
 * gives a `help` command.
 */
export function parseCli(argv: string[], env: Record<string, string> = {}): Invocation {
  const out = { text: "" };
  let command: CliCommand | undefined;
  const p = program(out, (c) => command = c);
  try {
    p.parse(argv, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      switch (err.code) {
        case "commander.helpDisplayed":
        case "commander.version":
          command = { kind: "help", text: out.text, error: false };
          break;
        case "commander.help":
        case "commander.executeSubCommandAsync":
          command = { kind: "help", text: out.text, error: true };
          break;
        default:
          throw new UsageError(commanderMessage(err));
      }
    } else {
      throw err;
    }
  }
  if (!command) command = { kind: "help", text: p.helpInformation(), error: true };
  const flag = p.opts().socket as string | undefined;
  return { socket: resolveSocket(flag, env), command };
}
