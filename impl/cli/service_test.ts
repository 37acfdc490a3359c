import assert from "node:assert/strict";
import { parseCli } from "./parse.ts";

const cmd = (...argv: string[]) => parseCli(["--socket", "/s", ...argv]).command;

Deno.test("cnm service create/add/remove/ls/inspect/rm parse to their commands", () => {
  assert.deepEqual(
    cmd(
      "service",
      "create",
      "--mode",
      "vip",
      "--port",
      "80",
      "--port",
      "53/udp",
      "--affinity",
      "client-ip",
      "--network",
      "web",
      "svc",
    ),
    {
      kind: "service-create",
      body: {
        name: "svc",
        network: "web",
        mode: "vip",
        ports: [{ port: 80, protocol: "tcp" }, { port: 53, protocol: "udp" }],
        affinity: "client-ip",
      },
    },
  );
  assert.deepEqual(cmd("service", "add", "svc", "a"), {
    kind: "service-add",
    service: "svc",
    sandbox: "a",
  });
  assert.deepEqual(cmd("service", "remove", "svc", "a"), {
    kind: "service-remove",
    service: "svc",
    sandbox: "a",
  });
  assert.deepEqual(cmd("service", "ls"), { kind: "service-ls", format: "table" });
  assert.deepEqual(cmd("service", "inspect", "svc"), {
    kind: "service-inspect",
    name: "svc",
    format: "json",
  });
  assert.deepEqual(cmd("service", "inspect", "svc", "--format", "table"), {
    kind: "service-inspect",
    name: "svc",
    format: "table",
  });
  assert.deepEqual(cmd("service", "rm", "a", "b"), { kind: "service-rm", names: ["a", "b"] });
});

Deno.test("cnm service create refuses a bad --port and needs --network", () => {
  assert.throws(
    () => cmd("service", "create", "--port", "80/sctp", "--network", "web", "svc"),
    /"80\/sctp" is not PORT\[\/tcp\|\/udp\]/,
  );
  assert.throws(() => cmd("service", "create", "svc"), /--network/);
});
