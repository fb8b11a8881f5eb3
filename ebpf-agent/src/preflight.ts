/** What the agent needs from this machine, each missing piece named with how to get it. */
import { existsSync, readFileSync, statfsSync } from "node:fs";
import { BuildError, type BuildOutputs, ensureBuilt } from "./build.ts";
import { loadNative } from "./native.ts";

const CGROUP2_SUPER_MAGIC = 0x63677270;
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/** The first cgroup v2 mount (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones). */
export function cgroup2Root(): string | undefined {
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n");
  return mounts.map((line) => line.split(" ")).find((f) => f[2] === "cgroup2")?.[1];
}

function effectiveCapabilities(): bigint {
  const line = readFileSync("/proc/self/status", "utf8")
    .split("\n")
    .find((l) => l.startsWith("CapEff:"));
  return line ? BigInt(`0x${line.slice(7).trim()}`) : 0n;
}

export interface Preflight {
  problems: string[];
  build?: BuildOutputs;
}

export async function preflight(cgroupPath: string): Promise<Preflight> {
  const problems: string[] = [];
  const caps = effectiveCapabilities();
  const has = (cap: bigint) => (caps & (1n << cap)) !== 0n;
  if (!has(CAP_SYS_ADMIN) && !(has(CAP_BPF) && has(CAP_NET_ADMIN) && has(CAP_PERFMON)))
    problems.push(
      "capabilities: needs CAP_SYS_ADMIN, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (run as root or grant them)",
    );
  if (!existsSync("/sys/kernel/btf/vmlinux"))
    problems.push("kernel BTF: /sys/kernel/btf/vmlinux is missing (needs CONFIG_DEBUG_INFO_BTF=y)");
  if (!existsSync(cgroupPath)) problems.push(`cgroup: ${cgroupPath} does not exist`);
  else if (statfsSync(cgroupPath).type !== CGROUP2_SUPER_MAGIC)
    problems.push(
      `cgroup: ${cgroupPath} is not a cgroup v2 directory (cgroup2 is at ${cgroup2Root() ?? "nowhere"})`,
    );
  if (problems.length) return { problems };

  let build: BuildOutputs;
  try {
    build = await ensureBuilt();
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    return { problems: [`build: ${e.message}`] };
  }
  if (!loadNative(build.addon).kernelHasMember("sk_psock", "msg_tot_len"))
    problems.push(
      "kernel: struct sk_psock has no msg_tot_len, so a peer's redirect queue cannot be bounded (needs a newer kernel)",
    );
  return { problems, build };
}
