/**
 * A real etcd + kube-apiserver on loopback for tests, started the way envtest does it: no
 * controller-manager or scheduler, a CA and serving certificate and service-account keys generated
 * at start, and a static bearer token for the client. Binaries come from scripts/kube/build.sh
 * (built once per machine into a cache outside the repository).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const KUBE_VERSION = process.env.AGW_KUBE_VERSION ?? "v1.37.2";

/** Where build.sh caches the binaries (same rule as the script). */
export function kubeBinDir(): string {
  const root =
    process.env.AGW_KUBE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? "/root", ".cache"), "agw-k8s");
  return join(root, KUBE_VERSION);
}

/** Why the API server cannot run here, or undefined when it can. */
export function kubeUnavailableReason(): string | undefined {
  const dir = kubeBinDir();
  for (const bin of ["kube-apiserver", "etcd"]) {
    if (!existsSync(join(dir, bin))) return `${join(dir, bin)} not built (run scripts/kube/build.sh)`;
  }
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
  } catch {
    return "openssl not installed (needed to generate the API server's certificates)";
  }
  return undefined;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** CA, a serving certificate for 127.0.0.1/localhost, and the service-account signing key. */
function generateCredentials(dir: string): void {
  openssl(["genrsa", "-out", "ca.key", "2048"], dir);
  openssl(
    ["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=agw-test-ca", "-days", "2", "-out", "ca.crt"],
    dir,
  );
  openssl(["genrsa", "-out", "server.key", "2048"], dir);
  openssl(["req", "-new", "-key", "server.key", "-subj", "/CN=kube-apiserver", "-out", "server.csr"], dir);
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "san.ext",
      "-out",
      "server.crt",
    ],
    dir,
  );
  openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

interface Child {
  proc: ChildProcess;
  log: () => string;
  exited: Promise<void>;
}

function startChild(bin: string, args: string[]): Child {
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const keep = (d: Buffer) => {
    log = (log + d.toString()).slice(-20_000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  return { proc, log: () => log, exited };
}

async function stopChild(child: Child | undefined): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill("SIGTERM");
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), 10_000);
  await child.exited;
  clearTimeout(timer);
}

export interface TestApiServer {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /** A kubeconfig file for an admin (system:masters) client. */
  readonly kubeconfig: string;
  readonly token: string;
  readonly caPem: string;
  /** Writes a kubeconfig that authenticates with `token` (e.g. a ServiceAccount's). */
  kubeconfigFor(token: string): string;
  /** Stops kube-apiserver (etcd keeps its data) and starts it again on the same port. */
  restart(): Promise<void>;
  /**
   * Compacts etcd's history up to now: a watch resuming from an older resourceVersion then gets
   * 410 Gone (once the API server's watch cache no longer holds it, e.g. after a restart).
   */
  compactEtcd(): Promise<number>;
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  logs(): string;
  close(): Promise<void>;
}

function get(url: string, ca: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 2_000 },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, log: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms; last output:\n${log().slice(-4_000)}`);
}

export async function startTestApiServer(): Promise<TestApiServer> {
  const bin = kubeBinDir();
  const dir = mkdtempSync(join(tmpdir(), "agw-kube-"));
  generateCredentials(dir);
  const token = `agw-test-${Math.random().toString(36).slice(2)}`;
  writeFileSync(join(dir, "tokens.csv"), `${token},agw-admin,agw-admin,"system:masters"\n`);
  const caPem = readFileSync(join(dir, "ca.crt"), "utf8");

  const [etcdClient, etcdPeer, securePort] = await Promise.all([freePort(), freePort(), freePort()]);
  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const etcd = startChild(join(bin, "etcd"), [
    `--data-dir=${join(dir, "etcd")}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
    "--unsafe-no-fsync=true",
    "--log-level=warn",
  ]);
  let apiserver: Child | undefined;
  const server = `https://127.0.0.1:${securePort}`;
  const logs = () => `--- etcd ---\n${etcd.log()}\n--- kube-apiserver ---\n${apiserver?.log() ?? ""}`;

  const startApiServer = async () => {
    apiserver = startChild(join(bin, "kube-apiserver"), [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      // Without it the API server derives its address from the default route, and a network
      // namespace with only lo (the doc tests', a sandbox's) has none.
      "--advertise-address=127.0.0.1",
      `--secure-port=${securePort}`,
      `--cert-dir=${dir}`,
      `--tls-cert-file=${join(dir, "server.crt")}`,
      `--tls-private-key-file=${join(dir, "server.key")}`,
      `--client-ca-file=${join(dir, "ca.crt")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--service-account-issuer=https://kubernetes.default.svc",
      "--service-cluster-ip-range=10.96.0.0/16",
      "--authorization-mode=RBAC",
      "--disable-admission-plugins=ServiceAccount",
      "--allow-privileged=true",
      "--endpoint-reconciler-type=none",
      "--v=0",
    ]);
    const current = apiserver;
    await waitUntil(
      "kube-apiserver",
      async () => {
        if (current.proc.exitCode !== null) throw new Error("kube-apiserver exited");
        return (await get(`${server}/readyz`, caPem, token)).status === 200;
      },
      90_000,
      logs,
    );
  };
  const stopApiServer = () => stopChild(apiserver);

  try {
    await waitUntil("etcd", async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000, logs);
    await startApiServer();
  } catch (e) {
    await stopChild(apiserver);
    await stopChild(etcd);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let kubeconfigs = 0;
  const kubeconfigFor = (bearer: string) => {
    const file = join(dir, `kubeconfig-${kubeconfigs++}.yaml`);
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "test",
            cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") },
          },
        ],
        users: [{ name: "user", user: { token: bearer } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "user" } }],
        "current-context": "test",
      }),
    );
    return file;
  };
  const kubeconfig = kubeconfigFor(token);

  return {
    server,
    kubeconfig,
    token,
    caPem,
    kubeconfigFor,
    logs,
    async compactEtcd() {
      const range = await fetch(`${etcdUrl}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: Buffer.from("/").toString("base64") }),
      });
      const revision = Number(((await range.json()) as { header: { revision: string } }).header.revision);
      const compacted = await fetch(`${etcdUrl}/v3/kv/compaction`, {
        method: "POST",
        body: JSON.stringify({ revision, physical: true }),
      });
      if (!compacted.ok) throw new Error(`etcd compaction failed: ${await compacted.text()}`);
      return revision;
    },
    stopApiServer,
    startApiServer,
    async restart() {
      await stopApiServer();
      await startApiServer();
    },
    async close() {
      await stopChild(apiserver);
      await stopChild(etcd);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
