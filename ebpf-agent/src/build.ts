/**
 * Builds the BPF object (clang, against a vmlinux.h dumped from this kernel's BTF) and the libbpf
 * Node-API addon (cc, against the node-api-headers package) into ebpf-agent/build/. Nothing built is
 * committed; a build is redone when a source or the toolchain command changes, and a concurrent
 * build never exposes a half-written file (each output is renamed into place).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const PACKAGE_DIR = new URL("..", import.meta.url).pathname;
export const BUILD_DIR = join(PACKAGE_DIR, "build");
const BPF_SOURCE = join(PACKAGE_DIR, "bpf/sockmap.bpf.c");
const ADDON_SOURCE = join(PACKAGE_DIR, "native/agw_bpf.c");

export interface BuildOutputs {
  bpfObject: string;
  addon: string;
}

export class BuildError extends Error {}

function nodeApiIncludeDir(): string {
  const require = createRequire(join(PACKAGE_DIR, "package.json"));
  try {
    return join(dirname(require.resolve("node-api-headers/package.json")), "include");
  } catch {
    throw new BuildError("the node-api-headers package is not installed: run npm ci");
  }
}

async function tool(name: string, debianPackage: string): Promise<string> {
  try {
    await run(name, ["--version"]);
    return name;
  } catch {
    throw new BuildError(`${name} not found: install the Debian package ${debianPackage}`);
  }
}

function commands(include: string, vmlinuxH: string, out: string) {
  const arch = process.arch === "arm64" ? "arm64" : "x86";
  return {
    bpf: [
      "clang",
      [
        "-g",
        "-O2",
        "-target",
        "bpf",
        `-D__TARGET_ARCH_${arch}`,
        `-I${dirname(vmlinuxH)}`,
        "-c",
        BPF_SOURCE,
        "-o",
        join(out, "sockmap.bpf.o"),
      ],
    ] as const,
    addon: [
      "clang",
      [
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        `-I${include}`,
        ADDON_SOURCE,
        "-lbpf",
        "-o",
        join(out, "agw_bpf.node"),
      ],
    ] as const,
  };
}

function fingerprint(include: string): string {
  const hash = createHash("sha256");
  for (const file of [BPF_SOURCE, ADDON_SOURCE, join(include, "node_api.h")]) hash.update(readFileSync(file));
  // the kernel's BTF is what vmlinux.h (and so the object's CO-RE layout) comes from
  hash.update(readFileSync("/proc/sys/kernel/osrelease"));
  hash.update(JSON.stringify(commands(include, "V", "O")));
  return hash.digest("hex");
}

/** Builds if needed; returns the paths of the BPF object and the addon. */
export async function ensureBuilt(): Promise<BuildOutputs> {
  const outputs = { bpfObject: join(BUILD_DIR, "sockmap.bpf.o"), addon: join(BUILD_DIR, "agw_bpf.node") };
  const include = nodeApiIncludeDir();
  const stampFile = join(BUILD_DIR, "stamp");
  const stamp = fingerprint(include);
  if (
    existsSync(outputs.bpfObject) &&
    existsSync(outputs.addon) &&
    existsSync(stampFile) &&
    readFileSync(stampFile, "utf8") === stamp
  )
    return outputs;

  if (!existsSync("/sys/kernel/btf/vmlinux"))
    throw new BuildError("/sys/kernel/btf/vmlinux is missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y");
  await tool("clang", "clang");
  await tool("bpftool", "bpftool");
  if (!existsSync("/usr/include/bpf/libbpf.h"))
    throw new BuildError("libbpf headers not found: install libbpf-dev");

  mkdirSync(BUILD_DIR, { recursive: true });
  const work = mkdtempSync(join(BUILD_DIR, "tmp-"));
  try {
    const vmlinuxH = join(work, "vmlinux.h");
    const { stdout } = await run(
      "bpftool",
      ["btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
      { maxBuffer: 256 * 1024 * 1024 },
    );
    writeFileSync(vmlinuxH, stdout);
    const cmd = commands(include, vmlinuxH, work);
    for (const [bin, args] of [cmd.bpf, cmd.addon]) {
      try {
        await run(bin, [...args]);
      } catch (e) {
        throw new BuildError(`${bin} failed:\n${(e as { stderr?: string }).stderr ?? e}`);
      }
    }
    renameSync(join(work, "sockmap.bpf.o"), outputs.bpfObject);
    renameSync(join(work, "agw_bpf.node"), outputs.addon);
    writeFileSync(join(work, "stamp"), stamp);
    renameSync(join(work, "stamp"), stampFile);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return outputs;
}
