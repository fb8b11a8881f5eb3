export {
  type Agent,
  type AgentOptions,
  COUNTERS,
  type Counters,
  nodeAddresses,
  startAgent,
} from "./agent.ts";
export { BuildError, ensureBuilt } from "./build.ts";
export { cgroup2Root, preflight } from "./preflight.ts";
