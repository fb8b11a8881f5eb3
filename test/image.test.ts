/**
 * The container image as an operator runs it: scripts/image/build.ts builds it (cached by its
 * inputs), umoci unpacks it into an OCI runtime bundle, and runc (Debian) runs the control plane, a
 * data plane, a demo upstream and the eBPF agent from that one image, each as the image's non-root
 * user on a read-only root filesystem (a tmpfs on /tmp, as the Helm chart's emptyDir), in network
 * namespaces the test makes: the control plane's (with the upstream) and the data plane's, joined by a
 * veth pair, and a second veth from this host to the data plane's. curl on the host gets the
 * upstream's answer through the data plane, which got its routes over xDS from the control plane.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { buildImage, CACHE } from "../scripts/image/build.ts";
import { netnsUnavailableReason } from "../scripts/kube/netns.ts";
import { requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const has = (cmd: string, arg = "--version") => spawnSync(cmd, [arg], { stdio: "ignore" }).status === 0;

function missing(): string | undefined {
  const netns = netnsUnavailableReason();
  if (netns) return netns;
  for (const [cmd, pkg] of [
    ["runc", "runc"],
    ["umoci", "umoci"],
    ["curl", "curl"],
    ["strip", "binutils"],
    ["dpkg-deb", "dpkg"],
  ] as const)
    if (!has(cmd)) return `${cmd} is not installed (Debian package ${pkg}; .ci/run installs it)`;
  return undefined;
}

/** The image unpacked once per manifest into ~/.cache/agw/image/bundles (rootfs + umoci's config). */
function unpacked(ref: string, digest: string): { rootfs: string; config: Record<string, unknown> } {
  const dir = join(CACHE, "bundles", digest.slice(7, 39));
  if (!existsSync(join(dir, "config.json"))) {
    const work = `${dir}.tmp-${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(CACHE, "bundles"), { recursive: true });
    execFileSync("umoci", ["unpack", "--image", ref, work], { stdio: ["ignore", "ignore", "pipe"] });
    // unpacked images of older sources go (275 MB each), once no run can still be using them
    for (const old of readdirSync(join(CACHE, "bundles"))) {
      const path = join(CACHE, "bundles", old);
      if (!old.includes(".tmp-") && Date.now() - statSync(path).mtimeMs > 3_600_000)
        rmSync(path, { recursive: true, force: true });
    }
    renameSync(work, dir);
  }
  return { rootfs: join(dir, "rootfs"), config: JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) };
}

interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

test("the image runs the control plane, a data plane and the eBPF agent; curl gets an answer through it", {
  timeout: 900_000, // a cold build (Debian packages, npm ci, gzip) takes minutes; a warm one seconds
}, async (t) => {
  const reason = missing();
  if (!requireOrSkip(t, reason === undefined, reason ?? "")) return;
  const image = await buildImage();
  const { rootfs, config: base } = unpacked(`${image.layout}:${image.tag}`, image.manifestDigest);

  // What the image says of itself: non-root, the version, the pinned Node.
  const manifest = JSON.parse(
    readFileSync(join(image.layout, "blobs/sha256", image.manifestDigest.slice(7)), "utf8"),
  ) as { config: { digest: string } };
  const imageConfig = JSON.parse(
    readFileSync(join(image.layout, "blobs/sha256", manifest.config.digest.slice(7)), "utf8"),
  ) as { config: { User: string; Labels: Record<string, string> } };
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(imageConfig.config.User, "65532:65532");
  assert.equal(imageConfig.config.Labels["org.opencontainers.image.version"], pkg.version);
  assert.equal(imageConfig.config.Labels["dev.agw.node.version"], `v${pkg.dependencies.node}`);

  const id = `${process.pid % 100_000}${Math.floor(Math.random() * 10)}`;
  const cpNs = `agwi${id}c`;
  const dpNs = `agwi${id}d`;
  const a = 1 + Math.floor(Math.random() * 250);
  const link = `198.18.${a}`; // control plane .2 <-> data plane .3
  const edge = `198.18.${(a + 1) % 250}`; // host .1 <-> data plane .2
  ip("netns", "add", cpNs);
  t.after(() => spawnSync("ip", ["netns", "del", cpNs]));
  ip("netns", "add", dpNs);
  t.after(() => spawnSync("ip", ["netns", "del", dpNs]));
  ip("link", "add", `agwi${id}x`, "netns", cpNs, "type", "veth", "peer", "name", `agwi${id}y`, "netns", dpNs);
  ip("link", "add", `agwi${id}h`, "type", "veth", "peer", "name", `agwi${id}e`, "netns", dpNs);
  ip("-n", cpNs, "addr", "add", `${link}.2/24`, "dev", `agwi${id}x`);
  ip("-n", dpNs, "addr", "add", `${link}.3/24`, "dev", `agwi${id}y`);
  ip("addr", "add", `${edge}.1/24`, "dev", `agwi${id}h`);
  ip("-n", dpNs, "addr", "add", `${edge}.2/24`, "dev", `agwi${id}e`);
  for (const [ns, dev] of [
    [cpNs, "lo"],
    [cpNs, `agwi${id}x`],
    [dpNs, "lo"],
    [dpNs, `agwi${id}y`],
    [dpNs, `agwi${id}e`],
  ])
    ip("-n", ns as string, "link", "set", dev as string, "up");
  ip("link", "set", `agwi${id}h`, "up");

  const dir = tempDir("agw-image-");
  const configYaml = join(dir, "config.yaml");
  writeFileSync(
    configYaml,
    [
      "listeners:",
      "  - name: public",
      "    port: 8080",
      "    routes:",
      "      - name: all",
      "        cluster: upstream",
      "        responseHeaders: { set: { x-served-by: agw-image } }",
      "clusters:",
      "  - name: upstream",
      `    endpoints: [${link}.2:9080]`,
      "",
    ].join("\n"),
  );

  const containers: Array<{ name: string; child: ChildProcess; output: () => string }> = [];
  t.after(() => {
    for (const c of containers) {
      spawnSync("runc", ["kill", c.name, "KILL"], { stdio: "ignore" });
      spawnSync("runc", ["delete", "--force", c.name], { stdio: "ignore" });
    }
    rmSync(dir, { recursive: true, force: true });
  });
  /** One container from the image: the entrypoint with `args`, in network namespace `ns`. */
  const start = (role: string, ns: string, args: string[], mounts: Mount[] = []) => {
    const name = `agw-image-${id}-${role}`;
    const bundle = join(dir, role);
    mkdirSync(bundle);
    const config = structuredClone(base) as {
      process: { terminal: boolean; args: string[]; capabilities: object };
      root: { path: string; readonly: boolean };
      mounts: Mount[];
      linux: {
        namespaces: Array<{ type: string; path?: string }>;
        resources?: unknown;
        cgroupsPath?: string;
      };
    };
    config.process.terminal = false;
    config.process.args = ["/usr/local/bin/node", "/app/cli/src/main.ts", ...args];
    config.process.capabilities = {}; // none at all, as the chart's drop: [ALL]
    config.root = { path: rootfs, readonly: true };
    config.mounts = [
      ...config.mounts.filter((m) => m.destination !== "/sys/fs/cgroup"),
      {
        destination: "/tmp",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", "mode=1777", "size=64m"],
      },
      ...mounts,
    ];
    config.linux.namespaces = config.linux.namespaces.map((n) =>
      n.type === "network" ? { type: "network", path: `/run/netns/${ns}` } : n,
    );
    delete config.linux.resources;
    delete config.linux.cgroupsPath;
    writeFileSync(join(bundle, "config.json"), JSON.stringify(config));
    const child = spawn("runc", ["run", "--bundle", bundle, name], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout?.on("data", (d) => (out += d));
    child.stderr?.on("data", (d) => (out += d));
    const c = { name, child, output: () => out };
    containers.push(c);
    return c;
  };
  const exec = (c: { name: string }, args: string[]) =>
    spawnSync("runc", ["exec", c.name, ...args], { encoding: "utf8", timeout: 30_000 });

  const upstream = start("upstream", cpNs, [
    "demo-upstream",
    "--listen",
    `${link}.2:9080`,
    "--id",
    "image-upstream",
  ]);
  const cp = start(
    "cp",
    cpNs,
    ["control-plane", "-c", "/etc/agw/config.yaml", "--xds-listen", `${link}.2:18000`, "--xds-plaintext"],
    [{ destination: "/etc/agw/config.yaml", type: "bind", source: configYaml, options: ["bind", "ro"] }],
  );
  const dp = start("dp", dpNs, [
    "data-plane",
    "--xds",
    `${link}.2:18000`,
    "--xds-plaintext",
    "--node-id",
    "image-dp",
  ]);
  const agent = start("ebpf", dpNs, ["ebpf-agent", "--inert-if-unsupported"]);
  const logs = () => containers.map((c) => `--- ${c.name}\n${c.output()}`).join("\n");

  const curl = () =>
    spawnSync("curl", ["-sS", "-i", "--max-time", "5", `http://${edge}.2:8080/through-the-image`], {
      encoding: "utf8",
    });
  const answer = await waitFor(
    `curl through the data plane\n${logs()}`,
    () => {
      for (const c of containers)
        if (c.child.exitCode !== null) throw new Error(`${c.name} exited ${c.child.exitCode}:\n${logs()}`);
      const r = curl();
      return r.status === 0 && /^HTTP\/1\.1 200/.test(r.stdout) ? r.stdout : undefined;
    },
    90_000,
  );
  assert.match(answer, /x-served-by: agw-image/i);
  assert.match(answer, /x-upstream-id: image-upstream/i);
  assert.match(answer, /"url": "\/through-the-image"/);

  // The chart's probes, as the kubelet runs them: node with cli/src/probe.ts inside the container.
  const probe = (c: { name: string }, url: string, ...mode: string[]) =>
    exec(c, ["/usr/local/bin/node", "/app/cli/src/probe.ts", url, ...mode]).status;
  assert.equal(probe(dp, "http://127.0.0.1:9901/ready"), 0, "the data plane's readiness probe");
  assert.equal(probe(dp, "http://127.0.0.1:9901/healthz", "--live"), 0, "the data plane's liveness probe");
  assert.equal(probe(cp, "http://127.0.0.1:9902/ready"), 0, "the control plane's readiness probe");
  assert.equal(probe(agent, "http://127.0.0.1:9903/metrics", "--live"), 0, "the eBPF agent serves metrics");
  assert.equal(probe(dp, "http://127.0.0.1:1/ready", "--live"), 1, "a probe of nothing fails");

  // Non-root, on a read-only root filesystem.
  const id0 = exec(dp, ["/usr/local/bin/node", "-e", "console.log(process.getuid(), process.getgid())"]);
  assert.equal(id0.stdout.trim(), "65532 65532");
  const write = exec(dp, ["/usr/local/bin/node", "-e", "require('fs').writeFileSync('/app/x', '')"]);
  assert.notEqual(write.status, 0);
  assert.match(write.stderr, /EROFS/);
  assert.ok(upstream.child.exitCode === null && agent.child.exitCode === null, logs());
});
