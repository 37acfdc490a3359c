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

/** A short quoted preview of a user-given string for messages: its first 20 characters. */
export function quotedPreview(s: string): string {
  const head = Array.from(s.slice(0, 40)).slice(0, 20).join("");
  return JSON.stringify(head.length < s.length ? head + "..." : s);
}

/** The message of a name longer than {@linkcode MAX_NAME}, or undefined when it is not. */
export function nameTooLong(kind: string, name: string): string | undefined {
  if (name.length <= MAX_NAME) return undefined;
  return `Invalid ${kind} name ${
    quotedPreview(name)
  }: longer than ${MAX_NAME} characters (${name.length})`;
}

/** Throws a one-line InvalidArgumentError when `name` is not a valid object name. */
export function validateName(kind: string, name: unknown): asserts name is string {
  if (typeof name !== "string" || name === "") {
    throw new InvalidArgumentError(`Invalid ${kind} name: the name is empty`);
  }
  const tooLong = nameTooLong(kind, name);
  if (tooLong) throw new InvalidArgumentError(tooLong);
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
