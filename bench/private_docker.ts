/**
 * A private Docker 20.10 engine for the benchmarks that measure Docker beside cnm in the same
 * run: a throwaway host namespace and a dockerd in it, started as the conformance suite's
 * Docker adapter starts it (own data-root, containerd, socket), and removed afterwards.
 * @module
 */
import type { Implementation } from "../conformance/impl.ts";
import type { HarnessHost } from "../conformance/harness/hosts.ts";

/**
 * Runs `fn` with a private engine (the adapter, its host, and the engine's socket path);
 * undefined when no dockerd is installed. Everything is removed whether `fn` fails or not.
 */
export async function withPrivateDocker<T>(
  fn: (docker: Implementation, host: HarnessHost, socket: string) => Promise<T>,
): Promise<T | undefined> {
  const have = await new Deno.Command("sh", { args: ["-c", "command -v dockerd"] }).output();
  if (!have.success) return undefined;
  const { default: createDockerAdapter } = await import("../conformance/adapters/docker.ts");
  const { createHost, removeByPrefix, stopHost } = await import("../conformance/harness/hosts.ts");
  const prefix = `cnmt-${crypto.randomUUID().slice(0, 6)}`;
  const host = await createHost(prefix, "h1");
  const docker = createDockerAdapter({
    options: {},
    repoRoot: new URL("..", import.meta.url).pathname,
    log: () => {},
  });
  try {
    await docker.addHost(host);
    return await fn(docker, host, `${host.stateDir}/d/docker.sock`);
  } finally {
    await docker[Symbol.asyncDispose]();
    await stopHost(host);
    await removeByPrefix(prefix);
  }
}
