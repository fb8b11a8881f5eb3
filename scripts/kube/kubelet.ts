/**
 * A stand-in kubelet for the Gateway API conformance harness (scripts/kube/conformance.ts): a TEST
 * HARNESS, not a kubelet. No image can be pulled here, so it runs the one image the suite needs,
 * the gateway-api echo backend (echo-basic, built from the Go module proxy), as a local process.
 *
 * It registers one Ready Node; binds every unscheduled Pod to it (the scheduler's job); runs each
 * Pod's containers in a network namespace of its own on a bridge (its own pod IP, 198.19.S.0/24),
 * with the downward-API environment (fieldRef metadata.name / metadata.namespace / status.podIP /
 * spec.nodeName) and literal env; reports the Pod Running and Ready once its first container port
 * (else 3000) accepts connections; and, when a Pod is deleted, stops it and confirms the deletion
 * (grace period 0). Any other image makes the Pod Failed, with the reason. Secret volumes are
 * written to files and bind-mounted at their mountPath; no other volumes, no probes but the port
 * check. Container output is kept (the last LOG_LINES lines of each) and served, as a kubelet's
 * container-logs endpoint (HTTPS on the bridge address, the port in the Node's daemonEndpoints), to
 * the API server's `pods/log` (`kubectl logs`, and the suite's mirror tests); `sinceTime` and
 * `tailLines` are honoured, nothing else. It polls the API server
 * (every 500 ms) instead of watching: simple, and enough for a test cluster. Root and `ip` needed.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { KubeClient } from "../../control-plane/src/providers/kubernetes/client.ts";

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  ports?: Array<{ containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

interface Volume {
  name: string;
  secret?: { secretName: string; items?: Array<{ key: string; path: string }> };
}

interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    deletionTimestamp?: string;
    creationTimestamp?: string;
  };
  spec: { nodeName?: string; containers: Container[]; volumes?: Volume[] };
  status?: { phase?: string };
}

interface Running {
  uid: string;
  namespace: string;
  name: string;
  netns: string;
  hostIf: string;
  ip: string;
  procs: ChildProcess[];
  ready: boolean;
  failed?: string;
  /** Where its Secret volumes were written. */
  dir: string;
  /** Each container's output lines, with the time each arrived (the last LOG_LINES). */
  logs: Map<string, Array<{ at: number; line: string }>>;
}

const LOG_LINES = 5_000;

/** Keeps a stream's lines, each with its arrival time, the last LOG_LINES of them. */
function keepLines(stream: NodeJS.ReadableStream | null, into: Array<{ at: number; line: string }>): void {
  let partial = "";
  stream?.on("data", (d: Buffer) => {
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop() ?? "";
    const at = Date.now();
    for (const line of parts) into.push({ at, line });
    if (into.length > LOG_LINES) into.splice(0, into.length - LOG_LINES);
  });
}

/**
 * The container-logs endpoint the API server's pods/log proxies to:
 * GET /containerLogs/NAMESPACE/POD/CONTAINER[?sinceTime=RFC3339&tailLines=N]. Served over HTTPS
 * with a throwaway self-signed certificate (the harness's API server does not verify it: no
 * --kubelet-certificate-authority) on the bridge address only.
 */
async function serveLogs(
  address: string,
  find: (
    namespace: string,
    pod: string,
    container: string,
  ) => Array<{ at: number; line: string }> | undefined,
): Promise<{ port: number; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "agw-kubelet-tls-"));
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=agw-node",
      "-addext",
      `subjectAltName=IP:${address}`,
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const server = https.createServer(
    { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) },
    (req, res) => {
      const url = new URL(req.url ?? "/", "https://kubelet");
      const [, kind, ns, pod, container] = url.pathname.split("/").map(decodeURIComponent);
      const lines = kind === "containerLogs" && ns && pod && container ? find(ns, pod, container) : undefined;
      if (req.method !== "GET" || !lines) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      const since = Date.parse(url.searchParams.get("sinceTime") ?? "");
      // sinceTime has whole seconds: a line of that second is in.
      let out = Number.isNaN(since) ? lines : lines.filter((l) => l.at >= since);
      const tail = Number(url.searchParams.get("tailLines") ?? "");
      if (url.searchParams.has("tailLines") && Number.isInteger(tail) && tail >= 0)
        out = tail === 0 ? [] : out.slice(-tail);
      res.writeHead(200, { "content-type": "text/plain" }).end(out.map((l) => `${l.line}\n`).join(""));
    },
  );
  rmSync(dir, { recursive: true, force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, address, () => resolve());
  });
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

export interface StandInKubelet {
  readonly nodeName: string;
  readonly podCidr: string;
  close(): Promise<void>;
}

const ECHO_IMAGE = /(^|\/)gateway-api\/echo-basic(:|@|$)/;
const POLL_MS = 500;

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export async function startKubelet(options: {
  client: KubeClient;
  /** The echo-basic binary. */
  echoBasic: string;
  nodeName?: string;
  log?: (line: string) => void;
}): Promise<StandInKubelet> {
  const { client, echoBasic } = options;
  const log = options.log ?? (() => {});
  const nodeName = options.nodeName ?? "agw-node";
  const id = `${process.pid % 10_000}`;
  const subnet = `198.19.${1 + Math.floor(Math.random() * 250)}`;
  const bridge = `agwkb${id}`;
  ip(["link", "add", bridge, "type", "bridge"]);
  ip(["addr", "add", `${subnet}.1/24`, "dev", bridge]);
  ip(["link", "set", bridge, "up"]);
  const running = new Map<string, Running>();
  const logServer = await serveLogs(`${subnet}.1`, (ns, pod, container) => {
    for (const r of running.values()) if (r.namespace === ns && r.name === pod) return r.logs.get(container);
    return undefined;
  });
  const free = Array.from({ length: 250 }, (_, i) => `${subnet}.${i + 2}`);
  let ifCount = 0;
  let stopped = false;
  const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

  const nodeStatus = () => ({
    status: {
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "KubeletReady",
          message: "stand-in kubelet (AGW conformance harness)",
          lastHeartbeatTime: now(),
          lastTransitionTime: now(),
        },
      ],
      // InternalIP only: the API server reaches the kubelet (logs) by the first address of its
      // preferred types, and a Hostname would come first and not resolve.
      addresses: [{ type: "InternalIP", address: `${subnet}.1` }],
      daemonEndpoints: { kubeletEndpoint: { Port: logServer.port } },
      capacity: { cpu: "64", memory: "256Gi", pods: "250" },
      allocatable: { cpu: "64", memory: "256Gi", pods: "250" },
      nodeInfo: {
        kubeletVersion: "agw-stand-in",
        containerRuntimeVersion: "process://",
        architecture: "amd64",
        operatingSystem: "linux",
      },
    },
  });
  await client
    .request("POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: nodeName,
        labels: { "kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux" },
      },
      spec: { podCIDR: `${subnet}.0/24` },
    })
    .catch((e: Error) => {
      if (!/409|AlreadyExists/.test(String(e))) throw e;
    });
  const heartbeat = () =>
    client.request("PATCH", `/api/v1/nodes/${nodeName}/status`, nodeStatus(), "application/merge-patch+json");
  await heartbeat();

  const podPath = (p: Pod) =>
    `/api/v1/namespaces/${encodeURIComponent(p.metadata.namespace)}/pods/${encodeURIComponent(p.metadata.name)}`;
  const patchStatus = (p: Pod, status: object) =>
    client.request("PATCH", `${podPath(p)}/status`, { status }, "application/merge-patch+json");

  function stop(r: Running): void {
    for (const proc of r.procs) if (proc.exitCode === null) proc.kill("SIGKILL");
    try {
      ip(["netns", "del", r.netns]);
    } catch {}
    try {
      ip(["link", "del", r.hostIf]);
    } catch {}
    free.push(r.ip);
    rmSync(r.dir, { recursive: true, force: true });
  }

  /** Each Secret volume written to files (data keys, or the items' paths) under the pod's dir. */
  async function writeVolumes(p: Pod, dir: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const v of p.spec.volumes ?? []) {
      if (!v.secret) continue;
      const secret = await client.request<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${encodeURIComponent(p.metadata.namespace)}/secrets/${encodeURIComponent(v.secret.secretName)}`,
      );
      const vdir = join(dir, v.name);
      const items = v.secret.items ?? Object.keys(secret.data ?? {}).map((key) => ({ key, path: key }));
      for (const item of items) {
        const file = join(vdir, item.path);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, Buffer.from(secret.data?.[item.key] ?? "", "base64"));
      }
      mkdirSync(vdir, { recursive: true });
      out.set(v.name, vdir);
    }
    return out;
  }

  async function start(p: Pod): Promise<Running> {
    const podIp = free.shift();
    if (!podIp) throw new Error("no pod address left");
    const n = ifCount++;
    const netns = `agwkp${id}-${n}`;
    const hostIf = `agwkv${id}x${n}`;
    const dir = mkdtempSync(join(tmpdir(), "agw-pod-"));
    const r: Running = {
      uid: p.metadata.uid,
      namespace: p.metadata.namespace,
      name: p.metadata.name,
      netns,
      hostIf,
      ip: podIp,
      procs: [],
      ready: false,
      dir,
      logs: new Map(),
    };
    ip(["netns", "add", netns]);
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    ip(["link", "set", hostIf, "master", bridge]);
    ip(["link", "set", hostIf, "up"]);
    ip(["-n", netns, "link", "set", "lo", "up"]);
    ip(["-n", netns, "addr", "add", `${podIp}/24`, "dev", "eth0"]);
    ip(["-n", netns, "link", "set", "eth0", "up"]);
    ip(["-n", netns, "route", "add", "default", "via", `${subnet}.1`]);
    // A Secret not created yet: undo, and the next round tries again.
    const volumes = await writeVolumes(p, dir).catch((e: unknown) => {
      stop(r);
      throw e;
    });
    for (const c of p.spec.containers) {
      if (!ECHO_IMAGE.test(c.image)) {
        r.failed = `image ${c.image} is not available in this harness (only the gateway-api echo-basic image is run)`;
        return r;
      }
      const field = (path: string) =>
        ({
          "metadata.name": p.metadata.name,
          "metadata.namespace": p.metadata.namespace,
          "status.podIP": podIp,
          "spec.nodeName": nodeName,
        })[path] ?? "";
      const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
      for (const e of c.env ?? [])
        env[e.name] = e.value ?? (e.valueFrom?.fieldRef ? field(e.valueFrom.fieldRef.fieldPath) : "");
      // Secret volumes: bind-mounted at their mountPath in a mount namespace of the container's
      // own (the mount point is created on the host if missing).
      const mounts = (c.volumeMounts ?? []).flatMap((m) => {
        const from = volumes.get(m.name);
        return from ? [`mkdir -p '${m.mountPath}' && mount --bind '${from}' '${m.mountPath}'`] : [];
      });
      const command =
        mounts.length === 0
          ? [echoBasic, ...(c.args ?? [])]
          : [
              "unshare",
              "--mount",
              "--propagation",
              "private",
              "sh",
              "-c",
              `${mounts.join(" && ")} && exec "$0" "$@"`,
              echoBasic,
              ...(c.args ?? []),
            ];
      const proc = spawn("ip", ["netns", "exec", netns, ...command], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const lines: Array<{ at: number; line: string }> = [];
      r.logs.set(c.name, lines);
      keepLines(proc.stdout, lines);
      keepLines(proc.stderr, lines);
      r.procs.push(proc);
    }
    return r;
  }

  const probe = (address: string, port: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ host: address, port, timeout: 500 }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
      s.on("timeout", () => {
        s.destroy();
        resolve(false);
      });
    });

  async function reconcile(): Promise<void> {
    const pods = (await client.request<{ items: Pod[] }>("GET", "/api/v1/pods")).items;
    const seen = new Set<string>();
    for (const p of pods) {
      const key = p.metadata.uid;
      seen.add(key);
      const r = running.get(key);
      if (p.metadata.deletionTimestamp) {
        if (r) {
          stop(r);
          running.delete(key);
        }
        await client
          .request("DELETE", podPath(p), { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 })
          .catch(() => {});
        continue;
      }
      if (!p.spec.nodeName) {
        await client
          .request("POST", `${podPath(p)}/binding`, {
            apiVersion: "v1",
            kind: "Binding",
            metadata: { name: p.metadata.name, namespace: p.metadata.namespace },
            target: { apiVersion: "v1", kind: "Node", name: nodeName },
          })
          .catch((e: Error) => log(`bind ${p.metadata.namespace}/${p.metadata.name}: ${e.message}`));
        continue;
      }
      if (p.spec.nodeName !== nodeName) continue;
      if (!r) {
        const started = await start(p);
        running.set(key, started);
        log(
          `pod ${p.metadata.namespace}/${p.metadata.name} on ${started.ip}${started.failed ? `: ${started.failed}` : ""}`,
        );
        if (started.failed)
          await patchStatus(p, {
            phase: "Failed",
            reason: "ImageNotAvailable",
            message: started.failed,
            hostIP: `${subnet}.1`,
          });
        else
          await patchStatus(p, {
            phase: "Pending",
            hostIP: `${subnet}.1`,
            podIP: started.ip,
            podIPs: [{ ip: started.ip }],
            startTime: now(),
            conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: now() }],
          });
        continue;
      }
      if (r.ready || r.failed) continue;
      const port = p.spec.containers[0]?.ports?.[0]?.containerPort ?? 3000;
      if (!(await probe(r.ip, port))) continue;
      r.ready = true;
      const t = now();
      await patchStatus(p, {
        phase: "Running",
        conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) => ({
          type,
          status: "True",
          lastTransitionTime: t,
        })),
        containerStatuses: p.spec.containers.map((c, i) => ({
          name: c.name,
          image: c.image,
          imageID: "",
          containerID: `process://${r.procs[i]?.pid ?? 0}`,
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: t } },
        })),
      });
    }
    for (const [key, r] of running)
      if (!seen.has(key)) {
        stop(r);
        running.delete(key);
      }
  }

  let lastHeartbeat = Date.now();
  const loop = (async () => {
    while (!stopped) {
      try {
        await reconcile();
        if (Date.now() - lastHeartbeat > 10_000) {
          lastHeartbeat = Date.now();
          await heartbeat();
        }
      } catch (e) {
        log(`reconcile: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();

  return {
    nodeName,
    podCidr: `${subnet}.0/24`,
    async close() {
      stopped = true;
      await loop;
      for (const r of running.values()) stop(r);
      running.clear();
      logServer.close();
      try {
        ip(["link", "del", bridge]);
      } catch {}
    },
  };
}
