/**
 * Benchmark of the embedded DNS (issue 7): `deno run -A --unstable-net bench/dns_bench.ts`.
 *
 * 1. Throughput: a DnsService in this process serves one sandbox (a throwaway namespace)
 *    whose network has 20 endpoints; `dnsperf -s 127.0.0.11 -c 4 -l 10` runs inside the
 *    sandbox (`nsenter --net=PATH`) with a query file of A queries for those names. Prints
 *    queries per second, lost queries and average latency.
 * 2. Memory: 199 more sandboxes (200 in all), each a namespace with its own listeners and an
 *    endpoint on the network, each asked once; prints this process's resident set size
 *    (`Deno.memoryUsage().rss`) against the 150 MB target.
 *
 * Everything it makes carries a `cnmt-<6 hex>` prefix and is removed in `finally`. It never
 * fails on figures (benchmarks measure; tests assert). `CNM_DNS_BENCH_SECONDS` changes the
 * dnsperf run length (default 10), `CNM_DNS_BENCH_SANDBOXES` the sandbox count (default 200).
 * @module
 */
import { DnsService } from "../impl/dns/mod.ts";
import { withPrivateDocker } from "./private_docker.ts";
import { withNetns } from "../impl/kernel/setns.ts";
import { addNetns, removeNetnsByPrefix, testPrefix } from "../testing/mod.ts";

const SECONDS = Number(Deno.env.get("CNM_DNS_BENCH_SECONDS") ?? 10);
const SANDBOXES = Number(Deno.env.get("CNM_DNS_BENCH_SANDBOXES") ?? 200);
const ENDPOINTS = 20;
const MB = 1024 * 1024;

/** Runs a command without blocking the event loop (the service answers meanwhile). */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** One A query from inside a namespace; true when an answer came back within a second. */
async function askOnce(nsPath: string, name: string): Promise<boolean> {
  const sock = withNetns(
    nsPath,
    () => Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" }),
  );
  try {
    const labels = name.split(".").flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
    const q = new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
    await sock.send(q, { transport: "udp", hostname: "127.0.0.11", port: 53 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await Promise.race([
      sock.receive().then(([d]) => d),
      new Promise<null>((r) => timer = setTimeout(() => r(null), 1000)),
    ]);
    clearTimeout(timer);
    return reply !== null && (reply[7] | (reply[6] << 8)) > 0;
  } finally {
    sock.close();
  }
}

/** Endpoint `i` of the bench network: `c<i>`, hostname `h<i>`, address 10.77.x.y (i + 2). */
function benchEndpoint(i: number, sandboxId = `sb${i}`, aliases: string[] = []) {
  return {
    sandboxId,
    sandboxName: `c${i}`,
    hostname: `h${i}`,
    networkId: "benchnet-id",
    networkName: "benchnet",
    internal: false,
    aliases,
    ipv4: `10.77.${(i + 2) >> 8}.${(i + 2) & 255}`,
  };
}

const prefix = testPrefix();
const ns = (n: string) => `${prefix}-${n}`;
const path = (n: string) => `/run/netns/${ns(n)}`;
const dns = new DnsService({ upstreams: [] });
const tmp = await Deno.makeTempDir({ prefix: `${prefix}-` });

/** Runs dnsperf inside a namespace against 127.0.0.11 and reads its figures. */
async function dnsperf(nsPath: string, queryFile: string) {
  const perf = await run([
    "nsenter",
    `--net=${nsPath}`,
    "dnsperf",
    "-s",
    "127.0.0.11",
    "-c",
    "4",
    "-l",
    String(SECONDS),
    "-d",
    queryFile,
  ]);
  const grab = (re: RegExp) => re.exec(perf.stdout)?.[1];
  const qps = Number(grab(/Queries per second:\s+([\d.]+)/));
  const lost = grab(/Queries lost:\s+(\d+ \([\d.]+%\))/);
  const completed = grab(/Queries completed:\s+(\d+ \([\d.]+%\))/);
  const latency = Number(grab(/Average Latency \(s\):\s+([\d.]+)/));
  if (!qps) {
    console.log(perf.stdout + perf.stderr);
    throw new Error(`dnsperf failed (exit ${perf.code})`);
  }
  return { qps, lost, completed, latency };
}

/**
 * The same dnsperf run against Docker 20.10's embedded DNS: a private dockerd in a throwaway
 * host namespace (the conformance suite's Docker adapter), ENDPOINTS containers on one
 * network, dnsperf inside one of them. Undefined when no dockerd is installed.
 */
function dockerFigures(queryFile: string) {
  return withPrivateDocker(async (docker) => {
    await docker.createNetwork({ name: "benchnet", driver: "bridge", subnet: "10.78.0.0/16" });
    let first = "";
    for (let i = 0; i < ENDPOINTS; i++) {
      const sb = await docker.createSandbox({ name: `c${i}`, hostname: `h${i}` });
      await docker.connect(`c${i}`, "benchnet", i % 5 === 0 ? { aliases: ["web"] } : {});
      if (i === 0) first = sb.netnsPath;
    }
    return await dnsperf(first, queryFile);
  });
}

try {
  if (Deno.uid() !== 0) throw new Error("the DNS benchmark needs root (network namespaces)");
  const haveDnsperf = await run(["sh", "-c", "command -v dnsperf"]);
  if (haveDnsperf.code !== 0) throw new Error("dnsperf is not installed (Debian package dnsperf)");

  const rssStart = Deno.memoryUsage().rss;
  await addNetns(ns("sb0"));
  await dns.addSandbox("sb0", path("sb0"));
  for (let i = 0; i < ENDPOINTS; i++) {
    dns.upsertEndpoint(benchEndpoint(i, `sb${i}`, i % 5 === 0 ? ["web"] : []));
  }
  const queryFile = `${tmp}/queries.txt`;
  const lines: string[] = [];
  for (let i = 0; i < ENDPOINTS; i++) lines.push(`c${i} A`);
  await Deno.writeTextFile(queryFile, lines.join("\n") + "\n");

  console.log(`namespaces: ${prefix}-*`);
  console.log(
    `dnsperf -s 127.0.0.11 -c 4 -l ${SECONDS} inside one sandbox, ${ENDPOINTS} endpoints ...`,
  );
  const { qps, lost, completed, latency } = await dnsperf(path("sb0"), queryFile);
  console.log(`  queries per second   ${qps.toFixed(0)}`);
  console.log(`  queries completed    ${completed}`);
  console.log(`  queries lost         ${lost}`);
  console.log(`  average latency      ${(latency * 1000).toFixed(3)} ms`);
  console.log(`\nthe same against Docker 20.10's embedded DNS (${ENDPOINTS} containers) ...`);
  const docker = await dockerFigures(queryFile);
  if (!docker) {
    console.log("  no dockerd on this machine: ours alone");
  } else {
    console.log(`  queries per second   ${docker.qps.toFixed(0)}`);
    console.log(`  queries lost         ${docker.lost}`);
    console.log(`  average latency      ${(docker.latency * 1000).toFixed(3)} ms`);
    console.log(
      `  ratio cnm / Docker   ${(qps / docker.qps).toFixed(2)} (target >= 1.00); latency ${
        (latency / docker.latency).toFixed(2)
      }x Docker's`,
    );
  }
  const s = dns.stats();
  console.log(
    `  resolver: ${s.queries} queries, ${s.cached} from the cache, ${s.forwarded} forwarded`,
  );

  // the same resolver with 1,000 records on the network, queried over all of them: the
  // answer is a map lookup per name, so the rate must not depend on the record count
  const SCALE = 1000;
  for (let i = ENDPOINTS; i < SCALE; i++) {
    dns.upsertEndpoint(benchEndpoint(i));
  }
  const scaleFile = `${tmp}/queries-${SCALE}.txt`;
  await Deno.writeTextFile(
    scaleFile,
    Array.from({ length: SCALE }, (_, i) => `c${i} A`).join("\n") + "\n",
  );
  console.log(`\nthe same with ${SCALE} records, queried over all of them ...`);
  const big = await dnsperf(path("sb0"), scaleFile);
  console.log(`  queries per second   ${big.qps.toFixed(0)}`);
  console.log(`  queries lost         ${big.lost}`);
  console.log(
    `  ratio ${SCALE} / ${ENDPOINTS} records  ${(big.qps / qps).toFixed(2)} (target >= 0.90)`,
  );
  for (let i = ENDPOINTS; i < SCALE; i++) dns.removeEndpoint(`sb${i}`, "benchnet-id");

  const rssAfterPerf = Deno.memoryUsage().rss;
  console.log(`\n${SANDBOXES} sandboxes, each with listeners and an endpoint ...`);
  const names = Array.from({ length: SANDBOXES - 1 }, (_, i) => `sb${i + 1}`);
  // One shell for all the namespaces: hundreds of spawns from this process would grow its
  // RSS by about 50 MB (spawn machinery), which is not the resolver's.
  const made = await run([
    "sh",
    "-c",
    'for n in "$@"; do ip netns add "$n" && ip -n "$n" link set lo up || exit 1; done',
    "sh",
    ...names.map(ns),
  ]);
  if (made.code !== 0) throw new Error(`cannot create the namespaces: ${made.stderr.trim()}`);
  const rssBeforeSandboxes = Deno.memoryUsage().rss;
  for (const [i, n] of names.entries()) {
    await dns.addSandbox(n, path(n));
    const k = i + 1;
    dns.upsertEndpoint(benchEndpoint(k, n));
  }
  let answered = 0;
  for (const [i, n] of names.entries()) {
    if (await askOnce(path(n), `c${(i * 7) % SANDBOXES}`)) answered++;
  }
  const rss = Deno.memoryUsage().rss;
  console.log(`  sandboxes served     ${dns.stats().sandboxes} (${answered + 1} answered a query)`);
  console.log(
    `  RSS                  ${(rss / MB).toFixed(1)} MB (target <= 150 MB; ${
      (rssStart / MB).toFixed(1)
    } MB before the first sandbox, ${(rssAfterPerf / MB).toFixed(1)} MB after dnsperf)`,
  );
  console.log(
    `  RSS growth           ${
      ((rss - rssBeforeSandboxes) / MB).toFixed(1)
    } MB for ${names.length} sandboxes' listeners, records and caches`,
  );
  const m = Deno.memoryUsage();
  console.log(
    `  V8 heap              ${(m.heapUsed / MB).toFixed(1)} MB used of ${
      (m.heapTotal / MB).toFixed(1)
    } MB; external ${(m.external / MB).toFixed(1)} MB`,
  );
} catch (err) {
  console.error(`dns bench: ${err instanceof Error ? err.message : err}`);
  Deno.exitCode = 1;
} finally {
  await dns.close();
  await removeNetnsByPrefix(prefix);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
