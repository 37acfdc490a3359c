import assert from "node:assert/strict";
import { fakeController } from "../../testing/fake_controller.ts";
import type { NetworkDriver } from "../driver_api/mod.ts";
import { UnsupportedError } from "../model/errors.ts";
import {
  type ApiOptions,
  createApiHandler,
  type DaemonInfo,
  errorResponse,
  MAX_BODY_BYTES,
  statusOfKind,
} from "./api.ts";

/** A driver whose every network creation is refused as unsupported (for the 501 mapping). */
function unsupportedDriver(): NetworkDriver {
  const fail = () => Promise.reject(new UnsupportedError(`driver "nope" is not available here`));
  return {
    type: "nope",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    createNetwork: fail,
    deleteNetwork: () => Promise.resolve(),
    createEndpoint: () => Promise.resolve({ driverData: {} }),
    deleteEndpoint: () => Promise.resolve(),
    join: () => Promise.resolve({}),
    leave: () => Promise.resolve(),
    programExternalConnectivity: () => Promise.resolve(),
    revokeExternalConnectivity: () => Promise.resolve(),
  };
}

/**
 * A controller on a fake kernel: every command succeeds with empty output, except
 * `ip link show dev BRIDGE`, which says "no such device" (so new bridges are not "taken");
 * `failing` makes matching commands fail as the kernel would.
 */
function fakeApi(failing?: (argv: string[]) => boolean, options?: ApiOptions) {
  const { ctl: controller, runner } = fakeController({
    respond: (cmd) =>
      failing?.(cmd.argv)
        ? { code: 2, stderr: "RTNETLINK answers: Operation not permitted" }
        : undefined,
    extraDrivers: [unsupportedDriver()],
  });
  const info: DaemonInfo = { version: "9.9.9", hostNetns: "h", prefix: "t", pid: 4242 };
  const handler = createApiHandler(controller, info, options);
  async function call(method: string, path: string, body?: unknown, raw?: string) {
    const res = await handler(
      new Request(`http://cnm${path}`, {
        method,
        body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
        headers: { "content-type": "application/json" },
      }),
    );
    const text = await res.text();
    // deno-lint-ignore no-explicit-any
    const json: any = text ? JSON.parse(text) : undefined;
    return { status: res.status, json, headers: res.headers };
  }
  return { controller, runner, call, handler };
}

Deno.test("api: GET /info reports the daemon's facts and drivers", async () => {
  const { call } = fakeApi();
  const r = await call("GET", "/info");
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, {
    version: "9.9.9",
    hostNetns: "h",
    prefix: "t",
    pid: 4242,
    drivers: ["bridge", "host", "macvlan", "nope", "null", "overlay"],
  });
});

Deno.test("api: happy paths", async (t) => {
  const { call } = fakeApi();
  let netId = "";
  await t.step("POST /networks creates a network (201)", async () => {
    const r = await call("POST", "/networks", {
      name: "web",
      subnet: "10.201.0.0/24",
      options: { "com.docker.network.bridge.name": "br-web" },
      labels: { team: "a" },
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.name, "web");
    assert.equal(r.json.driver, "bridge");
    assert.equal(r.json.ipv4[0].subnet, "10.201.0.0/24");
    assert.equal(r.json.ipv4[0].gateway, "10.201.0.1");
    assert.deepEqual(r.json.labels, { team: "a" });
    assert.match(r.json.id, /^[0-9a-f]{64}$/);
    netId = r.json.id;
  });
  await t.step("GET /networks lists it", async () => {
    const r = await call("GET", "/networks");
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.map((n: { name: string }) => n.name), ["web"]);
  });
  await t.step("POST /sandboxes creates a sandbox (201)", async () => {
    const r = await call("POST", "/sandboxes", { name: "a", hostname: "alpha" });
    assert.equal(r.status, 201);
    assert.equal(r.json.hostname, "alpha");
    assert.match(r.json.netnsName, /^t-[0-9a-f]{8}-[0-9a-f]{12}$/);
  });
  await t.step("POST /networks/{ref}/endpoints connects (201)", async () => {
    const r = await call("POST", "/networks/web/endpoints", {
      sandbox: "a",
      ipv4: "10.201.0.9",
      aliases: ["db"],
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.ipv4, "10.201.0.9/24");
    assert.equal(r.json.ifname, "eth0");
    assert.deepEqual(r.json.aliases, ["db"]);
  });
  await t.step("GET /networks/{name and id prefix} shows endpoints", async () => {
    for (const ref of ["web", netId, netId.slice(0, 12)]) {
      const r = await call("GET", `/networks/${ref}`);
      assert.equal(r.status, 200);
      assert.equal(r.json.id, netId);
      assert.equal(r.json.endpoints.length, 1);
      assert.equal(r.json.endpoints[0].sandboxName, "a");
    }
    const eps = await call("GET", "/networks/web/endpoints");
    assert.equal(eps.status, 200);
    assert.equal(eps.json[0].ipv4, "10.201.0.9/24");
  });
  await t.step("GET /sandboxes and /sandboxes/{ref} give views with endpoint details", async () => {
    const list = await call("GET", "/sandboxes");
    assert.equal(list.status, 200);
    assert.equal(list.json[0].endpointDetails[0].networkName, "web");
    const r = await call("GET", "/sandboxes/a");
    assert.equal(r.status, 200);
    const ep = r.json.endpointDetails[0];
    assert.equal(r.json.netnsPath, `/run/netns/${r.json.netnsName}`);
    assert.equal(ep.networkName, "web");
    assert.equal(ep.ifname, "eth0");
    assert.equal(ep.ipv4, "10.201.0.9/24");
    assert.equal(ep.gateway, "10.201.0.1");
    assert.match(ep.mac, /^02:42:/);
  });
  await t.step("DELETE /networks/{ref}/endpoints/{sb} disconnects (204)", async () => {
    const r = await call("DELETE", "/networks/web/endpoints/a");
    assert.equal(r.status, 204);
    assert.equal(r.json, undefined);
    assert.equal((await call("GET", "/sandboxes/a")).json.endpointDetails.length, 0);
  });
  await t.step("DELETE /sandboxes/{ref} and /networks/{ref} (204)", async () => {
    assert.equal((await call("DELETE", "/sandboxes/a")).status, 204);
    assert.equal((await call("DELETE", `/networks/${netId.slice(0, 12)}`)).status, 204);
    assert.deepEqual((await call("GET", "/networks")).json, []);
    assert.deepEqual((await call("GET", "/sandboxes")).json, []);
  });
  await t.step("trailing slash and percent-encoded refs are accepted", async () => {
    assert.equal((await call("POST", "/networks/", { name: "n.1" })).status, 201);
    assert.equal((await call("GET", "/networks/n%2E1")).status, 200);
  });
});

Deno.test("api: error kinds map to statuses with { message, kind }", async (t) => {
  const { call } = fakeApi((argv) => argv.includes("netns") && argv.includes("add"));
  await t.step("invalid -> 400", async () => {
    const r = await call("POST", "/networks", { name: "x", subnet: "10.0.0.0/33" });
    assert.equal(r.status, 400);
    assert.equal(r.json.kind, "invalid");
    assert.match(r.json.message, /^Cannot create network "x": /);
  });
  await t.step("not-found -> 404", async () => {
    const r = await call("GET", "/networks/ghost");
    assert.deepEqual(r.json, { message: 'network "ghost" not found', kind: "not-found" });
    assert.equal(r.status, 404);
    assert.equal((await call("DELETE", "/sandboxes/ghost")).status, 404);
  });
  await t.step("conflict -> 409", async () => {
    assert.equal(
      (await call("POST", "/networks", { name: "n", subnet: "10.1.0.0/24" })).status,
      201,
    );
    const r = await call("POST", "/networks", { name: "n" });
    assert.equal(r.status, 409);
    assert.equal(r.json.kind, "conflict");
    assert.match(r.json.message, /network with name n already exists/);
  });
  await t.step("forbidden -> 403", async () => {
    const r = await call("POST", "/networks", { name: "m", subnet: "10.1.0.0/16" });
    assert.equal(r.status, 403);
    assert.equal(r.json.kind, "forbidden");
    assert.match(r.json.message, /overlaps network "n"/);
  });
  await t.step("unsupported -> 501", async () => {
    const r = await call("POST", "/networks", { name: "u", driver: "nope" });
    assert.equal(r.status, 501);
    assert.equal(r.json.kind, "unsupported");
    assert.match(r.json.message, /^Cannot create network "u": driver "nope"/);
  });
  await t.step("kernel -> 500", async () => {
    const r = await call("POST", "/sandboxes", { name: "k" });
    assert.equal(r.status, 500);
    assert.equal(r.json.kind, "kernel");
    assert.match(r.json.message, /^Cannot create sandbox "k": Command "ip netns add/);
    assert.doesNotMatch(r.json.message, /\n/);
  });
  await t.step("internal -> 500 (closed controller)", async () => {
    const { controller, call: call2 } = fakeApi();
    await controller.close();
    const r = await call2("POST", "/sandboxes", { name: "late" });
    assert.equal(r.status, 500);
    assert.equal(r.json.kind, "internal");
    assert.match(r.json.message, /controller is closed/);
  });
  await t.step("statusOfKind and unknown throwables", async () => {
    assert.deepEqual(
      ["invalid", "forbidden", "not-found", "conflict", "unsupported", "kernel", "internal", "x"]
        .map(statusOfKind),
      [400, 403, 404, 409, 501, 500, 500, 500],
    );
    const res = errorResponse(new TypeError("boom\nsecond line"));
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), {
      message: "Internal error: boom second line",
      kind: "internal",
    });
  });
});

Deno.test("api: strict body validation", async (t) => {
  const { call, runner } = fakeApi();
  await t.step("an unknown field is a 400 naming it", async () => {
    const r = await call("POST", "/networks", { name: "web", subnett: "10.1.0.0/24" });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, {
      message: 'Cannot create network "web": unknown field "subnett" in the request body',
      kind: "invalid",
    });
  });
  await t.step("an unknown nested or connect field is named too", async () => {
    const r = await call("POST", "/networks/web/endpoints", { sandbox: "a", ip: "10.0.0.1" });
    assert.equal(r.status, 400);
    assert.equal(
      r.json.message,
      'Cannot connect sandbox "a" to network "web": unknown field "ip" in the request body',
    );
    const s = await call("POST", "/sandboxes", { name: "a", hostName: "x" });
    assert.match(s.json.message, /^Cannot create sandbox "a": unknown field "hostName"/);
  });
  await t.step("a wrong type is a 400 naming the field and types", async () => {
    const r = await call("POST", "/networks", { name: "web", internal: "yes" });
    assert.equal(r.status, 400);
    assert.equal(
      r.json.message,
      'Cannot create network "web": field "internal" must be a boolean, not a string',
    );
    const o = await call("POST", "/networks", { name: "web", options: { mtu: 1400 } });
    assert.equal(
      o.json.message,
      'Cannot create network "web": field "options.mtu" must be a string, not a number',
    );
    const a = await call("POST", "/networks/web/endpoints", { sandbox: "a", aliases: ["x", 1] });
    assert.equal(
      a.json.message,
      'Cannot connect sandbox "a" to network "web": field "aliases[1]" must be a string, not a number',
    );
  });
  await t.step("a missing required field is a 400 naming it", async () => {
    const r = await call("POST", "/networks", { subnet: "10.1.0.0/24" });
    assert.equal(r.status, 400);
    assert.equal(r.json.message, 'Cannot create network: field "name" is required');
    const n = await call("POST", "/sandboxes", { name: 7 });
    assert.equal(
      n.json.message,
      'Cannot create sandbox: field "name" must be a string, not a number',
    );
  });
  await t.step("a body that is not an object is a 400", async () => {
    const r = await call("POST", "/sandboxes", ["a"]);
    assert.equal(r.status, 400);
    assert.equal(
      r.json.message,
      "Cannot create sandbox: the request body must be a JSON object, not an array",
    );
  });
  await t.step("bad JSON is a 400 'Invalid JSON body: ...'", async () => {
    const r = await call("POST", "/networks", undefined, "{name: web");
    assert.equal(r.status, 400);
    assert.equal(r.json.kind, "invalid");
    assert.match(r.json.message, /^Invalid JSON body: \S/);
    const empty = await call("POST", "/sandboxes", undefined, "");
    assert.equal(empty.json.message, "Invalid JSON body: the body is empty");
  });
  await t.step("nothing reached the kernel", () => {
    assert.deepEqual(runner.calls, []);
  });
});

Deno.test("api: routes", async (t) => {
  const { call } = fakeApi();
  await t.step("unknown routes are 404", async () => {
    for (const path of ["/", "/nope", "/networks/a/b", "/networks/a/endpoints/b/c", "//networks"]) {
      const r = await call("GET", path);
      assert.equal(r.status, 404, path);
      assert.equal(r.json.kind, "not-found");
      assert.match(r.json.message, /^No such API route: GET \//);
    }
  });
  await t.step("a wrong method is 405 with Allow", async () => {
    const r = await call("PUT", "/networks");
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET, POST");
    assert.equal(r.json.message, "Method PUT is not allowed on /networks (allowed: GET, POST)");
    assert.equal((await call("POST", "/info", {})).status, 405);
    assert.equal((await call("GET", "/networks/a/endpoints/b")).status, 405);
    assert.equal((await call("PATCH", "/sandboxes/a")).status, 405);
  });
  await t.step("bad percent-encoding is 400", async () => {
    const r = await call("GET", "/networks/%E0%A4%A");
    assert.equal(r.status, 400);
  });
});

Deno.test("api: concurrent connects get distinct addresses", async () => {
  const { call } = fakeApi();
  assert.equal((await call("POST", "/networks", { name: "n", subnet: "10.9.0.0/24" })).status, 201);
  const names = Array.from({ length: 10 }, (_, i) => `s${i}`);
  await Promise.all(names.map((name) => call("POST", "/sandboxes", { name })));
  const results = await Promise.all(
    names.map((sandbox) => call("POST", "/networks/n/endpoints", { sandbox })),
  );
  assert.deepEqual(results.map((r) => r.status), names.map(() => 201));
  assert.equal(new Set(results.map((r) => r.json.ipv4)).size, names.length);
});

/** A JSON body padded with trailing spaces (still valid JSON) to exactly `size` bytes. */
function padded(body: unknown, size: number): string {
  const text = JSON.stringify(body);
  return text + " ".repeat(size - new TextEncoder().encode(text).length);
}

/**
 * A lazy body of `total` bytes in 64 KiB chunks of spaces; `pulled()` says how many bytes
 * the reader took, so a test sees the body was not read whole.
 */
function lazyBody(total: number) {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (sent >= total) return ctl.close();
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      ctl.enqueue(chunk.subarray(0, n));
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => sent };
}

Deno.test("api: request bodies over the limit are 413, read no further", async (t) => {
  const { call, runner, handler } = fakeApi();
  const post = (path: string, body: BodyInit, headers: Record<string, string> = {}) =>
    handler(
      new Request(`http://cnm${path}`, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...headers },
      }),
    );
  await t.step("a body of exactly 1 MiB is read", async () => {
    const r = await call("POST", "/sandboxes", undefined, padded({ name: "big" }, MAX_BODY_BYTES));
    assert.equal(r.status, 201, JSON.stringify(r.json));
  });
  const before = runner.calls.length;
  await t.step("one byte more is a 413 in the API's error shape", async () => {
    const r = await call(
      "POST",
      "/sandboxes",
      undefined,
      padded({ name: "bigger" }, MAX_BODY_BYTES + 1),
    );
    assert.equal(r.status, 413);
    assert.deepEqual(r.json, {
      message:
        "Cannot create sandbox: the request body is more than 1048576 bytes, the limit is 1048576",
      kind: "invalid",
    });
  });
  await t.step("a 60 MB body is refused after the limit, not buffered whole", async () => {
    const body = lazyBody(60 * 1024 * 1024);
    const res = await post("/networks", body.stream);
    assert.equal(res.status, 413);
    assert.match((await res.json()).message, /^Cannot create network: the request body is more/);
    assert.ok(body.pulled() <= MAX_BODY_BYTES + 64 * 1024, `read ${body.pulled()} bytes`);
  });
  await t.step("a too-large Content-Length is refused at once, the body unread", async () => {
    const req = new Request("http://cnm/networks", {
      method: "POST",
      body: JSON.stringify({ name: "x" }),
      headers: { "content-length": "62914560" },
    });
    const res = await handler(req);
    assert.equal(res.status, 413);
    assert.deepEqual(await res.json(), {
      message: "Cannot create network: the request body is 62914560 bytes, the limit is 1048576",
      kind: "invalid",
    });
    assert.equal(req.bodyUsed, false);
    const huge = await post("/sandboxes", "{}", { "content-length": "9".repeat(30) });
    assert.equal(huge.status, 413);
  });
  await t.step("a Content-Length that lies low does not lift the limit", async () => {
    const res = await post(
      "/sandboxes",
      padded({ name: "liar" }, MAX_BODY_BYTES + 10),
      { "content-length": "10" },
    );
    assert.equal(res.status, 413);
  });
  await t.step("every route that reads a body has the limit", async () => {
    for (
      const path of [
        "/networks",
        "/networks/n/endpoints",
        "/sandboxes",
        "/services",
        "/services/s/backends",
      ]
    ) {
      const res = await post(path, lazyBody(2 * MAX_BODY_BYTES).stream);
      assert.equal(res.status, 413, path);
      assert.match((await res.json()).message, /^Cannot .*: the request body is more than/);
    }
  });
  await t.step("nothing of a refused body reached the kernel", () => {
    assert.equal(runner.calls.length, before);
  });
  await t.step("createApiHandler's maxBodyBytes sets another limit", async () => {
    const small = fakeApi(undefined, { maxBodyBytes: 100 });
    assert.equal(
      (await small.call("POST", "/sandboxes", undefined, padded({ name: "a" }, 100)))
        .status,
      201,
    );
    const r = await small.call("POST", "/sandboxes", undefined, padded({ name: "b" }, 101));
    assert.equal(r.status, 413);
    assert.match(r.json.message, /, the limit is 100$/);
  });
});

Deno.test("api: limits of labels, options and names", async (t) => {
  const { call, runner } = fakeApi();
  const entries = (n: number) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
  const refused = async (path: string, body: unknown, message: string) => {
    const calls = runner.calls.length;
    const r = await call("POST", path, body);
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.deepEqual(r.json, { message, kind: "invalid" });
    assert.equal(runner.calls.length, calls, "nothing reached the kernel");
  };
  await t.step("64 labels are accepted, 65 are not", async () => {
    const ok = await call("POST", "/networks", { name: "l64", labels: entries(64) });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    assert.equal(Object.keys(ok.json.labels).length, 64);
    await refused(
      "/networks",
      { name: "l65", labels: entries(65) },
      'Cannot create network "l65": 65 labels, the limit is 64',
    );
  });
  await t.step("a label key of 128 bytes is accepted, 129 bytes (UTF-8) is not", async () => {
    const ok = await call("POST", "/networks", {
      name: "k128",
      labels: { ["k".repeat(128)]: "v" },
    });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    // 65 characters, 129 bytes: the limit counts bytes
    await refused(
      "/networks",
      { name: "k129", labels: { ["é".repeat(64) + "k"]: "v" } },
      `Cannot create network "k129": label key "${
        "é".repeat(20)
      }..." is 129 bytes, the limit is 128`,
    );
  });
  await t.step("a label value of 4 KiB is accepted, one byte more is not", async () => {
    const ok = await call("POST", "/networks", { name: "v4k", labels: { a: "v".repeat(4096) } });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    await refused(
      "/networks",
      { name: "v4k1", labels: { a: "€".repeat(1365) + "vv" } },
      'Cannot create network "v4k1": the value of label "a" is 4097 bytes, the limit is 4096',
    );
  });
  await t.step("options have the same limits", async () => {
    // at the limits the options pass the API and reach the driver, which names the first
    const atLimit = await call("POST", "/networks", {
      name: "o64",
      options: { ...entries(63), ["o".repeat(128)]: "v".repeat(4096) },
    });
    assert.equal(atLimit.status, 400);
    assert.match(atLimit.json.message, /^Cannot create network "o64": unknown option "k0"/);
    await refused(
      "/networks",
      { name: "o65", options: entries(65) },
      'Cannot create network "o65": 65 options, the limit is 64',
    );
    await refused(
      "/networks",
      { name: "o129", options: { ["o".repeat(129)]: "v" } },
      'Cannot create network "o129": option key "oooooooooooooooooooo..." is 129 bytes, the limit is 128',
    );
    await refused(
      "/networks",
      { name: "o4k", options: { "com.docker.network.bridge.name": "v".repeat(4097) } },
      'Cannot create network "o4k": the value of option "com.docker.network.bridge.name" is 4097 bytes, the limit is 4096',
    );
  });
  const n64 = "n".repeat(64);
  const n65 = "n".repeat(65);
  const long = `"${"n".repeat(20)}..."`;
  await t.step("names of 64 characters are accepted, 65 are not", async () => {
    assert.equal((await call("POST", "/networks", { name: n64 })).status, 201);
    await refused(
      "/networks",
      { name: n65 },
      `Cannot create network ${long}: Invalid network name ${long}: longer than 64 characters (65)`,
    );
    assert.equal((await call("POST", "/sandboxes", { name: n64 })).status, 201);
    await refused(
      "/sandboxes",
      { name: n65 },
      `Cannot create sandbox ${long}: Invalid sandbox name ${long}: longer than 64 characters (65)`,
    );
    assert.equal(
      (await call("POST", "/services", { name: "s".repeat(64), network: n64 })).status,
      201,
    );
    await refused(
      "/services",
      { name: n65, network: n64 },
      `Cannot create service ${long}: Invalid service name ${long}: longer than 64 characters (65)`,
    );
    await refused(
      `/networks/${n64}/endpoints`,
      { sandbox: n64, aliases: ["a", n65] },
      `Cannot connect sandbox "${n64}" to network "${n64}": Invalid alias name ${long}: longer than 64 characters (65)`,
    );
    const ok = await call("POST", `/networks/${n64}/endpoints`, {
      sandbox: n64,
      aliases: ["a" + n64.slice(1)],
    });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
  });
  await t.step("a refusal quotes a huge name only in part", async () => {
    const r = await call("POST", "/networks", { name: "x".repeat(500_000) });
    assert.equal(r.status, 400);
    assert.ok(r.json.message.length < 200, r.json.message);
    assert.match(r.json.message, /longer than 64 characters \(500000\)$/);
  });
});

Deno.test("api: a refusal is one line whatever the name holds (found by api_fuzz_test.ts)", async () => {
  const { call } = fakeApi();
  const r = await call("POST", "/networks", { name: "a\nb", labels: { a: "v".repeat(4097) } });
  assert.equal(r.status, 400);
  assert.equal(
    r.json.message,
    'Cannot create network "a\\nb": the value of label "a" is 4097 bytes, the limit is 4096',
  );
  const s = await call("POST", "/sandboxes", { name: 'x"\ty', hostName: "h" });
  assert.equal(
    s.json.message,
    'Cannot create sandbox "x\\"\\ty": unknown field "hostName" in the request body',
  );
});
