/**
 * The controller.
 * @module
 */
export * from "./controller.ts";
export { retiredLinksJournal } from "./journal.ts";
export type {
  DriverReconcileHook,
  ReconcileItem,
  ReconcileReport,
  StoredEndpointRef,
} from "./reconcile.ts";
