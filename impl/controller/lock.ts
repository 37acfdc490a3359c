/**
 * A FIFO async mutex: the controller runs one state-changing operation at a time, so
 * concurrent requests (50 parallel connects) see consistent state.
 * @module
 */

/** Serializes async functions. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  /** Runs `fn` after every earlier call has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}
