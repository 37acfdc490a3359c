import assert from "node:assert/strict";
import { Controller } from "../controller/mod.ts";
import { createDefaultIpam } from "../ipam/mod.ts";
import { createDefaultDrivers } from "../open.ts";
import { openStore } from "../store/mod.ts";
import { createApiHandler } from "../daemon/api.ts";
import { FakeRunner, Kernel, MemoryFs } from "../kernel/mod.ts";
import { table } from "./format.ts";
import { main } from "./main.ts";
import { type CliCommand, parseCli, parseKeyValue, resolveSocket, UsageError } from "./parse.ts";

const SOCK = "/tmp/cnm-test.sock";

function cmd(argv: string[], env: Record<string, string> = {}): CliCommand {
  return parseCli(["--socket", SOCK, ...argv], env).command;
}

function usage(argv: string[], re: RegExp): void {
  assert.throws(() => parseCli(argv), (err: unknown) => {
    assert.ok(err instanceof UsageError, `${argv.join(" ")}: ${err}`);
    assert.match(err.message, re);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
}

Deno.test("cli: socket resolution: --socket, then CNM_SOCKET, then the default", () => {
  assert.equal(resolveSocket("/a", { CNM_SOCKET: "/b" }), "/a");
  assert.equal(resolveSocket(undefined, { CNM_SOCKET: "/b" }), "/b");
  assert.equal(resolveSocket(undefined, { CNM_SOCKET: "" }), "/run/cnm/cnm.sock");
  assert.equal(resolveSocket(undefined, {}), "/run/cnm/cnm.sock");
  assert.equal(parseCli(["--socket", "/x", "network", "ls"], { CNM_SOCKET: "/y" }).socket, "/x");
  assert.equal(parseCli(["network", "ls"], { CNM_SOCKET: "/y" }).socket, "/y");
  assert.equal(parseCli(["network", "ls"], {}).socket, "/run/cnm/cnm.sock");
  assert.equal(parseCli(["--socket=/z", "network", "ls"], {}).socket, "/z");
});

Deno.test("cli: network create with every flag and repeated options", () => {
  assert.deepEqual(
    cmd([
      "network",
      "create",
      "--driver",
      "bridge",
      "--subnet",
      "10.201.0.0/24",
      "--gateway",
      "10.201.0.254",
      "--ip-range",
      "10.201.0.128/25",
      "--ipv6",
      "--ipv6-subnet",
      "fd00:1::/64",
      "--ipv6-gateway",
      "fd00:1::1",
      "--internal",
      "-o",
      "com.docker.network.bridge.name=br-web",
      "--opt",
      "com.docker.network.driver.mtu=1400",
      "-o",
      "empty=",
      "--label",
      "team=a=b",
      "--label",
      "x=1",
      "web",
    ]),
    {
      kind: "network-create",
      body: {
        name: "web",
        driver: "bridge",
        subnet: "10.201.0.0/24",
        gateway: "10.201.0.254",
        ipRange: "10.201.0.128/25",
        ipv6: true,
        ipv6Subnet: "fd00:1::/64",
        ipv6Gateway: "fd00:1::1",
        internal: true,
        options: {
          "com.docker.network.bridge.name": "br-web",
          "com.docker.network.driver.mtu": "1400",
          empty: "",
        },
        labels: { team: "a=b", x: "1" },
      },
    },
  );
});

Deno.test("cli: network create with no flags sends only the name", () => {
  assert.deepEqual(cmd(["network", "create", "web"]), {
    kind: "network-create",
    body: { name: "web" },
  });
  assert.deepEqual(cmd(["network", "create", "-d", "null", "none"]), {
    kind: "network-create",
    body: { name: "none", driver: "null" },
  });
});

Deno.test("cli: ls, inspect and rm", () => {
  assert.deepEqual(cmd(["network", "ls"]), { kind: "network-ls", format: "table" });
  assert.deepEqual(cmd(["network", "list", "--format", "json"]), {
    kind: "network-ls",
    format: "json",
  });
  assert.deepEqual(cmd(["network", "inspect", "web"]), {
    kind: "network-inspect",
    name: "web",
    format: "json",
  });
  assert.deepEqual(cmd(["network", "inspect", "web", "--format=json"]), {
    kind: "network-inspect",
    name: "web",
    format: "json",
  });
  assert.deepEqual(cmd(["network", "rm", "a", "b"]), { kind: "network-rm", names: ["a", "b"] });
  assert.deepEqual(cmd(["sandbox", "create", "--hostname", "h1", "a"]), {
    kind: "sandbox-create",
    body: { name: "a", hostname: "h1" },
  });
  assert.deepEqual(cmd(["sandbox", "create", "a"]), {
    kind: "sandbox-create",
    body: { name: "a" },
  });
  assert.deepEqual(cmd(["sandbox", "ls", "--format", "json"]), {
    kind: "sandbox-ls",
    format: "json",
  });
  assert.deepEqual(cmd(["sandbox", "inspect", "a", "--format", "json"]), {
    kind: "sandbox-inspect",
    name: "a",
    format: "json",
  });
  assert.deepEqual(cmd(["sandbox", "remove", "a"]), { kind: "sandbox-rm", names: ["a"] });
});

Deno.test("cli: connect, disconnect", () => {
  assert.deepEqual(
    cmd([
      "connect",
      "--ip",
      "10.1.0.5",
      "--ip6",
      "fd00::5",
      "--alias",
      "db",
      "--alias",
      "db2",
      "web",
      "a",
    ]),
    {
      kind: "connect",
      network: "web",
      body: { sandbox: "a", ipv4: "10.1.0.5", ipv6: "fd00::5", aliases: ["db", "db2"] },
    },
  );
  assert.deepEqual(cmd(["connect", "web", "a"]), {
    kind: "connect",
    network: "web",
    body: { sandbox: "a" },
  });
  assert.deepEqual(cmd(["disconnect", "web", "a"]), {
    kind: "disconnect",
    network: "web",
    sandbox: "a",
  });
});

Deno.test("cli: exec passes the command through, with or without --", () => {
  assert.deepEqual(cmd(["exec", "a", "--", "cat", "-n", "/etc/hosts"]), {
    kind: "exec",
    sandbox: "a",
    cmd: ["cat", "-n", "/etc/hosts"],
  });
  assert.deepEqual(cmd(["exec", "a", "ping", "-c", "1", "--", "x"]), {
    kind: "exec",
    sandbox: "a",
    cmd: ["ping", "-c", "1", "--", "x"],
  });
  usage(["exec", "a"], /^exec needs a command/);
  usage(["exec", "a", "--"], /^exec needs a command/);
});

Deno.test("cli: daemon takes its arguments raw, with the global socket", () => {
  const inv = parseCli(["--socket", "/g.sock", "daemon", "--netns", "h", "--dns", "192.0.2.1"]);
  assert.deepEqual(inv.command, { kind: "daemon", args: ["--netns", "h", "--dns", "192.0.2.1"] });
  assert.equal(inv.socket, "/g.sock");
  assert.deepEqual(parseCli(["daemon", "--help"]).command, { kind: "daemon", args: ["--help"] });
});

Deno.test("cli: K=V parsing", () => {
  assert.deepEqual(parseKeyValue("a=b"), ["a", "b"]);
  assert.deepEqual(parseKeyValue("a="), ["a", ""]);
  assert.deepEqual(parseKeyValue("a=b=c"), ["a", "b=c"]);
  assert.throws(() => parseKeyValue("ab"), /Expected KEY=VALUE, got "ab"/);
  assert.throws(() => parseKeyValue("=b"), /Expected KEY=VALUE/);
});

Deno.test("cli: usage errors are one line", async (t) => {
  const cases: [string[], RegExp][] = [
    [["network", "create", "-o", "novalue", "web"], /argument 'novalue' is invalid.*KEY=VALUE/],
    [["network", "create", "--label", "=x", "web"], /argument '=x' is invalid/],
    [["network", "create", "--bogus", "web"], /^unknown option '--bogus'$/],
    [["network", "create"], /^missing required argument 'name'$/],
    [["network", "create", "a", "b"], /^too many arguments for 'create'/],
    [["network", "rm"], /^missing required argument 'name'$/],
    [["network", "ls", "--format", "yaml"], /^Invalid --format "yaml": use "table" or "json"$/],
    [
      ["network", "inspect", "x", "--format", "yaml"],
      /^Invalid --format "yaml": use "json" or "table"$/,
    ],
    [["connect", "web"], /^missing required argument 'sandbox'$/],
    [["connect", "--alias", "web"], /^missing required argument/],
    [["netwrk", "ls"], /^unknown command 'netwrk' \(Did you mean network\?\)$/],
    [["network", "ls", "--socket", "/x"], /^unknown option '--socket'$/],
    [["--socket"], /^option '--socket <path>' argument missing$/],
  ];
  for (const [argv, re] of cases) {
    await t.step(argv.join(" "), () => usage(argv, re));
  }
});

Deno.test("cli: help and version", () => {
  const help = parseCli(["--help"]).command;
  assert.equal(help.kind, "help");
  assert.ok(help.kind === "help" && !help.error && /Usage: cnm/.test(help.text));
  const group = parseCli(["network"]).command;
  assert.ok(group.kind === "help" && group.error && /create/.test(group.text));
  const bare = parseCli([]).command;
  assert.ok(bare.kind === "help" && bare.error);
  const version = parseCli(["--version"]).command;
  assert.ok(version.kind === "help" && /^\d+\.\d+\.\d+/.test(version.text));
});

Deno.test("cli: table lays out columns like docker's tabwriter", () => {
  assert.equal(
    table(["A", "LONG HEADER", "C"], [["xyz", "b", ""], ["1", "2", "3"]]),
    "A     LONG HEADER   C\nxyz   b\n1     2             3",
  );
});

/** Captures the CLI's output lines. */
function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

Deno.test("cli: exit statuses and messages of main()", async (t) => {
  await t.step("usage error: exit 2, one line", async () => {
    const c = capture();
    assert.equal(await main(["network", "create", "--bogus", "x"], {}, c.io), 2);
    assert.deepEqual(c.err, ["cnm: unknown option '--bogus'"]);
  });
  await t.step("no daemon: exit 1, one line", async () => {
    const c = capture();
    const sock = `/tmp/cnm-none-${crypto.randomUUID()}.sock`;
    assert.equal(await main(["network", "ls"], { CNM_SOCKET: sock }, c.io), 1);
    assert.deepEqual(c.err, [`cnm: no daemon at ${sock}`]);
  });
});

Deno.test("cli: against an API server on a fake kernel (no root)", async (t) => {
  const runner = new FakeRunner((c) =>
    c.argv.includes("show") && c.argv.includes("link") ? { code: 1 } : undefined
  );
  const kernel = new Kernel({ runner, fs: new MemoryFs() });
  const controller = new Controller({
    kernel,
    store: openStore(":memory:"),
    ipam: createDefaultIpam(),
    drivers: createDefaultDrivers({ kernel, hostNetns: "h", prefix: "t" }),
    hostNetns: "h",
    prefix: "t",
  });
  const dir = await Deno.makeTempDir({ prefix: "cnm-cli-" });
  const socket = `${dir}/cnm.sock`;
  const server = Deno.serve(
    { path: socket, onListen() {} },
    createApiHandler(controller, { version: "0", hostNetns: "h", prefix: "t", pid: 1 }),
  );
  const run = async (...argv: string[]) => {
    const c = capture();
    const code = await main(["--socket", socket, ...argv], {}, c.io);
    return { code, out: c.out.join("\n"), err: c.err };
  };
  try {
    await t.step("network create prints the full id", async () => {
      const r = await run("network", "create", "--subnet", "10.201.0.0/24", "web");
      assert.equal(r.code, 0, r.err.join());
      assert.match(r.out, /^[0-9a-f]{64}$/);
      assert.equal((await run("network", "create", "--subnet", "10.202.0.0/24", "db")).code, 0);
    });
    await t.step("a daemon error is one line naming the object, exit 1", async () => {
      const r = await run("network", "create", "web");
      assert.equal(r.code, 1);
      assert.deepEqual(r.err, [
        'cnm: Cannot create network "web": network with name web already exists',
      ]);
    });
    await t.step("sandbox create, connect (silent), disconnect", async () => {
      assert.match(
        (await run("sandbox", "create", "--hostname", "alpha", "a")).out,
        /^[0-9a-f]{64}$/,
      );
      const c = await run("connect", "--alias", "x", "web", "a");
      assert.deepEqual([c.code, c.out, c.err], [0, "", []]);
      assert.equal((await run("connect", "db", "a")).code, 0);
      assert.equal((await run("disconnect", "db", "a")).code, 0);
    });
    await t.step("network ls prints a table sorted by name", async () => {
      const r = await run("network", "ls");
      const lines = r.out.split("\n");
      assert.match(lines[0], /^NETWORK ID\s+NAME\s+DRIVER\s+SUBNET$/);
      assert.match(lines[1], /^[0-9a-f]{12}\s+db\s+bridge\s+10\.202\.0\.0\/24$/);
      assert.match(lines[2], /^[0-9a-f]{12}\s+web\s+bridge\s+10\.201\.0\.0\/24$/);
      const json = JSON.parse((await run("network", "ls", "--format", "json")).out);
      assert.deepEqual(json.map((n: { name: string }) => n.name).sort(), ["db", "web"]);
    });
    await t.step("sandbox ls prints SANDBOX ID, NAME, NETNS, NETWORKS", async () => {
      const lines = (await run("sandbox", "ls")).out.split("\n");
      assert.match(lines[0], /^SANDBOX ID\s+NAME\s+NETNS\s+NETWORKS$/);
      assert.match(lines[1], /^[0-9a-f]{12}\s+a\s+t-[0-9a-f]{8}-[0-9a-f]{12}\s+web$/);
    });
    await t.step("inspect prints JSON with or without --format json", async () => {
      const sb = JSON.parse((await run("sandbox", "inspect", "a", "--format", "json")).out);
      assert.equal(sb.netnsPath, `/run/netns/${sb.netnsName}`);
      assert.equal(sb.endpointDetails[0].networkName, "web");
      assert.equal(sb.endpointDetails[0].ipv4, "10.201.0.2/24");
      const net = JSON.parse((await run("network", "inspect", "web")).out);
      assert.equal(net.driver, "bridge");
      assert.equal(net.ipv4[0].subnet, "10.201.0.0/24");
      assert.equal(net.ipv4[0].gateway, "10.201.0.1");
      assert.deepEqual(net.options, {});
      assert.equal(net.endpoints[0].sandboxName, "a");
      assert.deepEqual(net.endpoints[0].aliases, ["x"]);
    });
    await t.step("rm prints each removed name and reports each failure", async () => {
      const r = await run("network", "rm", "db", "ghost", "web");
      assert.equal(r.code, 1);
      assert.equal(r.out, "db");
      assert.equal(r.err.length, 2);
      assert.match(r.err[0], /^cnm: Cannot remove network "ghost": network "ghost" not found$/);
      assert.match(r.err[1], /^cnm: Cannot remove network "web": network web id \S+ has active/);
      const s = await run("sandbox", "rm", "a");
      assert.deepEqual([s.code, s.out], [0, "a"]);
      assert.deepEqual([(await run("network", "rm", "web")).out], ["web"]);
    });
  } finally {
    await server.shutdown();
    await controller.close();
    await Deno.remove(dir, { recursive: true });
  }
});
