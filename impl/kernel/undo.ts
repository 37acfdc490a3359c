/**
 * An undo stack: each step that changed something registers how to take it back; on failure
 * the compensations run last-in-first-out (the kernel selftests' `defer`). `commit()` keeps
 * the changes.
 * @module
 */
import type { Logger } from "./runner.ts";

/** One compensation. */
export interface UndoEntry {
  label: string;
  fn: () => Promise<void> | void;
}

/** LIFO compensations; disposing an uncommitted stack unwinds it. */
export class UndoStack implements AsyncDisposable {
  #entries: UndoEntry[] = [];
  #log: Logger;
  /** Errors met while unwinding (each is also logged); unwinding never stops early. */
  readonly errors: unknown[] = [];
  constructor(log: Logger = () => {}) {
    this.#log = log;
  }
  /** Registers a compensation. */
  push(label: string, fn: () => Promise<void> | void): void {
    this.#entries.push({ label, fn });
  }
  /** Number of registered compensations. */
  get size(): number {
    return this.#entries.length;
  }
  /** Keeps everything: forgets the compensations. */
  commit(): void {
    this.#entries = [];
  }
  /** Runs every compensation, newest first, carrying on past failures. */
  async unwind(): Promise<void> {
    while (this.#entries.length > 0) {
      const e = this.#entries.pop()!;
      try {
        await e.fn();
      } catch (err) {
        this.errors.push(err);
        this.#log(`undo: ${e.label} failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.unwind();
  }
}
