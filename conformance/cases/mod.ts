/**
 * The catalogue: every case, in the order they are listed and run.
 * @module
 */
import { connCases } from "./conn.ts";
import { dnsCases } from "./dns.ts";
import type { Case } from "./framework.ts";
import { ipamCases } from "./ipam.ts";
import { ipv6Cases } from "./ipv6.ts";
import { lbCases } from "./lb.ts";
import { lifecycleCases } from "./lifecycle.ts";
import { macvlanCases } from "./macvlan.ts";
import { overlayCases } from "./overlay.ts";
import { portCases } from "./port.ts";

export type { Case } from "./framework.ts";

/** Every built-in case. */
export const CATALOGUE: Case[] = [
  ...connCases,
  ...ipv6Cases,
  ...ipamCases,
  ...lifecycleCases,
  ...portCases,
  ...dnsCases,
  ...lbCases,
  ...macvlanCases,
  ...overlayCases,
];
