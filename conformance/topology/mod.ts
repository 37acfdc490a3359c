/**
 * Declarative topologies: the YAML format of `fixtures/`, its validation, and the
 * reachability a topology implies.
 * @module
 */
export {
  type Attachment,
  ENABLE_ICC,
  type EndpointRef,
  type Expectation,
  iccEnabled,
  impliedReachability,
  loadTopology,
  parseTopology,
  type Topology,
  TopologyError,
  type TopologyNetwork,
  type TopologySandbox,
} from "./schema.ts";
export { type Cidr, contains, overlaps, parseCidr, parseIp, within } from "./cidr.ts";
