/**
 * The daemon's API client: JSON over HTTP on the daemon's unix socket.
 * @module
 */
import type { ErrorKind } from "../model/errors.ts";

/** The daemon answered with an error status. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly kind: ErrorKind | string, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

/** Nothing answers on the socket (missing file, connection refused). */
export class NoDaemonError extends Error {
  constructor(readonly socket: string, reason?: string) {
    super(reason ? `cannot reach the daemon at ${socket}: ${reason}` : `no daemon at ${socket}`);
    this.name = "NoDaemonError";
  }
}

/** A client of one daemon. Close it when done. */
export class ApiClient {
  /** The daemon's socket. */
  readonly socket: string;
  #client: Deno.HttpClient;

  constructor(socket: string) {
    this.socket = socket;
    this.#client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  }

  /**
   * Sends one request; returns the parsed JSON body (undefined for 204). Throws
   * {@linkcode ApiError} on an error status and {@linkcode NoDaemonError} when nothing answers.
   */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://cnm${path}`, {
        method,
        client: this.#client,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      throw new NoDaemonError(
        this.socket,
        /permission denied/i.test(text) ? "permission denied" : undefined,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.trim() || `${res.status} ${res.statusText}`;
      let kind = "internal";
      try {
        const parsed = JSON.parse(text);
        if (typeof parsed?.message === "string") message = parsed.message;
        if (typeof parsed?.kind === "string") kind = parsed.kind;
      } catch { /* not JSON: keep the text */ }
      throw new ApiError(res.status, kind, message.replace(/\s+/g, " "));
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Releases the connection pool. */
  close(): void {
    this.#client.close();
  }

  /** Same as {@linkcode ApiClient.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A path segment, percent-encoded. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}
