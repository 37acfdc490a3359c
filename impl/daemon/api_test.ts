import assert from "node:assert/strict";
import { fakeController } from "../../testing/fake_controller.ts";
import type { NetworkDriver } from "../driver_api/mod.ts";
import { UnsupportedError } from "../model/errors.ts";
import { createApiHandler, type DaemonInfo, errorResponse, statusOfKind } from "./api.ts";

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
function fakeApi(failing?: (argv: string[]) => boolean) {
  const { ctl: controller, runner } = fakeController({
    respond: (cmd) =>
      failing?.(cmd.argv)
        ? { code: 2, stderr: "RTNETLINK answers: Operation not permitted" }
        : undefined,
    extraDrivers: [unsupportedDriver()],
  });
  const info: DaemonInfo = { version: "9.9.9", hostNetns: "h", prefix: "t", pid: 4242 };
  const handler = createApiHandler(controller, info);
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
  return { controller, runner, call };
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
    drivers: ["bridge", "host", "macvlan", "nope", "null"],
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
    assert.match(r.json.netnsName, /^t-[0-9a-f]{12}$/);
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
