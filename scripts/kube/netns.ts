/**
 * Upstream "Pods" for the Kubernetes tests. EndpointSlices refuse loopback addresses, so the
 * upstreams live in a network namespace the test creates, reached over a veth pair on
 * 198.18.N.0/24 (the benchmarking range): real addresses on a real link, all on this machine.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";

export function netnsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return "creating a network namespace needs root";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "iproute2 (ip) is not installed";
  }
  return undefined;
}

const SERVER = `
const http = require("node:http");
const hosts = process.argv.slice(1);
let port = 0;
(async () => {
  for (const host of hosts) {
    const server = http.createServer((_req, res) => res.end(host));
    await new Promise((resolve) => server.listen(port, host, resolve));
    port = server.address().port;
  }
  console.log(port);
})();
`;

export interface PodNetwork {
  /** Addresses inside the namespace, e.g. 198.18.7.2 … */
  addresses: string[];
  /** Starts one process answering on every given address (its own address as the body). */
  serve(hosts: string[]): Promise<{ port: number; stop(): void }>;
  close(): void;
}

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export function createPodNetwork(count: number): PodNetwork {
  const id = `${process.pid % 100_000}${Math.floor(Math.random() * 10)}`;
  const ns = `agwk${id}`;
  const hostIf = `agwk${id}h`;
  const nsIf = `agwk${id}n`;
  const subnet = `198.18.${1 + Math.floor(Math.random() * 250)}`;
  const children = new Set<ChildProcess>();
  ip(["netns", "add", ns]);
  try {
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns]);
    ip(["addr", "add", `${subnet}.1/24`, "dev", hostIf]);
    ip(["link", "set", hostIf, "up"]);
    ip(["-n", ns, "link", "set", "lo", "up"]);
    ip(["-n", ns, "link", "set", nsIf, "up"]);
  } catch (e) {
    ip(["netns", "del", ns]);
    throw e;
  }
  const addresses = Array.from({ length: count }, (_, i) => `${subnet}.${i + 2}`);
  for (const a of addresses) ip(["-n", ns, "addr", "add", `${a}/24`, "dev", nsIf]);

  return {
    addresses,
    serve(hosts) {
      const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", SERVER, ...hosts], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      children.add(child);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("upstream did not start in 10 s")), 10_000);
        child.once("exit", (code) => reject(new Error(`upstream exited with ${code}`)));
        child.stdout?.once("data", (d: Buffer) => {
          clearTimeout(timer);
          resolve({
            port: Number(d.toString().trim()),
            stop: () => {
              child.kill();
              children.delete(child);
            },
          });
        });
      });
    },
    close() {
      for (const c of children) c.kill("SIGKILL");
      try {
        ip(["netns", "del", ns]);
      } catch {}
    },
  };
}
