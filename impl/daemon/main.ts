/**
 * Entry point of the daemon alone: `deno run -A --unstable-net impl/daemon/main.ts [FLAGS]`
 * is `cnm daemon [FLAGS]`.
 * @module
 */
import { runDaemon } from "./daemon.ts";

if (import.meta.main) Deno.exit(await runDaemon(Deno.args));
