/** `agw ebpf-agent`: checks the machine, attaches, serves metrics, detaches on SIGTERM/SIGINT. */
import { type AdminServer, startAdminServer } from "@agw/core/admin-http";
import { type Agent, DEFAULT_QUEUE_BUDGET, startAgent } from "./agent.ts";
import { cgroup2Root, preflight } from "./preflight.ts";

export interface AgentCommandOptions {
  cgroup?: string | undefined;
  localAddresses?: string[] | undefined;
  ports?: string[] | undefined;
  queueBudget?: string | undefined;
  metrics: { host: string; port: number };
  inertIfUnsupported?: boolean | undefined;
  /** Host names /metrics answers besides IP addresses, localhost and its listen address. */
  allowedHosts?: readonly string[] | undefined;
}

function positiveInteger(text: string, flag: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new RangeError(`${flag}: expected an integer 0..${max}, got "${text}"`);
  return n;
}

/** Runs until signalled; resolves with the exit code when it should exit now (1: cannot run). */
export async function runAgentCommand(options: AgentCommandOptions): Promise<number> {
  const cgroupPath = options.cgroup ?? cgroup2Root();
  const ports = (options.ports ?? []).map((p) => positiveInteger(p, "--port", 65535));
  const queueBudgetBytes = options.queueBudget
    ? positiveInteger(options.queueBudget, "--queue-budget", 0xffffffff)
    : DEFAULT_QUEUE_BUDGET;
  const { problems } = cgroupPath
    ? await preflight(cgroupPath)
    : { problems: ["cgroup: no cgroup2 file system is mounted (mount -t cgroup2 none /sys/fs/cgroup)"] };

  let agent: Agent | undefined;
  if (!problems.length && cgroupPath) {
    try {
      agent = await startAgent({
        cgroupPath,
        ports,
        queueBudgetBytes,
        ...(options.localAddresses ? { localAddresses: options.localAddresses } : {}),
      });
    } catch (e) {
      problems.push(`attach: ${(e as Error).message}`);
    }
  }
  for (const p of problems) console.error(`agw ebpf-agent: cannot run: ${p}`);
  if (problems.length && !options.inertIfUnsupported) return 1;

  const admin: AdminServer = await startAdminServer(
    options.metrics.host,
    options.metrics.port,
    {
      "/metrics": () => ({
        body: `# HELP agw_ebpf_attached 1 when the programs are attached\n# TYPE agw_ebpf_attached gauge\nagw_ebpf_attached ${agent ? 1 : 0}\n${agent?.metrics() ?? ""}`,
      }),
      "/ready": () => ({ status: agent ? 200 : 503, body: { attached: Boolean(agent), problems } }),
      "/status": () => ({
        body: {
          attached: Boolean(agent),
          problems,
          cgroup: cgroupPath,
          localAddresses: agent?.localAddresses,
          ports,
          queueBudgetBytes,
          counters: agent
            ? Object.fromEntries(Object.entries(agent.counters()).map(([k, v]) => [k, Number(v)]))
            : {},
        },
      }),
      // Read-only and meant to be scraped from the pod IP (deploy/ebpf-agent/daemonset.yaml).
    },
    { allowRemote: true, allowedHosts: options.allowedHosts },
  );
  const metricsAt = `http://${admin.address.address}:${admin.address.port}/metrics`;
  console.log(
    agent
      ? `eBPF agent attached to cgroup ${cgroupPath} (local addresses ${agent.localAddresses.join(", ")}; queue budget ${queueBudgetBytes} bytes); metrics ${metricsAt}`
      : `eBPF agent inert (nothing attached); metrics ${metricsAt}`,
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    agent?.close();
    admin.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return -1;
}
