import assert from "node:assert/strict";
import { parseCli, UsageError } from "./parse.ts";
import { parsePublish } from "./publish.ts";

Deno.test("parsePublish() reads [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]", () => {
  assert.deepEqual(parsePublish("8080:80"), { hostPort: 8080, containerPort: 80 });
  assert.deepEqual(parsePublish("127.0.0.1:53:53/udp"), {
    hostIp: "127.0.0.1",
    hostPort: 53,
    containerPort: 53,
    protocol: "udp",
  });
  assert.deepEqual(parsePublish(":80/tcp"), { containerPort: 80, protocol: "tcp" });
  assert.deepEqual(parsePublish("0:80"), { containerPort: 80 });
  assert.deepEqual(parsePublish("10.0.0.1::80"), { hostIp: "10.0.0.1", containerPort: 80 });
});

Deno.test("cnm connect --publish: repeatable; bad specs are one-line usage errors", () => {
  const inv = parseCli(["connect", "-p", "8080:80", "--publish", ":53/udp", "web", "a"]);
  assert.deepEqual(inv.command, {
    kind: "connect",
    network: "web",
    body: {
      sandbox: "a",
      publish: [{ hostPort: 8080, containerPort: 80 }, { containerPort: 53, protocol: "udp" }],
    },
  });
  for (
    const bad of ["80", "8080:80/sctp", "x:80", "70000:80", "8080:0", "1.2.3:80:80", "a:b:c:d"]
  ) {
    assert.throws(() => parseCli(["connect", "--publish", bad, "web", "a"]), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${bad}: ${e}`);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  }
});
