/**
 * TEST-ONLY entry point: the reference daemon whose kernel commands are counted, so a test
 * can kill -9 it just before (or just after) its k-th command of one operation.
 *
 * ```sh
 * deno run -A --unstable-net testing/crash_daemon.ts --arm FILE --trace FILE \
 *   [--stop-before K | --stop-within K | --stop-after K] --paused FILE -- [cnm daemon FLAGS]
 * ```
 *
 * Commands are counted once the file `--arm` names exists (the test creates it just before
 * the operation's request), each appended to `--trace` as one line. At the chosen command the
 * daemon writes `--paused` and waits for ever, without running it (`--stop-before`), after
 * running only the first line of its batch (`--stop-within`: `ip -batch` or `nft -f` cut
 * off as when the daemon dies while writing its input), or after it ran (`--stop-after`):
 * the test then kills the process from outside. `cnm` itself never
 * loads this module.
 * @module
 */
import { parseArgs } from "node:util";
import { runDaemon } from "../impl/daemon/daemon.ts";
import {
  type Command,
  type CommandResult,
  type CommandRunner,
  createProcessRunner,
} from "../impl/kernel/runner.ts";

/** Where and when to stop. */
export interface CrashPlan {
  arm: string;
  trace: string;
  paused: string;
  /** 1-based command number; undefined = never stop (a dry run that counts). */
  stopAt?: number;
  when: "before" | "within" | "after";
}

/** A runner that counts commands once armed and stops for ever at the planned one. */
export function crashingRunner(inner: CommandRunner, plan: CrashPlan): CommandRunner {
  let armed = false;
  let count = 0;
  const stop = async (k: number, cmd: Command): Promise<never> => {
    await Deno.writeTextFile(plan.paused, `${plan.when} ${k} ${cmd.argv.join(" ")}\n`);
    return await new Promise<never>(() => {});
  };
  return {
    async run(cmd: Command): Promise<CommandResult> {
      armed ||= await Deno.stat(plan.arm).then(() => true, () => false);
      if (!armed) return await inner.run(cmd);
      const k = ++count;
      await Deno.writeTextFile(plan.trace, `${k} ${cmd.argv.join(" ")}\n`, { append: true });
      if (k === plan.stopAt && plan.when === "before") return await stop(k, cmd);
      if (k === plan.stopAt && plan.when === "within") {
        const first = cmd.stdin?.split("\n").find((l) => l.trim() !== "");
        if (first !== undefined) await inner.run({ ...cmd, stdin: `${first}\n`, allowFail: true });
        return await stop(k, cmd);
      }
      const result = await inner.run(cmd);
      if (k === plan.stopAt && plan.when === "after") return await stop(k, cmd);
      return result;
    },
  };
}

if (import.meta.main) {
  const dash = Deno.args.indexOf("--");
  const own = dash < 0 ? Deno.args : Deno.args.slice(0, dash);
  const daemonArgs = dash < 0 ? [] : Deno.args.slice(dash + 1);
  const { values } = parseArgs({
    args: own,
    options: {
      arm: { type: "string" },
      trace: { type: "string" },
      paused: { type: "string" },
      "stop-before": { type: "string" },
      "stop-within": { type: "string" },
      "stop-after": { type: "string" },
    },
    strict: true,
  });
  if (!values.arm || !values.trace || !values.paused) {
    console.error("crash_daemon.ts: --arm, --trace and --paused are required");
    Deno.exit(2);
  }
  const at = values["stop-before"] ?? values["stop-within"] ?? values["stop-after"];
  const plan: CrashPlan = {
    arm: values.arm,
    trace: values.trace,
    paused: values.paused,
    stopAt: at === undefined ? undefined : Number(at),
    when: values["stop-after"] !== undefined
      ? "after"
      : values["stop-within"] !== undefined
      ? "within"
      : "before",
  };
  Deno.exit(
    await runDaemon(daemonArgs, { runner: crashingRunner(createProcessRunner(), plan) }),
  );
}
