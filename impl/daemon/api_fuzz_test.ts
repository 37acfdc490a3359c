/**
 * Property-based fuzzing of the daemon's API handler (fast-check, a fixed seed): garbage
 * methods, paths, headers and bodies against the real handler over a controller on a fake
 * kernel and an in-memory store (no root). The property: the handler never throws, never
 * answers 5xx (a 501 only for the options the README lists as "not supported by cnm yet"),
 * and every 4xx is a JSON `{ message, kind }` with a one-line message.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { fakeController } from "../../testing/fake_controller.ts";
import { createApiHandler, MAX_BODY_BYTES } from "./api.ts";

/** Seed and runs: reproducible, and a few seconds at most. */
const SEED = 0x14c0ffee;
const NUM_RUNS = 300;

/** One generated request. */
interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
}

const WORDS = ["info", "networks", "sandboxes", "services", "endpoints", "backends"];
/** Objects every run starts with, so refs can hit something. */
const KNOWN = ["web", "a", "b", "svc", "none", "host"];

/** Path segments: route words, known objects, and garbage. */
const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 3, arbitrary: fc.constantFrom(...KNOWN) },
  fc.constantFrom("", ".", "..", "%2e%2e", "%2F", "%", "%zz", "%E0%A4%A", "%00", "%C0%AF", "%FF"),
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
  fc.string({ unit: "binary", maxLength: 12 }).map(encodeURIComponent),
  fc.integer({ min: 65, max: 20_000 }).map((n) => "x".repeat(n)),
  fc.stringMatching(/^[0-9a-f]{1,64}$/),
);

const path: fc.Arbitrary<string> = fc.tuple(
  fc.array(segment, { minLength: 0, maxLength: 5 }),
  fc.constantFrom("", "/", "//", "?x=1", "?%zz", "#frag"),
).map(([segs, tail]) => "/" + segs.join("/") + tail);

const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("GET", "POST", "DELETE") },
  fc.constantFrom("PUT", "PATCH", "HEAD", "OPTIONS", "post", "Get"),
  fc.stringMatching(/^[A-Z]{1,12}$/).filter((m) => !["CONNECT", "TRACE", "TRACK"].includes(m)),
);

const headerValue = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
const headers: fc.Arbitrary<Record<string, string>> = fc.record({
  "content-type": fc.constantFrom(
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
  ),
  "content-length": fc.oneof(
    fc.constantFrom("0", "1", "5", "-1", "abc", " 12 ", "1e3", "0x10", "99999999999999999999"),
    fc.constant(String(MAX_BODY_BYTES)),
    fc.constant(String(MAX_BODY_BYTES + 1)),
    fc.nat().map(String),
    headerValue,
  ),
  "x-garbage": headerValue,
}, { requiredKeys: [] });

/** Keys the bodies know, and the ones that try prototype pollution. */
const FIELDS = [
  "name",
  "driver",
  "subnet",
  "gateway",
  "ipRange",
  "ipv6",
  "ipv6Subnet",
  "ipv6Gateway",
  "internal",
  "options",
  "labels",
  "hostname",
  "sandbox",
  "ipv4",
  "aliases",
  "publish",
  "network",
  "mode",
  "ports",
  "affinity",
];
const POLLUTION = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"];

/** Strings a field may get: names, addresses and near-misses, unicode, long ones. */
const text: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...KNOWN, "bridge", "null", "macvlan", "nope", "vip", "dnsrr", "client-ip"),
  fc.constantFrom("tcp", "udp", "sctp", "", " ", "\u0000", "é", "😀", "a\nb", "-x", "x".repeat(64)),
  fc.constantFrom("10.77.0.0/24", "10.77.0.9", "10.0.0.0/33", "10.1.0.0/8", "0.0.0.0/0"),
  fc.constantFrom("fd00::/64", "fd00::1", "::/0", "::ffff:10.0.0.1", "1:2:3:4:5:6:7:8:9"),
  fc.constantFrom("10.1.0.0/99999999999999999999", "999.1.1.1", "10.1.0.256/24", "/24", "10.1/"),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.integer({ min: 65, max: 5000 }).map((n) => "é".repeat(n)),
);

/** Numbers a field may get: ports, near-misses, huge and odd ones. */
const number: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -2, max: 70_000 }),
  fc.constantFrom(0, -0, 1, 53, 80, 65535, 65536, 1.5, 2 ** 53 + 2, 1e308, -1e308, 5e-324),
  fc.double(),
);

/** A JSON value of the right rough shape for any known field, or of a wrong one. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: text },
  number,
  fc.boolean(),
  fc.constant(null),
  fc.array(text, { maxLength: 4 }),
  fc.dictionary(fc.oneof(text, fc.constantFrom(...POLLUTION)), text, { maxKeys: 6 }),
  fc.array(
    fc.record({
      hostIp: text,
      hostPort: number,
      containerPort: number,
      protocol: text,
      port: number,
    }, { requiredKeys: [] }),
    { maxLength: 3 },
  ),
  fc.jsonValue({ maxDepth: 3 }),
);

/** JSON text of an object, written by hand so `__proto__` stays an own key of the text. */
function objectText(entries: [string, unknown][]): string {
  return "{" + entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",") +
    "}";
}

const body: fc.Arbitrary<string | Uint8Array<ArrayBuffer> | undefined> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.array(
      fc.tuple(
        fc.oneof(
          { weight: 5, arbitrary: fc.constantFrom(...FIELDS) },
          fc.constantFrom(...POLLUTION),
        ),
        fieldValue,
      ),
      { maxLength: 6 },
    ).map(objectText),
  },
  fc.constant(undefined),
  fc.jsonValue().map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ unit: "binary", maxLength: 50 }),
  fc.uint8Array({ maxLength: 64 }).map((a) => Uint8Array.from(a)),
  fc.constantFrom("", "{", "}", "[", "nul", "1e400", "-", '{"name":"x"', '{"name":"x"}garbage'),
  fc.constantFrom('{"__proto__":{"polluted":1},"name":"p"}', '{"constructor":{"prototype":{}}}'),
  fc.constantFrom(
    '{"name":"p","labels":{"__proto__":"x"}}',
    '{"name":"p","options":{"__proto__":{}}}',
  ),
  fc.integer({ min: 1, max: 100_000 }).map((n) => `{"name":${"[".repeat(n)}${"]".repeat(n)}}`),
  fc.integer({ min: 1, max: 5_000 }).map((n) =>
    `{"name":"d","labels":${'{"a":'.repeat(n)}"x"${"}".repeat(n)}}`
  ),
  fc.constantFrom(
    `{"name":"${"n".repeat(MAX_BODY_BYTES)}"}`,
    `{"name":"big"}${" ".repeat(MAX_BODY_BYTES)}`,
    `{"name":"h","hostname":"${"h".repeat(300)}"}`,
    `{"sandbox":"a","publish":[{"containerPort":1e400}]}`,
    `{"name":"s","network":"web","ports":[{"port":1e400}]}`,
  ),
);

/** A garbage request: any method, path, headers and body. */
const garbage: fc.Arbitrary<FuzzRequest> = fc.record({ method, path, headers, body });

/** Mostly a valid value, sometimes garbage: requests get past validation often enough. */
const maybe = <T>(valid: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 5, arbitrary: valid }, bad);

/** Valid names, and near-misses and garbage. */
const validName = fc.stringMatching(/^[a-z][a-z0-9_.-]{0,10}$/);
const name: fc.Arbitrary<unknown> = maybe(
  validName,
  fc.oneof(fc.constantFrom(...KNOWN, "x".repeat(64), "x".repeat(65), "-a", "a b", ".."), text),
);
/** References to objects of one kind: the known ones, others, id prefixes, garbage. */
const refTo = (...known: string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...known) },
    fc.constantFrom(...KNOWN),
    fc.stringMatching(/^[0-9a-f]{1,64}$/),
    validName,
    text,
  );
const networkRef = refTo("web", "web", "none", "host");
const sandboxRef = refTo("a", "b", "b");
const serviceRef = refTo("svc");
const byte = fc.integer({ min: 0, max: 255 });
const octet = fc.integer({ min: 0, max: 300 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const cidr = (ip: fc.Arbitrary<string>, max: number) =>
  fc.tuple(ip, fc.integer({ min: -1, max })).map(([a, n]) => `${a}/${n}`);
const ipv6 = fc.oneof(
  fc.ipV6(),
  fc.tuple(fc.stringMatching(/^[0-9a-f]{1,4}$/), fc.nat(0xffff)).map(([a, b]) =>
    `fd00:${a}::${b.toString(16)}`
  ),
);
const badAddress = fc.oneof(ipv4, fc.ipV4(), ipv6, text, number);
const badSubnet = fc.oneof(cidr(fc.oneof(ipv4, fc.ipV4()), 40), cidr(ipv6, 140), text);
const subnet4 = fc.tuple(byte, byte, fc.constantFrom(16, 24, 28)).map(([a, b, n]) =>
  n === 16 ? `10.${a}.0.0/16` : `10.${a}.${b}.0/${n}`
);
const subnet6 = fc.stringMatching(/^[0-9a-f]{1,4}$/).map((a) => `fd00:${a}::/64`);
/** Option keys: the bridge's and macvlan's, the ones not supported yet, and garbage. */
const optionKey = fc.oneof(
  fc.constantFrom(
    "com.docker.network.bridge.name",
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.bridge.enable_ip_masquerade",
    "com.docker.network.driver.mtu",
    "com.docker.network.container_iface_prefix",
    "com.docker.network.bridge.host_binding_ipv4",
    "com.docker.network.bridge.gateway_mode_ipv4",
    "com.docker.network.bridge.inhibit_ipv4",
    "parent",
    "macvlan_mode",
  ),
  fc.constantFrom(...POLLUTION),
  text,
);
const optionValue = fc.oneof(
  fc.constantFrom("true", "false", "maybe", "1500", "68", "70000", "nat", "routed", "eth", "br-x"),
  fc.constantFrom("bridge", "private", "vepa", "passthru", "0.0.0.0", "127.0.0.1", "lan0"),
  text,
);
const options = maybe(fc.constant({}), fc.dictionary(optionKey, optionValue, { maxKeys: 4 }));
const labels = fc.dictionary(fc.oneof(validName, text), text, { maxKeys: 4 });
const goodPort = fc.integer({ min: 1, max: 65535 });
const port = maybe(goodPort, fc.oneof(fc.integer({ min: -1, max: 65536 }), number, text));
const protocol = maybe(fc.constantFrom("tcp", "udp"), text);
const array = <T>(item: fc.Arbitrary<T>) => maybe(fc.array(item, { maxLength: 3 }), fieldValue);

/** The body of a route: its own fields, mostly valid. */
const BODIES: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
  networks: fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        name: validName,
        driver: fc.constantFrom("bridge", "bridge", "null", "host", "macvlan"),
        subnet: subnet4,
        labels,
        options: fc.constant({}),
        internal: fc.boolean(),
      }, { requiredKeys: ["name"] }),
    },
    fc.record({
      name,
      driver: maybe(fc.constantFrom("bridge", "null", "host", "macvlan"), text),
      subnet: maybe(subnet4, badSubnet),
      gateway: badAddress,
      ipRange: maybe(subnet4, badSubnet),
      ipv6: fc.boolean(),
      ipv6Subnet: maybe(subnet6, badSubnet),
      ipv6Gateway: badAddress,
      internal: maybe(fc.boolean(), fieldValue),
      options,
      labels: maybe(labels, fieldValue),
    }, { requiredKeys: ["name"] }),
  ),
  sandboxes: fc.record({ name, hostname: maybe(validName, text) }, { requiredKeys: ["name"] }),
  endpoints: fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        sandbox: sandboxRef,
        ipv4: byte.map((b) => `10.77.0.${b}`),
        aliases: fc.array(validName, { maxLength: 3 }),
        publish: fc.array(
          fc.record({
            hostPort: fc.constantFrom(0, 8080, 8081),
            containerPort: goodPort,
            protocol: fc.constantFrom("tcp", "udp"),
          }, { requiredKeys: ["containerPort"] }),
          { maxLength: 2 },
        ),
      }, { requiredKeys: ["sandbox"] }),
    },
    fc.record({
      sandbox: sandboxRef,
      ipv4: maybe(byte.map((b) => `10.77.0.${b}`), badAddress),
      ipv6: maybe(fc.nat(0xffff).map((n) => `fd00:77::${n.toString(16)}`), badAddress),
      aliases: array(validName),
      publish: array(
        fc.record({
          hostIp: maybe(fc.constantFrom("0.0.0.0", "127.0.0.1", ""), badAddress),
          hostPort: maybe(fc.constantFrom(0, 8080, 8081), port),
          containerPort: port,
          protocol,
        }, { requiredKeys: ["containerPort"] }),
      ),
    }, { requiredKeys: ["sandbox"] }),
  ),
  services: fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        name: validName,
        network: networkRef,
        mode: fc.constantFrom("vip", "dnsrr"),
        ports: fc.array(
          fc.record({ port: goodPort, protocol: fc.constantFrom("tcp", "udp") }),
          { maxLength: 3 },
        ),
        affinity: fc.constant("client-ip"),
      }, { requiredKeys: ["name", "network"] }),
    },
    fc.record({
      name,
      network: networkRef,
      mode: maybe(fc.constantFrom("vip", "dnsrr"), text),
      ports: array(fc.record({ port, protocol }, { requiredKeys: ["port"] })),
      affinity: maybe(fc.constant("client-ip"), text),
    }, { requiredKeys: ["name", "network"] }),
  ),
  backends: fc.record({ sandbox: sandboxRef }),
};

/** A body for a route: mostly its own shape, sometimes with a field of a wrong type. */
function bodyOf(kind: string): fc.Arbitrary<string | Uint8Array<ArrayBuffer> | undefined> {
  const entries = BODIES[kind].map((o) => Object.entries(o));
  return fc.oneof(
    { weight: 8, arbitrary: entries.map(objectText) },
    {
      weight: 2,
      arbitrary: fc.tuple(
        entries,
        fc.oneof(fc.constantFrom(...FIELDS), fc.constantFrom(...POLLUTION)),
        fieldValue,
      ).map(([e, k, v]) => objectText([...e.filter(([x]) => x !== k), [k, v]])),
    },
    body,
  );
}

/**
 * Routes of the API: the path (`N`, `S`, `V`: a network, sandbox or service ref), its methods,
 * the kind of body POST takes, and how often the fuzz picks it.
 */
const ROUTES: [string[], string[], string | undefined, number][] = [
  [["info"], ["GET"], undefined, 1],
  [["networks"], ["GET", "POST"], "networks", 3],
  [["networks", "N"], ["GET", "DELETE"], undefined, 1],
  [["networks", "N", "endpoints"], ["POST", "POST", "GET"], "endpoints", 4],
  [["networks", "N", "endpoints", "S"], ["DELETE"], undefined, 2],
  [["sandboxes"], ["GET", "POST"], "sandboxes", 2],
  [["sandboxes", "S"], ["GET", "DELETE"], undefined, 1],
  [["services"], ["GET", "POST"], "services", 3],
  [["services", "V"], ["GET", "DELETE"], undefined, 1],
  [["services", "V", "backends"], ["POST"], "backends", 2],
  [["services", "V", "backends", "S"], ["DELETE"], undefined, 1],
];
const REFS: Record<string, fc.Arbitrary<string>> = {
  N: networkRef,
  S: sandboxRef,
  V: serviceRef,
};

/** A request to a known route, its refs filled in, with a body of its kind. */
const routed: fc.Arbitrary<FuzzRequest> = fc.oneof(
  ...ROUTES.map(([pattern, methods, kind, weight]) => ({
    weight,
    arbitrary: fc.constant({ pattern, methods, kind }),
  })),
).chain(({ pattern, methods, kind }) =>
  fc.record({
    method: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...methods) }, method),
    path: fc.tuple(
      fc.tuple(
        ...pattern.map((p) =>
          REFS[p]
            ? fc.oneof({ weight: 6, arbitrary: REFS[p].map(encodeURIComponent) }, segment)
            : fc.constant(p)
        ),
      ),
      fc.oneof({ weight: 8, arbitrary: fc.constant("") }, fc.constantFrom("/", "?x=1", "#f")),
    ).map(([segs, tail]) => "/" + segs.join("/") + tail),
    headers: fc.oneof(
      { weight: 4, arbitrary: fc.constant({ "content-type": "application/json" }) },
      headers,
    ),
    body: kind ? bodyOf(kind) : body,
  })
);

const request: fc.Arbitrary<FuzzRequest> = fc.oneof(
  { weight: 4, arbitrary: routed },
  { weight: 1, arbitrary: garbage },
);

/**
 * A fresh handler over a fake controller holding networks "web" (bridge, IPv4 and IPv6),
 * "none" and "host", sandboxes "a" (on web, a backend of "svc") and "b", and service "svc".
 */
async function freshHandler() {
  const { ctl } = fakeController();
  await ctl.createNetwork({
    name: "web",
    subnet: "10.77.0.0/24",
    ipv6: true,
    ipv6Subnet: "fd00:77::/64",
  });
  await ctl.createNetwork({ name: "none", driver: "null" });
  await ctl.createNetwork({ name: "host", driver: "host" });
  await ctl.createSandbox({ name: "a" });
  await ctl.createSandbox({ name: "b" });
  await ctl.connect("web", "a");
  await ctl.createService({ name: "svc", network: "web", ports: [{ port: 80 }] });
  await ctl.addBackend("svc", "a");
  const handler = createApiHandler(ctl, { version: "0", hostNetns: "h", prefix: "t", pid: 1 });
  return { ctl, handler };
}

/** The Request of a generated one, or undefined when the Fetch API itself refuses it. */
function toRequest(r: FuzzRequest): Request | undefined {
  const bodyless = ["GET", "HEAD"].includes(r.method.toUpperCase());
  try {
    return new Request(`http://cnm${r.path}`, {
      method: r.method,
      headers: r.headers,
      body: bodyless ? undefined : r.body,
    });
  } catch {
    return undefined;
  }
}

/** Asserts the property of one response. */
async function check(res: Response, req: FuzzRequest): Promise<void> {
  const where = `${req.method} ${req.path.slice(0, 200)}`;
  const text = await res.text();
  const unsupported = res.status === 501 && /not supported by cnm yet/.test(text);
  assert.ok(res.status < 500 || unsupported, `${where}: ${res.status} ${text.slice(0, 500)}`);
  if (res.status >= 400) {
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/, where);
    const json = JSON.parse(text);
    assert.equal(typeof json.message, "string", `${where}: ${text.slice(0, 300)}`);
    assert.ok(json.message.length > 0, where);
    assert.ok(!/[\r\n]/.test(json.message), `${where}: a one-line message: ${json.message}`);
    assert.equal(typeof json.kind, "string", where);
  } else if (res.status !== 204) {
    JSON.parse(text);
  }
}

Deno.test("api fuzz: garbage requests never get a 5xx, a throw or a non-JSON error", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 6 }), async (requests) => {
      const { ctl, handler } = await freshHandler();
      try {
        for (const r of requests) {
          const req = toRequest(r);
          if (!req) continue;
          const res = await handler(req).catch((err) =>
            assert.fail(`${r.method} ${r.path.slice(0, 200)}: the handler threw ${err}`)
          );
          await check(res, r);
        }
      } finally {
        await ctl.close();
      }
      // a polluted prototype would show on every object
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    }),
    { seed: SEED, numRuns: NUM_RUNS },
  );
});
