/**
 * Declarative topologies: the YAML format of `fixtures/`, its validation, and the
 * reachability and egress a topology implies.
 * @module
 */
export {
  type Attachment,
  type EgressExpectation,
  type EgressRef,
  ENABLE_ICC,
  type EndpointRef,
  type Expectation,
  iccEnabled,
  impliedEgress,
  impliedReachability,
  isEgressExpectation,
  loadTopology,
  OUTSIDE,
  parseTopology,
  type Topology,
  TopologyError,
  type TopologyNetwork,
  type TopologySandbox,
} from "./schema.ts";
export {
  type Cidr,
  contains,
  type IpAddr,
  overlaps,
  parseAddr,
  parseCidr,
  parseIp,
  within,
} from "./cidr.ts";
