/**
 * Typed errors of the CNM model. Each kind mirrors one of libnetwork's error
 * categories (research/libnetwork.md §1.2: errdefs Forbidden/NotFound/InvalidParameter/Conflict,
 * mapped by Docker's API to 403/404/400/409). Messages name the action and the object:
 * `Cannot create network "web": subnet 10.1.0.0/16 overlaps network "db" (10.1.2.0/24)`.
 * @module
 */

/** The category of a {@linkcode CnmError}; also what an HTTP API maps to a status. */
export type ErrorKind =
  | "not-found"
  | "conflict"
  | "invalid"
  | "forbidden"
  | "unsupported"
  | "kernel"
  | "unavailable"
  | "internal";

/** Base class of every error the implementation throws on purpose. */
export class CnmError extends Error {
  /** What kind of failure this is. */
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.name = "CnmError";
  }
}

/** An object that was named does not exist (HTTP 404). */
export class NotFoundError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("not-found", message, options);
    this.name = "NotFoundError";
  }
}

/** The object already exists, e.g. a duplicate network name (HTTP 409). */
export class ConflictError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("conflict", message, options);
    this.name = "ConflictError";
  }
}

/** The request is malformed: a bad CIDR, an unknown option (HTTP 400). */
export class InvalidArgumentError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("invalid", message, options);
    this.name = "InvalidArgumentError";
  }
}

/** The request is well formed but not allowed in the current state (HTTP 403). */
export class ForbiddenError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("forbidden", message, options);
    this.name = "ForbiddenError";
  }
}

/** The implementation cannot do this on this machine (HTTP 501). */
export class UnsupportedError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("unsupported", message, options);
    this.name = "UnsupportedError";
  }
}

/** A service the operation needs (the global store) cannot be reached (HTTP 503). */
export class UnavailableError extends CnmError {
  constructor(message: string, options?: ErrorOptions) {
    super("unavailable", message, options);
    this.name = "UnavailableError";
  }
}

/** A kernel command (ip, nft, ...) failed. Carries the argv, exit code and stderr. */
export class KernelCommandError extends CnmError {
  readonly argv: string[];
  readonly code: number;
  readonly stderr: string;
  constructor(argv: string[], code: number, stderr: string, options?: ErrorOptions) {
    const detail = stderr.trim().split("\n").filter(Boolean).slice(-2).join("; ");
    super("kernel", `Command "${argv.join(" ")}" failed (exit ${code}): ${detail}`, options);
    this.name = "KernelCommandError";
    this.argv = argv;
    this.code = code;
    this.stderr = stderr;
  }
}

/** Prefixes an error's message with the action, keeping its kind: `Cannot X: <cause>`. */
export function withAction(action: string, err: unknown): CnmError {
  if (err instanceof CnmError) {
    if (err.message.startsWith("Cannot ")) return err;
    const wrapped = new CnmError(err.kind, `${action}: ${err.message}`, { cause: err });
    wrapped.name = err.name;
    return wrapped;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CnmError("internal", `${action}: ${message}`, { cause: err });
}
