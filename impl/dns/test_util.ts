/**
 * Test-only helpers for the DNS tests: queries encoded and replies decoded with dns-packet,
 * with a loose decoded type (the @types package types answers too narrowly for tests).
 * @module
 */
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import type { DnsEndpoint } from "./records.ts";

export { dnsPacket };

/** A decoded reply, loosely typed. */
export interface Decoded {
  id: number;
  type: "query" | "response";
  rcode: string;
  flag_aa: boolean;
  flag_tc: boolean;
  flag_rd: boolean;
  flag_ra: boolean;
  flag_cd: boolean;
  questions: { name: string; type: string; class: string }[];
  answers: { name: string; type: string; ttl: number; data: any }[];
  additionals: { name: string; type: string; data?: any }[];
}

/** Encodes a packet with dns-packet. */
export function enc(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

/** Decodes a message with dns-packet. */
export function dec(b: Uint8Array): Decoded {
  return dnsPacket.decode(Buffer.from(b)) as unknown as Decoded;
}

/** A query for `name` and `type`, with optional EDNS0 size and ID. */
export function query(
  name: string,
  type: string,
  opts: { id?: number; edns?: number; rd?: boolean } = {},
): Uint8Array {
  return enc({
    type: "query",
    id: opts.id ?? Math.floor(Math.random() * 65536),
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: "IN" }],
    additionals: opts.edns === undefined
      ? []
      : [{ type: "OPT", name: ".", udpPayloadSize: opts.edns } as never],
  });
}

/** A DNS endpoint for tests: names default to the sandbox and network ids. */
export function ep(
  over: Partial<DnsEndpoint> & { sandboxId: string; networkId: string },
): DnsEndpoint {
  return {
    sandboxName: over.sandboxId,
    hostname: over.sandboxId,
    networkName: over.networkId,
    internal: false,
    aliases: [],
    ...over,
  };
}
