/**
 * TEST-ONLY entry point: the reference daemon with one deliberate fault (testing/
 * test_faults.ts), for the conformance suite's self-validation.
 *
 * ```sh
 * deno run -A --unstable-net testing/faulty_daemon.ts --fault NAME -- [cnm daemon FLAGS]
 * ```
 *
 * runs the daemon exactly as `cnm daemon FLAGS` does (same flags, same `CNM_SOCKET`
 * fallback, same signals and exit statuses), with the fault's hooks. `cnm` itself never
 * loads this module.
 * @module
 */
import { runDaemon } from "../impl/daemon/daemon.ts";
import {
  DAEMON_FAULT_NAMES,
  type DaemonFault,
  daemonFault,
  UnknownFaultError,
} from "./test_faults.ts";

/** A command line this entry point refuses. */
export class FaultyDaemonUsageError extends Error {
  override readonly name = "FaultyDaemonUsageError";
}

/** The usage text. */
export const USAGE = `Usage: faulty_daemon.ts --fault NAME -- [cnm daemon FLAGS]

Runs \`cnm daemon FLAGS\` with one deliberate fault (test only).
Faults: ${DAEMON_FAULT_NAMES.join(", ")}
`;

/** A parsed command line: the fault and the daemon's own arguments. */
export interface FaultyDaemonArgs {
  fault: DaemonFault;
  daemonArgs: string[];
}

/**
 * Parses `--fault NAME [--] DAEMON-ARGS` (`--fault=NAME` too). Everything after `--` goes
 * to the daemon unchanged. Throws {@linkcode FaultyDaemonUsageError}.
 */
export function parseFaultyDaemonArgs(argv: string[]): FaultyDaemonArgs {
  let name: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (a === "--fault") {
      if (i + 1 >= argv.length) throw new FaultyDaemonUsageError("--fault needs a NAME");
      name = argv[++i];
    } else if (a.startsWith("--fault=")) {
      name = a.slice("--fault=".length);
    } else {
      throw new FaultyDaemonUsageError(`unexpected argument "${a}" before "--"`);
    }
  }
  if (!name) throw new FaultyDaemonUsageError("--fault NAME is required");
  try {
    return { fault: daemonFault(name), daemonArgs: argv.slice(i) };
  } catch (err) {
    if (err instanceof UnknownFaultError) throw new FaultyDaemonUsageError(err.message);
    throw err;
  }
}

/** Runs the faulty daemon; returns the exit status (2 on a usage error). */
export async function main(argv: string[]): Promise<number> {
  let parsed: FaultyDaemonArgs;
  try {
    parsed = parseFaultyDaemonArgs(argv);
  } catch (err) {
    if (err instanceof FaultyDaemonUsageError) {
      console.error(`faulty_daemon: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  console.error(`faulty_daemon: TEST-ONLY fault ${parsed.fault.name}: ${parsed.fault.breaks}`);
  return await runDaemon(parsed.daemonArgs, parsed.fault.hooks());
}

if (import.meta.main) Deno.exit(await main(Deno.args));
