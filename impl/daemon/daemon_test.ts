import assert from "node:assert/strict";
import { probeSocket } from "./daemon.ts";
import { DEFAULT_SOCKET, DEFAULT_STATE_DIR, parseDaemonArgs, UsageError } from "./flags.ts";

Deno.test("daemon flags: defaults are dockerd's", () => {
  assert.deepEqual(parseDaemonArgs([]), {
    config: {
      netns: undefined,
      prefix: "cnm",
      stateDir: DEFAULT_STATE_DIR,
      socket: DEFAULT_SOCKET,
      dns: [],
      defaultPools: [],
      debug: false,
    },
  });
  assert.equal(DEFAULT_STATE_DIR, "/var/lib/cnm");
  assert.equal(DEFAULT_SOCKET, "/run/cnm/cnm.sock");
});

Deno.test("daemon flags: every flag, repeated ones collected", () => {
  const r = parseDaemonArgs([
    "--netns",
    "cnmt-abc-host",
    "--prefix",
    "cnmt-abc",
    "--state-dir",
    "/tmp/s",
    "--socket",
    "/tmp/s/cnm.sock",
    "--dns",
    "192.0.2.53",
    "--dns=2001:db8::53",
    "--default-pool",
    "10.10.0.0/16/24",
    "--default-pool",
    "base=10.20.0.0/16,size=20",
    "--debug",
  ]);
  assert.deepEqual(r, {
    config: {
      netns: "cnmt-abc-host",
      prefix: "cnmt-abc",
      stateDir: "/tmp/s",
      socket: "/tmp/s/cnm.sock",
      dns: ["192.0.2.53", "2001:db8::53"],
      defaultPools: [{ base: "10.10.0.0/16", size: 24 }, { base: "10.20.0.0/16", size: 20 }],
      debug: true,
    },
  });
});

Deno.test("daemon flags: socket precedence is --socket, then the fallback, then the default", () => {
  const cfg = (args: string[], socket?: string) => {
    const r = parseDaemonArgs(args, { socket });
    assert.ok("config" in r);
    return r.config.socket;
  };
  assert.equal(cfg(["--socket", "/a.sock"], "/b.sock"), "/a.sock");
  assert.equal(cfg([], "/b.sock"), "/b.sock");
  assert.equal(cfg([], ""), DEFAULT_SOCKET);
});

Deno.test("daemon flags: bad values are one-line usage errors", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--dns", "8.8.8"], /^Invalid DNS server "8\.8\.8": not an IP address$/],
    [["--default-pool", "10.0.0.0/8"], /^Invalid default pool "10\.0\.0\.0\/8"/],
    [["--default-pool", "10.0.0.0/16/8"], /^Invalid default pool/],
    [["--prefix", "-x"], /^Invalid prefix "-x"/],
    [["--prefix", "a/b"], /^Invalid prefix/],
    [["--netns", "a/b"], /^Invalid host namespace name "a\/b"/],
    [["--bogus"], /^unknown option '--bogus'$/],
    [["--netns"], /^option '--netns <name>' argument missing$/],
    [["extra"], /^too many arguments/],
    [
      ["--store", "http://x:2379", "--advertise-address", "203.0.113.1"],
      /^store http:\/\/x:2379: expected etcd:\/\/HOST:PORT/,
    ],
    [
      ["--store", "etcd://x", "--advertise-address", "203.0.113.1"],
      /^store etcd:\/\/x: "x" is not HOST:PORT$/,
    ],
    [["--store", "etcd://x:99999", "--advertise-address", "203.0.113.1"], /is not HOST:PORT$/],
    [["--store", "etcd://x:2379"], /^--store needs --advertise-address/],
    [["--advertise-address", "203.0.113.1"], /^--advertise-address and --store-ttl need --store$/],
    [
      ["--store", "etcd://x:2379", "--advertise-address", "2001:db8::1"],
      /must be an IPv4 address$/,
    ],
    [
      ["--store", "etcd://x:2379", "--advertise-address", "203.0.113"],
      /^Invalid advertise address/,
    ],
    [
      ["--store", "etcd://x:2379", "--advertise-address", "203.0.113.1", "--store-ttl", "1"],
      /^Invalid --store-ttl "1": 2 to 3600 seconds$/,
    ],
  ];
  for (const [args, re] of cases) {
    await t.step(args.join(" "), () => {
      assert.throws(() => parseDaemonArgs(args), (err: unknown) => {
        assert.ok(err instanceof UsageError, String(err));
        assert.match(err.message, re);
        assert.doesNotMatch(err.message, /\n/);
        return true;
      });
    });
  }
});

Deno.test("daemon flags: --store with its advertise address and TTL", () => {
  const r = parseDaemonArgs([
    "--store",
    "etcd://203.0.113.254:2379,[2001:db8::1]:2379",
    "--advertise-address",
    "203.0.113.1",
  ]);
  if (r.help !== undefined) throw new Error("no config");
  assert.deepEqual(r.config.globalStore, {
    address: {
      endpoints: ["203.0.113.254:2379", "[2001:db8::1]:2379"],
      url: "etcd://203.0.113.254:2379,[2001:db8::1]:2379",
    },
    advertise: "203.0.113.1",
    ttl: 5,
  });
  const t = parseDaemonArgs([
    "--store=etcd://s:1",
    "--advertise-address=203.0.113.2",
    "--store-ttl=30",
  ]);
  assert.equal(t.help === undefined && t.config.globalStore?.ttl, 30);
  const none = parseDaemonArgs([]);
  assert.equal(none.help === undefined && none.config.globalStore, undefined);
});

Deno.test("daemon flags: --help gives the help text", () => {
  const r = parseDaemonArgs(["--help"]);
  assert.ok(r.help);
  assert.match(r.help, /--netns <name>/);
  assert.match(r.help, /--default-pool <cidr\/size>/);
});

Deno.test("probeSocket tells absent, stale, alive and non-socket paths apart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cnm-probe-" });
  try {
    const path = `${dir}/s.sock`;
    assert.equal(await probeSocket(path), "absent");
    await Deno.writeTextFile(`${dir}/file`, "x");
    assert.equal(await probeSocket(`${dir}/file`), "not-a-socket");
    const server = Deno.serve({ path, onListen() {} }, () => new Response("{}"));
    assert.equal(await probeSocket(path), "alive");
    await server.shutdown();
    // A socket file nobody listens on any more, as a killed daemon leaves it.
    const code = `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); Deno.exit(0);`;
    const out = await new Deno.Command(Deno.execPath(), { args: ["eval", "--unstable-net", code] })
      .output();
    assert.equal(out.code, 0);
    assert.ok((await Deno.lstat(path)).isSocket);
    assert.equal(await probeSocket(path), "stale");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
