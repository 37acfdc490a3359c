/**
 * Running commands for the harness (argv arrays, never shell strings), with timeouts.
 * @module
 */

/** A command's outcome. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv; never throws on a non-zero exit. */
export async function exec(
  argv: string[],
  opts: { stdin?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<ExecResult> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 20_000),
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs argv and throws a one-line error when it fails. */
export async function run(argv: string[], stdin?: string): Promise<string> {
  const r = await exec(argv, { stdin });
  if (r.code !== 0) {
    throw new Error(
      `${argv.join(" ")} failed (exit ${r.code}): ${r.stderr.trim().split("\n").pop()}`,
    );
  }
  return r.stdout;
}
