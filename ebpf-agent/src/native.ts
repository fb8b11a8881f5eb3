/** The libbpf addon (native/agw_bpf.c), typed. */
import { createRequire } from "node:module";

declare const objectBrand: unique symbol;
export type BpfObject = { readonly [objectBrand]: true };

export interface NativeBpf {
  /** Opens and loads every program and map of a BPF ELF object. */
  openObject(path: string): BpfObject;
  /** Attaches a sockops program to a cgroup v2 directory through a bpf_link; returns the link fd. */
  attachCgroup(obj: BpfObject, program: string, cgroupPath: string): number;
  /** Attaches an sk_msg verdict program to a SOCKHASH/SOCKMAP through a bpf_link; returns the link fd. */
  attachSkMsg(obj: BpfObject, program: string, map: string): number;
  /** Closes a link fd, which detaches its program. */
  detach(linkFd: number): void;
  mapUpdate(obj: BpfObject, map: string, key: Buffer, value: Buffer): void;
  mapDelete(obj: BpfObject, map: string, key: Buffer): boolean;
  /** For per-CPU maps, every possible CPU's value, each padded to 8 bytes. */
  mapLookup(obj: BpfObject, map: string, key: Buffer): Buffer | null;
  kernelHasMember(struct: string, member: string): boolean;
}

export function loadNative(addonPath: string): NativeBpf {
  return createRequire(import.meta.url)(addonPath) as NativeBpf;
}
