/**
 * nftables transactions run in this process through libnftables (the library the `nft`
 * command is a thin front end of), instead of an `nft` process per transaction.
 *
 * Why (measured here, kernel 6.18, nftables 1.0.6, a table like the bridge driver's): an
 * `nft -f` that adds one network's chains cost 10-15 ms as a process started by hand and
 * 20-28 ms from the daemon, of which about 9 ms is starting the process (`nft -f /dev/null`
 * alone); the same transaction through libnftables took 1.4 ms. A network create, a network
 * rm, a service change and a published port each run one.
 *
 * A libnftables context talks to the kernel over a netlink socket it opens when it is made,
 * and a socket stays in the network namespace of the thread that created it (setns.ts). So
 * a context for a namespace is made inside it ({@linkcode withNetns}, synchronous), used
 * from any thread, and freed after the one call: no socket outlives its call (a kept one
 * would keep a deleted sandbox's namespace alive). Calls run one at a time, off the
 * JavaScript thread (`nonblocking`), since the library does not promise thread safety.
 *
 * Only the `nft` forms cnm uses are taken here (`-f FILE`, the runner's batch file, and
 * `list ...`, with `-j` and `-a`); anything else, or a machine without the library or
 * without FFI, runs the `nft` command as before. Errors read as the command's do
 * (`Error: ...` with the offending line), from the library's error buffer.
 * @module
 */
import { withNetns } from "./setns.ts";

const symbols = {
  nft_ctx_new: { parameters: ["u32"], result: "pointer" },
  nft_ctx_free: { parameters: ["pointer"], result: "void", nonblocking: true },
  nft_ctx_output_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  nft_ctx_buffer_output: { parameters: ["pointer"], result: "i32" },
  nft_ctx_buffer_error: { parameters: ["pointer"], result: "i32" },
  nft_ctx_get_output_buffer: { parameters: ["pointer"], result: "pointer" },
  nft_ctx_get_error_buffer: { parameters: ["pointer"], result: "pointer" },
  nft_run_cmd_from_buffer: {
    parameters: ["pointer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  nft_run_cmd_from_filename: {
    parameters: ["pointer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
} as const;

type Lib = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** `NFT_CTX_OUTPUT_HANDLE` and `NFT_CTX_OUTPUT_JSON` from <nftables/libnftables.h>. */
const OUTPUT_FLAGS: Record<string, number> = { "-a": 1 << 3, "-j": 1 << 4 };

let lib: Lib | null | undefined;

/** The library, opened once; null when it cannot be (not installed, no FFI permission). */
function library(): Lib | null {
  if (lib !== undefined) return lib;
  try {
    lib = Deno.dlopen("libnftables.so.1", symbols).symbols;
  } catch {
    lib = null;
  }
  return lib;
}

/** What an in-process call printed and how it ended, as a command's result. */
export interface NftResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The library's input for an `nft` argv (`argv[0] === "nft"`), or undefined when the form
 * is not one taken here: `{ flags, file }` for `nft [-j] [-a] -f FILE` (a file, so that an
 * error names the line it is on, as the command's does), `{ flags, text }` for
 * `nft [-j] [-a] list ...`.
 */
export function nftCall(
  argv: string[],
): { flags: number; file?: string; text?: string } | undefined {
  if (argv[0] !== "nft") return undefined;
  let flags = 0;
  let i = 1;
  for (; i < argv.length && argv[i].startsWith("-"); i++) {
    const f = OUTPUT_FLAGS[argv[i]];
    if (f !== undefined) {
      flags |= f;
      continue;
    }
    if (argv[i] === "-f" && i + 2 === argv.length && argv[i + 1] !== "-") {
      return { flags, file: argv[i + 1] };
    }
    return undefined;
  }
  const rest = argv.slice(i);
  if (rest[0] !== "list") return undefined;
  return { flags, text: rest.join(" ") };
}

const encoder = new TextEncoder();

function text(p: Deno.PointerValue): string {
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

/** Contexts being freed. */
const pending = new Set<Promise<void>>();

/** Resolves once every context of an earlier call is freed (its socket closed). */
export async function nftSettled(): Promise<void> {
  while (pending.size > 0) await Promise.all([...pending]);
}

/** The tail of the queue of calls: one at a time. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Runs an `nft` argv through libnftables inside the namespace at `netnsPath` (undefined:
 * this process's own); undefined when this argv or this machine needs the `nft` command.
 */
export function runNftInProcess(
  netnsPath: string | undefined,
  argv: string[],
): Promise<NftResult> | undefined {
  const call = nftCall(argv);
  const l = call && library();
  if (!call || !l) return undefined;
  const run = async (): Promise<NftResult> => {
    const ctx = netnsPath === undefined
      ? l.nft_ctx_new(0)
      : withNetns(netnsPath, () => l.nft_ctx_new(0));
    if (ctx === null) return { code: 1, stdout: "", stderr: "libnftables: nft_ctx_new failed" };
    try {
      l.nft_ctx_output_set_flags(ctx, call.flags);
      l.nft_ctx_buffer_output(ctx);
      l.nft_ctx_buffer_error(ctx);
      const rc = call.file !== undefined
        ? await l.nft_run_cmd_from_filename(ctx, encoder.encode(call.file + "\0"))
        : await l.nft_run_cmd_from_buffer(ctx, encoder.encode(call.text + "\0"));
      return {
        code: rc === 0 ? 0 : 1,
        stdout: text(l.nft_ctx_get_output_buffer(ctx)),
        stderr: text(l.nft_ctx_get_error_buffer(ctx)),
      };
    } finally {
      // Freeing closes the context's socket, and the kernel makes that close wait for the
      // deferred destruction of what the transaction deleted (an RCU grace period: 4-20 ms
      // measured after a network's chains were removed; an `nft` process pays it at exit).
      // The transaction is committed by then, so the free happens off the caller's path.
      const freed = l.nft_ctx_free(ctx).catch(() => {});
      pending.add(freed);
      freed.finally(() => pending.delete(freed));
    }
  };
  const result = queue.then(run, run);
  queue = result.catch(() => {});
  return result;
}
