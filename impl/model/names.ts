/**
 * Names and ids: validation of user-given names and generation of Docker-style ids.
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** Object names: a letter or digit first, then letters, digits, `_`, `.`, `-` (Docker's rule). */
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/** Longest object name accepted (names end up in /etc/netns paths and logs). */
export const MAX_NAME = 64;
/** Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no `/`, `:` or whitespace. */
export const IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/;

/** Throws a one-line InvalidArgumentError when `name` is not a valid object name. */
export function validateName(kind: string, name: unknown): asserts name is string {
  if (typeof name !== "string" || name === "") {
    throw new InvalidArgumentError(`Invalid ${kind} name: the name is empty`);
  }
  if (name.length > MAX_NAME) {
    throw new InvalidArgumentError(
      `Invalid ${kind} name "${name.slice(0, 20)}...": longer than ${MAX_NAME} characters`,
    );
  }
  if (!NAME_RE.test(name)) {
    throw new InvalidArgumentError(
      `Invalid ${kind} name ${JSON.stringify(name)}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
    );
  }
}

/** Throws when `name` cannot be a Linux interface name. */
export function validateIfname(what: string, name: string): void {
  if (!IFNAME_RE.test(name) || name === "." || name === "..") {
    throw new InvalidArgumentError(
      `Invalid ${what} ${
        JSON.stringify(name)
      }: an interface name has 1 to 15 characters from [a-zA-Z0-9_.-]`,
    );
  }
}

/** A random 64-hex-digit id, as Docker's (`stringid.GenerateRandomID`). */
export function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A short random hex string of `n` digits. */
export function randomHex(n: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(n / 2)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, n);
}

/**
 * MAC for an endpoint: Docker 20.10 derives it from the IPv4 address, `02:42:` + the four
 * octets (`netutils.GenerateMACFromIP`, research/libnetwork.md §3.1 "Older releases");
 * random and locally administered when there is no IPv4 address.
 */
export function macFor(ipv4?: string): string {
  let bytes: number[];
  if (ipv4) {
    bytes = [0x02, 0x42, ...ipv4.split("/")[0].split(".").map(Number)];
  } else {
    bytes = Array.from(crypto.getRandomValues(new Uint8Array(6)));
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
  }
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}
