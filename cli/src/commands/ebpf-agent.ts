/** `agw ebpf-agent`: same-node TCP short-circuited with sockmap eBPF (root). */
import { parseArgs } from "node:util";
import { type Command, HELP_OPTION, hostPort, UsageError } from "./common.ts";

const options = {
  cgroup: { type: "string" },
  "local-address": { type: "string", multiple: true },
  port: { type: "string", multiple: true },
  "queue-budget": { type: "string" },
  metrics: { type: "string" },
  "inert-if-unsupported": { type: "boolean" },
  "admin-allow-host": { type: "string", multiple: true },
  ...HELP_OPTION,
} as const;

export const ebpfAgent: Command = {
  usage: `Usage: agw ebpf-agent [options]

Data a process sends to a peer socket on this node goes straight to the peer's receive queue instead
of through the TCP/IP stack and lo. Opt-in and scoped to a cgroup v2 directory; connections it does not
handle stay plain TCP, and when it stops (even killed) everything it attached goes with it.

  --cgroup PATH            cgroup v2 directory whose new sockets are eligible (default: the cgroup2 root)
  --local-address CIDR     an address of this node (repeatable; default: loopback and every interface address)
  --port N                 only connections with this local or remote port (repeatable; default: any)
  --queue-budget BYTES     bytes a peer may leave unread before messages fall back to TCP (default 1048576)
  --metrics ADDR:PORT      Prometheus /metrics, /ready, /status (default 127.0.0.1:9903)
  --inert-if-unsupported   when this machine cannot run it, serve metrics (agw_ebpf_attached 0) instead of exiting 1
  --admin-allow-host NAME  also answer metrics requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const { runAgentCommand } = await import("@agw/ebpf-agent/cli");
    return runAgentCommand({
      cgroup: values.cgroup,
      localAddresses: values["local-address"],
      ports: values.port,
      queueBudget: values["queue-budget"],
      metrics: hostPort(values.metrics, "127.0.0.1:9903", "--metrics"),
      inertIfUnsupported: values["inert-if-unsupported"],
      allowedHosts: values["admin-allow-host"],
    }).catch((e: unknown) => {
      throw e instanceof RangeError ? new UsageError(e.message) : e;
    });
  },
};
