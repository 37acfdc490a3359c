/**
 * The journal: an operation writes its intent to the store before its first kernel call,
 * and the transaction that commits the operation deletes it (research/libnetwork.md §1.5:
 * libnetwork marks a network `inDelete` for the same reason). A kill -9 anywhere in between
 * leaves the intent, which names every kernel object the operation may have made; on the
 * next start restore() takes a network create back (./restore.ts) and reconcile
 * ({@linkcode settleEndpointIntents}) takes a connect back and finishes a disconnect or a
 * sandbox removal, so each happened wholly or not at all.
 * Network removal keeps libnetwork's own marker (`inDelete`, finished by restore()).
 * @module
 */
import type { RetiredLinks } from "../kernel/kernel.ts";
import type { UndoStack } from "../kernel/undo.ts";
import type { IntentRecord } from "../model/objects.ts";
import { type ControllerContext, networksById } from "./context.ts";
import type { ReconcileItem } from "./reconcile.ts";
import type { Store } from "../store/mod.ts";

/** Writes an intent (one transaction); `undo`, when given, forgets it on a failure. */
export function beginIntent(
  ctx: ControllerContext,
  intent: IntentRecord,
  undo?: UndoStack,
): void {
  ctx.store.transaction((tx) => tx.put("intent", intent));
  undo?.push(`forget intent ${intent.id}`, () => forgetIntent(ctx, intent.id));
}

/** Deletes an intent on its own (the operation failed and was undone in process). */
export function forgetIntent(ctx: ControllerContext, id: string): void {
  ctx.store.transaction((tx) => tx.delete("intent", id));
}

/**
 * The store's record of the links the kernel deletes in the background
 * (Kernel.deleteLinkLater): one `link-delete` intent each, written before the call returns
 * and deleted once the link is gone.
 */
export function retiredLinksJournal(store: Store): RetiredLinks {
  const id = (netns: string | undefined, link: string) => `link-delete:${netns ?? ""}/${link}`;
  return {
    add(netns, link) {
      store.transaction((tx) =>
        tx.put("intent", { id: id(netns, link), op: "link-delete", netns, link })
      );
    },
    remove(netns, link) {
      store.transaction((tx) => tx.delete("intent", id(netns, link)));
    },
    list() {
      return store.list("intent").flatMap((i) =>
        i.op === "link-delete" ? [{ netns: i.netns, link: i.link }] : []
      );
    },
  };
}

/** What settling one intent did, for the reconcile report. */
export interface SettledIntent {
  list: "removed" | "dropped" | "failed";
  item: ReconcileItem;
}

/** The steps {@linkcode settleEndpointIntents} needs from the rooms (no import cycle). */
export interface SettleSteps {
  /** Takes a cut-short connect's endpoint out of the kernel (Leave, Delete). */
  undoConnect(endpoint: IntentRecord & { op: "connect" }): Promise<void>;
  /** Finishes a disconnect of a stored endpoint. */
  finishDisconnect(endpointId: string): Promise<void>;
  /** Finishes the removal of a stored sandbox. */
  finishSandboxRemoval(sandboxId: string): Promise<void>;
}

/**
 * Settles the cut-short connects (taken back), disconnects and sandbox removals (finished).
 * Reconcile runs it once the drivers know their networks and before they look for orphans.
 */
export async function settleEndpointIntents(
  ctx: ControllerContext,
  steps: SettleSteps,
): Promise<SettledIntent[]> {
  const out: SettledIntent[] = [];
  const nets = networksById(ctx);
  const netName = (id: string) => nets.get(id)?.name ?? id.slice(0, 12);
  for (const intent of ctx.store.list("intent")) {
    let item: ReconcileItem;
    let list: SettledIntent["list"];
    let work: () => Promise<void>;
    if (intent.op === "connect") {
      const ep = intent.endpoint;
      const sb = ep.sandboxId ? ctx.store.get("sandbox", ep.sandboxId) : undefined;
      item = {
        kind: "endpoint",
        name: `${sb?.name ?? ep.name}/${netName(ep.networkId)}`,
        reason: "its connect was cut short: taken back",
      };
      list = "removed";
      work = () => steps.undoConnect(intent);
    } else if (intent.op === "disconnect") {
      const ep = ctx.store.get("endpoint", intent.endpointId);
      item = {
        kind: "endpoint",
        name: ep ? `${ep.name}/${netName(ep.networkId)}` : intent.endpointId.slice(0, 12),
        reason: "its disconnect was cut short: finished",
      };
      list = "dropped";
      work = () => ep ? steps.finishDisconnect(ep.id) : Promise.resolve();
    } else if (intent.op === "sandbox-rm") {
      const sb = ctx.store.get("sandbox", intent.sandboxId);
      item = {
        kind: "sandbox",
        name: sb?.name ?? intent.sandboxId.slice(0, 12),
        reason: "its removal was cut short: finished",
      };
      list = "dropped";
      work = () => sb ? steps.finishSandboxRemoval(sb.id) : Promise.resolve();
    } else {
      continue;
    }
    try {
      await work();
      forgetIntent(ctx, intent.id);
      out.push({ list, item });
    } catch (err) {
      out.push({ list: "failed", item: { ...item, reason: `${item.reason}: ${message(err)}` } });
    }
  }
  return out;
}

/** An error's message. */
export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
