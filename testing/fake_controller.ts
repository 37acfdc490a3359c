/**
 * A controller on a fake kernel, for unit tests without root: every command succeeds with
 * empty output unless `respond` says otherwise, and `ip link show` finds no device (a fresh
 * host). Also an assertion for the controller's typed one-line errors. Test-only code.
 * @module
 */
import assert from "node:assert/strict";
import { createDefaultDrivers } from "../impl/open.ts";
import { Controller, type SandboxResolver } from "../impl/controller/controller.ts";
import type { NetworkDriver } from "../impl/driver_api/mod.ts";
import { createDefaultIpam } from "../impl/ipam/mod.ts";
import {
  type Command,
  type CommandResult,
  FakeRunner,
  Kernel,
  MemoryFs,
} from "../impl/kernel/mod.ts";
import { CnmError } from "../impl/model/errors.ts";
import { openStore, type Store } from "../impl/store/mod.ts";

/** Options of {@linkcode fakeController}. */
export interface FakeControllerOptions {
  /** Answers a command (checked first); undefined falls back to the defaults. */
  respond?: (cmd: Command) => Partial<CommandResult> | undefined;
  resolver?: SandboxResolver;
  /** DNS servers for resolv.conf (when there is no resolver). */
  dns?: string[];
  /** Drivers added to the built-in ones. */
  extraDrivers?: NetworkDriver[];
}

/** What {@linkcode fakeController} gives. */
export interface FakeController {
  ctl: Controller;
  runner: FakeRunner;
  fs: MemoryFs;
  store: Store;
  kernel: Kernel;
}

/** A controller for host "h", prefix "t", on a fake kernel and an in-memory store. */
export function fakeController(opts: FakeControllerOptions = {}): FakeController {
  const runner = new FakeRunner((cmd) => {
    const answer = opts.respond?.(cmd);
    if (answer) return answer;
    // no link exists yet: `ip link show dev X` fails as on a fresh host
    if (cmd.argv.includes("show")) {
      return { code: 1, stderr: "Device does not exist" };
    }
    return undefined;
  });
  const fs = new MemoryFs();
  const kernel = new Kernel({ runner, fs });
  const store = openStore(":memory:");
  const ctl = new Controller({
    kernel,
    store,
    ipam: createDefaultIpam(),
    drivers: [
      ...createDefaultDrivers({ kernel, hostNetns: "h", prefix: "t" }),
      ...(opts.extraDrivers ?? []),
    ],
    hostNetns: "h",
    prefix: "t",
    dns: opts.dns,
    resolver: opts.resolver,
  });
  return { ctl, runner, fs, store, kernel };
}

/** Asserts `p` rejects with a one-line CnmError of `kind` whose message matches `re`. */
export async function rejectsKind(p: Promise<unknown>, kind: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CnmError, `a CnmError, got ${e}`);
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}
