/**
 * The `cnm` command (`deno task cnm ...`): the daemon and a Docker-like client of it.
 * Parsing is in `parse.ts`, effects in `run.ts`.
 * @module
 */
import { parseCli, UsageError } from "./parse.ts";
import { type CliIo, consoleIo, execute } from "./run.ts";

/** Runs `cnm ARGV`; returns the exit status (0 ok, 1 error, 2 usage). */
export async function main(
  argv: string[],
  env: Record<string, string> = Deno.env.toObject(),
  io: CliIo = consoleIo,
): Promise<number> {
  let inv;
  try {
    inv = parseCli(argv, env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`cnm: ${err.message}`);
      return 2;
    }
    throw err;
  }
  try {
    return await execute(inv, io);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`cnm: ${message.replace(/\s+/g, " ")}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
