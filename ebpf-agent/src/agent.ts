/**
 * The eBPF agent: loads bpf/sockmap.bpf.c, tells it which addresses are this node's, attaches the
 * sockops program to a cgroup v2 directory and the sk_msg program to the sockhash, both through
 * bpf_links. Nothing is pinned: the links and maps live exactly as long as this process, so a crash
 * or SIGKILL detaches everything and connections carry on over plain TCP.
 */
import { endianness, networkInterfaces } from "node:os";
import { ensureBuilt } from "./build.ts";
import { type BpfObject, loadNative, type NativeBpf } from "./native.ts";

/** Order of `enum counter` in bpf/sockmap.bpf.c. */
export const COUNTERS = [
  ["sockets_inserted", "sockets put in the sockhash (both ends of a same-node connection count)"],
  ["sockets_not_local", "established sockets skipped because the peer address is not this node's"],
  ["sockets_port_filtered", "established sockets skipped by the port filter"],
  ["sockets_insert_failed", "sockets that could not be put in the sockhash"],
  ["messages", "sendmsg calls seen on sockets in the sockhash"],
  ["redirects", "messages handed straight to the peer socket"],
  ["redirected_bytes", "bytes handed straight to the peer socket"],
  ["pass_no_peer", "messages sent over TCP because the peer socket is not in the sockhash"],
  ["pass_over_budget", "messages sent over TCP because the peer's redirect queue was at its budget"],
  ["pass_tcp_backlog", "messages sent over TCP because earlier TCP bytes were still unread"],
  ["pass_no_queue_info", "messages sent over TCP because the kernel does not expose the peer's queue"],
  ["passed_bytes", "bytes of messages sent over TCP"],
  ["pass_detached", "messages sent over TCP by sockets that outlived the agent's attachment"],
] as const;
export type CounterName = (typeof COUNTERS)[number][0];
export type Counters = Record<CounterName, bigint>;

const CONFIG_PORT_FILTER = 1;
export const DEFAULT_QUEUE_BUDGET = 1024 * 1024;

export interface AgentOptions {
  /** cgroup v2 directory whose sockets (created after attaching) may be short-circuited. */
  cgroupPath: string;
  /** CIDRs that are this node: a connection is redirected only when its peer address is in them. */
  localAddresses?: string[];
  /** Only sockets whose local or remote port is listed (default: every port). */
  ports?: number[];
  /** Bytes that may wait unread in a peer's redirect queue before messages fall back to TCP. */
  queueBudgetBytes?: number;
}

export interface Agent {
  readonly cgroupPath: string;
  readonly localAddresses: string[];
  counters(): Counters;
  /** Prometheus text exposition of the counters. */
  metrics(): string;
  /** Detaches both programs (idempotent). */
  close(): void;
}

/** Loopback plus every address on this node's interfaces. */
export function nodeAddresses(): string[] {
  const cidrs = new Set(["127.0.0.0/8", "::1/128"]);
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) cidrs.add(`${a.address.split("%")[0]}/${a.family === "IPv4" ? 32 : 128}`);
  return [...cidrs];
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  if (endianness() === "LE") b.writeUInt32LE(n);
  else b.writeUInt32BE(n);
  return b;
}

/** A 16-byte address, IPv4 in its v4-mapped form, as the BPF programs key sockets. */
export function ip16(address: string): Buffer {
  const out = Buffer.alloc(16);
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(address);
  if (v4) {
    out[10] = 0xff;
    out[11] = 0xff;
    for (let i = 0; i < 4; i++) {
      const octet = Number(v4[i + 1]);
      if (octet > 255) throw new Error(`not an IP address: ${address}`);
      out[12 + i] = octet;
    }
    return out;
  }
  const [head = "", tail, ...rest] = address.split("::");
  if (rest.length || !/^[0-9a-f:]*$/i.test(address)) throw new Error(`not an IP address: ${address}`);
  const groups = (s: string) => (s ? s.split(":") : []);
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const missing = 8 - front.length - back.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) throw new Error(`not an IP address: ${address}`);
  const all = [...front, ...Array<string>(missing).fill("0"), ...back];
  all.forEach((g, i) => {
    if (g.length < 1 || g.length > 4) throw new Error(`not an IP address: ${address}`);
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

/** LPM trie key: host-order prefix length, then the 16-byte address. */
export function prefixKey(cidr: string): Buffer {
  const [address = "", bits] = cidr.split("/");
  const isV4 = address.includes(".");
  const max = isV4 ? 32 : 128;
  const length = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(length) || length < 0 || length > max)
    throw new Error(`bad prefix length in ${cidr}`);
  return Buffer.concat([u32(isV4 ? 96 + length : length), ip16(address)]);
}

export async function startAgent(options: AgentOptions): Promise<Agent> {
  const { bpfObject, addon } = await ensureBuilt();
  const native: NativeBpf = loadNative(addon);
  const obj: BpfObject = native.openObject(bpfObject);
  const localAddresses = options.localAddresses ?? nodeAddresses();
  for (const cidr of localAddresses)
    native.mapUpdate(obj, "agw_local_addrs", prefixKey(cidr), Buffer.from([1]));
  for (const port of options.ports ?? []) native.mapUpdate(obj, "agw_ports", u32(port), Buffer.from([1]));
  native.mapUpdate(
    obj,
    "agw_config",
    u32(0),
    Buffer.concat([
      u32(options.queueBudgetBytes ?? DEFAULT_QUEUE_BUDGET),
      u32(options.ports?.length ? CONFIG_PORT_FILTER : 0),
    ]),
  );

  // sk_msg first: a socket that sockops inserts must already find its verdict program on the map
  const links: number[] = [];
  try {
    links.push(native.attachSkMsg(obj, "agw_sk_msg", "agw_socks"));
    links.push(native.attachCgroup(obj, "agw_sockops", options.cgroupPath));
  } catch (e) {
    for (const fd of links) native.detach(fd);
    throw e;
  }

  const counters = (): Counters => {
    const out = {} as Counters;
    COUNTERS.forEach(([name], index) => {
      const perCpu = native.mapLookup(obj, "agw_counters", u32(index));
      let sum = 0n;
      for (let off = 0; perCpu && off + 8 <= perCpu.length; off += 8)
        sum += endianness() === "LE" ? perCpu.readBigUInt64LE(off) : perCpu.readBigUInt64BE(off);
      out[name] = sum;
    });
    return out;
  };

  return {
    cgroupPath: options.cgroupPath,
    localAddresses,
    counters,
    metrics() {
      const values = counters();
      return COUNTERS.map(
        ([name, help]) =>
          `# HELP agw_ebpf_${name}_total ${help}\n# TYPE agw_ebpf_${name}_total counter\nagw_ebpf_${name}_total ${values[name]}\n`,
      ).join("");
    },
    close() {
      while (links.length) native.detach(links.pop() as number);
    },
  };
}
