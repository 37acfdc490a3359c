/**
 * Load (issue 14): 10 clients, each on its own connection, send 100 mixed operations at once
 * (connect, disconnect, network create, network rm, sandbox create, sandbox rm) to one real
 * daemon. Every answer is a 2xx or a clean 4xx (JSON, one line, naming the conflict), never
 * a 5xx; afterwards the store agrees with the kernel, and removing everything leaves the host
 * empty. The operations are drawn with a fixed seed (fast-check's generator), so a failure
 * can be replayed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { isRoot, removeNetnsByPrefix, settledHostResidue, testPrefix } from "../../testing/mod.ts";
import { type Api, checkAgrees, removeAll, state } from "../../testing/consistency.ts";
import { DaemonProcess, throwawayDaemonArgs, UnixApi } from "../../testing/daemon_process.ts";

const CLIENTS = 10;
const OPERATIONS = 100;
const SEED = 0x14_10ad;

type Op = [method: string, path: string, body?: unknown];

/** The mixed operations, over 3 standing networks, 2 made during the run, 12 sandboxes. */
function operations(): Op[] {
  const net = fc.constantFrom("n0", "n1", "n2", "m0", "m1");
  const sb = fc.integer({ min: 0, max: 11 }).map((i) => `s${i}`);
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.tuple(net, sb).map(([n, s]) =>
        ["POST", `/networks/${n}/endpoints`, { sandbox: s }] as Op
      ),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(net, sb).map(([n, s]) =>
        ["DELETE", `/networks/${n}/endpoints/${s}`] as Op
      ),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 1 }).map((i) =>
        ["POST", "/networks", { name: `m${i}`, subnet: `10.24${i}.0.0/24` }] as Op
      ),
    },
    { weight: 1, arbitrary: net.map((n) => ["DELETE", `/networks/${n}`] as Op) },
    { weight: 1, arbitrary: sb.map((s) => ["POST", "/sandboxes", { name: s }] as Op) },
    { weight: 1, arbitrary: sb.map((s) => ["DELETE", `/sandboxes/${s}`] as Op) },
  );
  return fc.sample(fc.array(op, { minLength: OPERATIONS, maxLength: OPERATIONS }), {
    seed: SEED,
    numRuns: 1,
  })[0];
}

Deno.test({
  name:
    "10 clients, 100 concurrent mixed operations: 2xx or a clean 4xx, then store = kernel (root)",
  ignore: !isRoot,
  async fn() {
    const prefix = testPrefix();
    const host = `${prefix}-h`;
    const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });
    const socket = `${tmp}/cnm.sock`;
    const daemon = new DaemonProcess(
      throwawayDaemonArgs({ host, prefix, socket, stateDir: `${tmp}/state` }),
    );
    const clients = Array.from({ length: CLIENTS }, () => new UnixApi(socket));
    const api: Api = (method, path, body) => clients[0].ok(method, path, body);
    try {
      await daemon.ready(clients[0]);
      for (let i = 0; i < 3; i++) {
        await api("POST", "/networks", { name: `n${i}`, subnet: `10.23${i}.0.0/24` });
      }
      for (let i = 0; i < 12; i += 2) await api("POST", "/sandboxes", { name: `s${i}` });
      const ops = operations();
      const started = performance.now();
      const answers = await Promise.all(
        ops.map(async ([method, path, body], i) => {
          const r = await clients[i % CLIENTS].call(method, path, body);
          return { method, path, status: r.status, json: r.json };
        }),
      );
      const ms = performance.now() - started;
      const byStatus = new Map<number, number>();
      for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      console.log(
        `  ${OPERATIONS} operations from ${CLIENTS} clients in ${ms.toFixed(0)} ms: ${
          [...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${n}x ${s}`).join(", ")
        }`,
      );
      for (const a of answers) {
        const what = `${a.method} ${a.path} -> ${a.status} ${JSON.stringify(a.json)}`;
        assert.ok(a.status < 500, what);
        if (a.status >= 400) {
          assert.equal(typeof a.json?.message, "string", what);
          assert.ok(!a.json.message.includes("\n"), what);
          assert.match(a.json.kind, /^(conflict|forbidden|not-found|invalid)$/, what);
        }
      }
      assert.ok((byStatus.get(201) ?? 0) > 10, "the mix did real work");
      await checkAgrees(await state(api), host, prefix);
      await removeAll(api);
      assert.deepEqual(await settledHostResidue(host), [], "the host is empty");
      assert.equal((await daemon.stop()).code, 0);
    } finally {
      await daemon.kill();
      for (const c of clients) c.close();
      await removeNetnsByPrefix(prefix);
      await Deno.remove(`/run/cnm/${prefix}.lock`).catch(() => {});
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
