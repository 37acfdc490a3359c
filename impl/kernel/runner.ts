/**
 * The one place in impl/ that runs commands: a {@linkcode CommandRunner} backed by dax, with
 * timeouts and logging, and the {@linkcode Command} shape that fakes record.
 * @module
 */
import $ from "dax";
import { KernelCommandError } from "../model/errors.ts";

/** A command to run: argv (never a shell string) and optional standard input. */
export interface Command {
  argv: string[];
  stdin?: string;
  /** Milliseconds before the command is killed; default 10 s. */
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; the caller looks at `code`. */
  allowFail?: boolean;
}

/** What a command printed and how it ended. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs commands. The dax runner runs them for real; tests inject fakes or fault wrappers. */
export interface CommandRunner {
  run(cmd: Command): Promise<CommandResult>;
}

/** A log sink: one line per event. */
export type Logger = (line: string) => void;

/** Logs nothing. */
export function quietLogger(_line: string): void {}

/** Options of {@linkcode createDaxRunner}. */
export interface DaxRunnerOptions {
  /** Called with each command and its duration (debug-level). */
  log?: Logger;
  /** Default timeout in ms (10 000). */
  timeoutMs?: number;
}

/** Creates the real runner: dax with escaped arguments, a timeout and a log line per command. */
export function createDaxRunner(options: DaxRunnerOptions = {}): CommandRunner {
  const log = options.log ?? quietLogger;
  const defaultTimeout = options.timeoutMs ?? 10_000;
  return {
    async run(cmd: Command): Promise<CommandResult> {
      const started = performance.now();
      let builder = $`${cmd.argv}`.noThrow().quiet().timeout(cmd.timeoutMs ?? defaultTimeout);
      builder = cmd.stdin === undefined ? builder.stdin("null") : builder.stdinText(cmd.stdin);
      const out = await builder;
      const result = { code: out.code, stdout: out.stdout, stderr: out.stderr };
      const ms = (performance.now() - started).toFixed(1);
      log(`kernel: ${cmd.argv.join(" ")} -> ${result.code} (${ms} ms)`);
      if (result.code !== 0 && !cmd.allowFail) {
        throw new KernelCommandError(cmd.argv, result.code, result.stderr || result.stdout);
      }
      return result;
    },
  };
}

/** A recorded call of a {@linkcode FakeRunner}. */
export interface RecordedCommand {
  argv: string[];
  stdin?: string;
}

/**
 * A runner that runs nothing: it records each command and answers from a script
 * (`respond`), so plans and drivers are tested without root.
 */
export class FakeRunner implements CommandRunner {
  readonly calls: RecordedCommand[] = [];
  #respond: (cmd: Command) => Partial<CommandResult> | undefined;
  constructor(respond?: (cmd: Command) => Partial<CommandResult> | undefined) {
    this.#respond = respond ?? (() => undefined);
  }
  run(cmd: Command): Promise<CommandResult> {
    this.calls.push({ argv: [...cmd.argv], stdin: cmd.stdin });
    const r = { code: 0, stdout: "", stderr: "", ...this.#respond(cmd) };
    if (r.code !== 0 && !cmd.allowFail) {
      return Promise.reject(new KernelCommandError(cmd.argv, r.code, r.stderr));
    }
    return Promise.resolve(r);
  }
  /** The recorded commands as text, one per line, stdin indented below its command. */
  transcript(): string {
    return this.calls.map((c) =>
      c.argv.join(" ") +
      (c.stdin ? "\n" + c.stdin.trimEnd().split("\n").map((l) => "  | " + l).join("\n") : "")
    ).join("\n") + "\n";
  }
}

/**
 * Wraps a runner and makes the commands that `match` selects fail, as if the kernel had
 * refused them. The one fault-injection point for "a failed operation leaves nothing behind"
 * tests.
 */
export class FaultyRunner implements CommandRunner {
  #inner: CommandRunner;
  #match: (cmd: Command) => boolean;
  /** How many commands were made to fail. */
  injected = 0;
  constructor(inner: CommandRunner, match: (cmd: Command) => boolean) {
    this.#inner = inner;
    this.#match = match;
  }
  run(cmd: Command): Promise<CommandResult> {
    if (this.#match(cmd)) {
      this.injected++;
      if (cmd.allowFail) return Promise.resolve({ code: 1, stdout: "", stderr: "injected fault" });
      return Promise.reject(new KernelCommandError(cmd.argv, 1, "injected fault"));
    }
    return this.#inner.run(cmd);
  }
}
