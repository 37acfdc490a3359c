/**
 * TEST ONLY: the reference adapter, wrapped so that its teardown leaves three things behind
 * (a namespace carrying the host's prefix, a process in the host namespace, an nft table in
 * the host namespace), as a careless adapter would. conformance_test.ts asserts that the
 * suite's audit names each of them.
 * @module
 */
import createReferenceAdapter from "../conformance/adapters/reference.ts";
import type { AdapterOptions, Host, Implementation } from "../conformance/impl.ts";

/** The factory (`--impl testing/leaky_adapter.ts`). */
export default function createLeakyAdapter(opts: AdapterOptions): Implementation {
  const inner = createReferenceAdapter(opts);
  const hosts: Host[] = [];
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "name") return "leaky";
      if (prop === "addHost") {
        return async (h: Host) => {
          hosts.push(h);
          await target.addHost(h);
        };
      }
      if (prop === Symbol.asyncDispose) {
        return async () => {
          await target[Symbol.asyncDispose]();
          const h = hosts[0];
          await new Deno.Command("ip", { args: ["netns", "add", `${h.prefix}-leaked`] }).output();
          await new Deno.Command("nsenter", {
            args: [`--net=${h.netnsPath}`, "nft", "add", "table", "inet", "cnmt_leaky"],
          }).output();
          new Deno.Command("nsenter", {
            args: [`--net=${h.netnsPath}`, "sleep", "3600"],
            stdin: "null",
            stdout: "null",
            stderr: "null",
          }).spawn().unref();
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
