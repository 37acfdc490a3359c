/**
 * The daemon's HTTP+JSON API: a small router over the {@linkcode Controller}, with the nouns
 * networks, sandboxes and endpoints. Every request body is validated with zod (strict
 * objects: an unknown field is an error), and typed errors map to HTTP statuses as Docker's
 * API maps errdefs (400 invalid, 403 forbidden, 404 not found, 409 conflict).
 *
 * | Method and path                             | Does                         | Success        |
 * | ------------------------------------------- | ---------------------------- | -------------- |
 * | `GET /info`                                 | daemon facts                 | 200 info       |
 * | `GET /networks`                             | list networks                | 200 records    |
 * | `POST /networks`                            | create a network             | 201 record     |
 * | `GET /networks/{ref}`                       | inspect a network            | 200 view       |
 * | `DELETE /networks/{ref}`                    | remove a network             | 204            |
 * | `GET /networks/{ref}/endpoints`             | a network's endpoints        | 200 endpoints  |
 * | `POST /networks/{ref}/endpoints`            | connect a sandbox            | 201 endpoint   |
 * | `DELETE /networks/{ref}/endpoints/{sb}`     | disconnect a sandbox         | 204            |
 * | `GET /sandboxes`                            | list sandboxes (as views)    | 200 views      |
 * | `POST /sandboxes`                           | create a sandbox             | 201 record     |
 * | `GET /sandboxes/{ref}`                      | inspect a sandbox            | 200 view       |
 * | `DELETE /sandboxes/{ref}`                   | remove a sandbox             | 204            |
 * | `GET /services`                             | list services                | 200 records    |
 * | `POST /services`                            | create a service             | 201 record     |
 * | `GET /services/{ref}`                       | inspect a service            | 200 view       |
 * | `DELETE /services/{ref}`                    | remove a service             | 204            |
 * | `POST /services/{ref}/backends`             | add a backend `{sandbox}`    | 204            |
 * | `DELETE /services/{ref}/backends/{sb}`      | remove a backend             | 204            |
 *
 * Errors are `{ "message": string, "kind": ErrorKind }`.
 *
 * Limits: a request body is at most 1 MiB (413 beyond, read no further); a map of strings
 * (network labels and options) has at most 64 entries, keys of at most 128 bytes and values
 * of at most 4 KiB (UTF-8); names are at most 64 characters (`validateName`'s limit, checked
 * here too, so a refusal quotes a long name only in part). All of it is checked before the
 * controller is called: a refused request leaves nothing behind.
 * @module
 */
import { z } from "zod";
import type { Controller } from "../controller/controller.ts";
import { CnmError, type ErrorKind } from "../model/errors.ts";
import { mapProblem } from "../model/limits.ts";
import { MAX_NAME, nameTooLong, quotedPreview } from "../model/names.ts";

/** Facts about the daemon that `GET /info` reports. */
export interface DaemonInfo {
  /** cnm's version. */
  version: string;
  /** The host namespace the daemon serves; null = the root namespace. */
  hostNetns: string | null;
  /** Start of every name the daemon creates in shared places. */
  prefix: string;
  /** The daemon's process id. */
  pid: number;
  /** Registered network drivers; default: the controller's. */
  drivers?: string[];
}

/** An HTTP request handler. */
export type ApiHandler = (req: Request) => Promise<Response>;

/** Largest request body accepted by default, in bytes (1 MiB). */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Options of {@linkcode createApiHandler}. */
export interface ApiOptions {
  /** Largest request body accepted, in bytes; default {@linkcode MAX_BODY_BYTES}. */
  maxBodyBytes?: number;
}

/** Marks an issue whose message is complete as it is (see {@linkcode describeIssue}). */
const LIMIT = { limit: true };

/** An object name: at most {@linkcode MAX_NAME} characters (the rest is `validateName`'s). */
function objectName(kind: string) {
  return z.string().check((ctx) => {
    const message = nameTooLong(kind, ctx.value);
    if (message) ctx.issues.push({ code: "custom", message, input: ctx.value, params: LIMIT });
  });
}

/** A map of strings (`what`: "label", "option") within the limits of ../model/limits.ts. */
function stringMap(what: string) {
  return z.record(z.string(), z.string()).check((ctx) => {
    const message = mapProblem(what, ctx.value);
    if (message) ctx.issues.push({ code: "custom", message, input: ctx.value, params: LIMIT });
  });
}

/** Body of `POST /networks` (the flags of `cnm network create`). */
export const NetworkCreateBody = z.strictObject({
  name: objectName("network"),
  driver: z.string().optional(),
  subnet: z.string().optional(),
  gateway: z.string().optional(),
  ipRange: z.string().optional(),
  ipv6: z.boolean().optional(),
  ipv6Subnet: z.string().optional(),
  ipv6Gateway: z.string().optional(),
  internal: z.boolean().optional(),
  options: stringMap("option").optional(),
  labels: stringMap("label").optional(),
});
/** Body of `POST /networks`. */
export type NetworkCreateBody = z.infer<typeof NetworkCreateBody>;

/** Body of `POST /sandboxes`. */
export const SandboxCreateBody = z.strictObject({
  name: objectName("sandbox"),
  hostname: z.string().optional(),
});
/** Body of `POST /sandboxes`. */
export type SandboxCreateBody = z.infer<typeof SandboxCreateBody>;

/** Body of `POST /networks/{ref}/endpoints` (connect). */
export const ConnectBody = z.strictObject({
  sandbox: z.string(),
  ipv4: z.string().optional(),
  ipv6: z.string().optional(),
  aliases: z.array(objectName("alias")).optional(),
  /** Ports to publish; no host port (or 0) = an ephemeral one, protocol tcp by default. */
  publish: z.array(z.strictObject({
    hostIp: z.string().optional(),
    hostPort: z.number().int().optional(),
    containerPort: z.number().int(),
    protocol: z.enum(["tcp", "udp"]).optional(),
  })).optional(),
});
/** Body of `POST /networks/{ref}/endpoints`. */
export type ConnectBody = z.infer<typeof ConnectBody>;

/** Body of `POST /services` (the flags of `cnm service create`). */
export const ServiceCreateBody = z.strictObject({
  name: objectName("service"),
  network: z.string(),
  mode: z.string().optional(),
  ports: z.array(z.strictObject({ port: z.number(), protocol: z.string().optional() }))
    .optional(),
  affinity: z.string().optional(),
});
/** Body of `POST /services`. */
export type ServiceCreateBody = z.infer<typeof ServiceCreateBody>;

/** Body of `POST /services/{ref}/backends`. */
export const BackendBody = z.strictObject({ sandbox: z.string() });

/** The HTTP status of an error kind. */
export function statusOfKind(kind: ErrorKind | string): number {
  switch (kind) {
    case "invalid":
      return 400;
    case "forbidden":
      return 403;
    case "not-found":
      return 404;
    case "conflict":
      return 409;
    case "unsupported":
      return 501;
    case "unavailable":
      return 503;
    default:
      return 500;
  }
}

/** An error the router raises itself (bad route, bad body), with its status. */
class HttpError extends Error {
  constructor(readonly status: number, readonly kind: ErrorKind, message: string) {
    super(message);
  }
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function noContent(): Response {
  return new Response(null, { status: 204 });
}

/** One line: collapses whitespace (parser messages may quote the input). */
function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  switch (typeof v) {
    case "object":
      return "an object";
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return "a boolean";
    default:
      return typeof v;
  }
}

function expectedName(expected: string): string {
  switch (expected) {
    case "object":
    case "array":
      return `an ${expected}`;
    case "record":
      return "an object";
    case "int":
      return "an integer";
    default:
      return `a ${expected}`;
  }
}

function valueAt(body: unknown, path: PropertyKey[]): unknown {
  let v = body;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function fieldName(path: PropertyKey[]): string {
  return path.map((k) => typeof k === "number" ? `[${k}]` : String(k)).join(".").replace(
    /\.\[/g,
    "[",
  );
}

/** Turns the first zod issue into a one-line message naming the field. */
function describeIssue(issue: z.core.$ZodIssue, body: unknown): string {
  const path = issue.path;
  if (issue.code === "custom" && issue.params?.limit) return issue.message;
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => `"${fieldName([...path, k])}"`);
    return `unknown field${keys.length > 1 ? "s" : ""} ${keys.join(", ")} in the request body`;
  }
  if (issue.code === "invalid_type") {
    const got = valueAt(body, path);
    if (path.length === 0) return `the request body must be a JSON object, not ${typeName(got)}`;
    if (got === undefined) return `field "${fieldName(path)}" is required`;
    return `field "${fieldName(path)}" must be ${expectedName(issue.expected)}, not ${
      typeName(got)
    }`;
  }
  return path.length
    ? `field "${fieldName(path)}" is invalid: ${oneLine(issue.message)}`
    : oneLine(issue.message);
}

/**
 * Reads a body of at most `limit` bytes as UTF-8 text, chunk by chunk: a larger body is a 413
 * as soon as its Content-Length says so or its bytes pass the limit, and is read no further.
 */
async function readText(req: Request, limit: number, action: string): Promise<string> {
  const tooLarge = (size: string) =>
    new HttpError(413, "invalid", `${action}: the request body is ${size}, the limit is ${limit}`);
  const declared = req.headers.get("content-length")?.trim();
  if (declared && /^\d+$/.test(declared) && Number(declared) > limit) {
    throw tooLarge(`${declared} bytes`);
  }
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        throw new HttpError(400, "invalid", oneLine(`${action}: cannot read the body: ${message}`));
      }
      if (chunk.done) break;
      size += chunk.value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`more than ${limit} bytes`);
      }
      chunks.push(chunk.value);
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "invalid", "Invalid JSON body: the body is not UTF-8");
  }
}

/** Reads and validates a JSON body; `action` names the object ("Cannot create network "x""). */
async function readBody<T>(
  req: Request,
  limit: number,
  schema: z.ZodType<T>,
  action: (raw: unknown) => string,
): Promise<T> {
  const text = await readText(req, limit, action(undefined));
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const why = text.trim() === "" ? "the body is empty" : (err as Error).message;
    throw new HttpError(400, "invalid", oneLine(`Invalid JSON body: ${why}`));
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(
      400,
      "invalid",
      `${action(raw)}: ${describeIssue(parsed.error.issues[0], raw)}`,
    );
  }
  return parsed.data;
}

/**
 * ` "name"` when the raw body has a string field `key`, else "": escaped as JSON when it has
 * odd characters (the message stays one line), a preview when it is long.
 */
function quoted(raw: unknown, key: string): string {
  const v = valueAt(raw, [key]);
  if (typeof v !== "string") return "";
  if (v.length > MAX_NAME) return ` ${quotedPreview(v)}`;
  return /^[\x21-\x7e]*$/.test(v) ? ` "${v}"` : ` ${JSON.stringify(v)}`;
}

type Params = string[];
type RouteHandler = (req: Request, params: Params) => Promise<Response> | Response;
interface Route {
  pattern: string[];
  methods: Record<string, RouteHandler>;
}

function matchRoute(routes: Route[], segments: string[]): { route: Route; params: Params } | null {
  for (const route of routes) {
    if (route.pattern.length !== segments.length) continue;
    const params: Params = [];
    let ok = true;
    for (let i = 0; i < segments.length; i++) {
      const p = route.pattern[i];
      if (p === "*") params.push(segments[i]);
      else if (p !== segments[i]) {
        ok = false;
        break;
      }
    }
    if (ok) return { route, params };
  }
  return null;
}

/**
 * Creates the API handler for a controller. The controller serializes mutations, so the
 * handler may be called concurrently.
 */
export function createApiHandler(
  controller: Controller,
  info: DaemonInfo,
  options: ApiOptions = {},
): ApiHandler {
  const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
  // Networks made or removed on other hosts are read from the global store first; when it
  // is unreachable the list is this host's mirror (the operations that need it fail).
  const synced = () => controller.syncGlobal().catch(() => {});
  const routes: Route[] = [
    {
      pattern: ["info"],
      methods: {
        GET: () =>
          json(200, {
            version: info.version,
            hostNetns: info.hostNetns,
            prefix: info.prefix,
            pid: info.pid,
            drivers: info.drivers ?? controller.driverNames,
          }),
      },
    },
    {
      pattern: ["networks"],
      methods: {
        GET: async () => {
          await synced();
          return json(200, controller.listNetworks());
        },
        POST: async (req) => {
          const body = await readBody(
            req,
            limit,
            NetworkCreateBody,
            (raw) => `Cannot create network${quoted(raw, "name")}`,
          );
          return json(201, await controller.createNetwork(body));
        },
      },
    },
    {
      pattern: ["networks", "*"],
      methods: {
        GET: async (_req, [ref]) => {
          await synced();
          return json(200, controller.inspectNetwork(ref));
        },
        DELETE: async (_req, [ref]) => {
          await controller.removeNetwork(ref);
          return noContent();
        },
      },
    },
    {
      pattern: ["networks", "*", "endpoints"],
      methods: {
        GET: (_req, [ref]) => json(200, controller.inspectNetwork(ref).endpoints),
        POST: async (req, [ref]) => {
          const body = await readBody(
            req,
            limit,
            ConnectBody,
            (raw) => `Cannot connect sandbox${quoted(raw, "sandbox")} to network "${ref}"`,
          );
          const { sandbox, ...opts } = body;
          return json(201, await controller.connect(ref, sandbox, opts));
        },
      },
    },
    {
      pattern: ["networks", "*", "endpoints", "*"],
      methods: {
        DELETE: async (_req, [ref, sandbox]) => {
          await controller.disconnect(ref, sandbox);
          return noContent();
        },
      },
    },
    {
      pattern: ["sandboxes"],
      methods: {
        GET: () =>
          json(200, controller.listSandboxes().map((s) => controller.inspectSandbox(s.id))),
        POST: async (req) => {
          const body = await readBody(
            req,
            limit,
            SandboxCreateBody,
            (raw) => `Cannot create sandbox${quoted(raw, "name")}`,
          );
          return json(201, await controller.createSandbox(body));
        },
      },
    },
    {
      pattern: ["sandboxes", "*"],
      methods: {
        GET: (_req, [ref]) => json(200, controller.inspectSandbox(ref)),
        DELETE: async (_req, [ref]) => {
          await controller.removeSandbox(ref);
          return noContent();
        },
      },
    },
    // services (issue 8)
    {
      pattern: ["services"],
      methods: {
        GET: () => json(200, controller.listServices()),
        POST: async (req) => {
          const body = await readBody(
            req,
            limit,
            ServiceCreateBody,
            (raw) => `Cannot create service${quoted(raw, "name")}`,
          );
          return json(201, await controller.createService(body));
        },
      },
    },
    {
      pattern: ["services", "*"],
      methods: {
        GET: (_req, [ref]) => json(200, controller.inspectService(ref)),
        DELETE: async (_req, [ref]) => {
          await controller.removeService(ref);
          return noContent();
        },
      },
    },
    {
      pattern: ["services", "*", "backends"],
      methods: {
        POST: async (req, [ref]) => {
          const body = await readBody(
            req,
            limit,
            BackendBody,
            (raw) => `Cannot add sandbox${quoted(raw, "sandbox")} to service "${ref}"`,
          );
          await controller.addBackend(ref, body.sandbox);
          return noContent();
        },
      },
    },
    {
      pattern: ["services", "*", "backends", "*"],
      methods: {
        DELETE: async (_req, [ref, sandbox]) => {
          await controller.removeBackend(ref, sandbox);
          return noContent();
        },
      },
    },
  ];

  return async (req: Request): Promise<Response> => {
    try {
      const url = new URL(req.url);
      const raw = url.pathname.replace(/\/+$/, "").split("/").filter((s, i) => i > 0 || s);
      let segments: string[];
      try {
        segments = raw.map((s) => decodeURIComponent(s));
      } catch {
        throw new HttpError(400, "invalid", `Invalid path ${url.pathname}: bad percent-encoding`);
      }
      const hit = matchRoute(routes, segments);
      if (!hit || segments.some((s) => s === "")) {
        throw new HttpError(404, "not-found", `No such API route: ${req.method} ${url.pathname}`);
      }
      const handler = hit.route.methods[req.method];
      if (!handler) {
        const allowed = Object.keys(hit.route.methods).join(", ");
        return json(405, {
          message: `Method ${req.method} is not allowed on ${url.pathname} (allowed: ${allowed})`,
          kind: "invalid",
        }, { allow: allowed });
      }
      return await handler(req, hit.params);
    } catch (err) {
      return errorResponse(err);
    }
  };
}

/** The JSON error response of any thrown value. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) {
    return json(err.status, { message: oneLine(err.message), kind: err.kind });
  }
  if (err instanceof CnmError) {
    return json(statusOfKind(err.kind), { message: oneLine(err.message), kind: err.kind });
  }
  const message = err instanceof Error ? err.message : String(err);
  return json(500, { message: oneLine(`Internal error: ${message}`), kind: "internal" });
}
