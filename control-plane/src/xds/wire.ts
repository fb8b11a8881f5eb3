/**
 * Encoded sizes of discovery responses computed from the resources' cached sizes, so the bytes sent
 * per data plane can be accounted without encoding a response twice. Every field involved has a
 * number below 16, hence a one-byte tag. `wire.test.ts` checks these against real encodings.
 */
import type { VersionedResource } from "./resources.ts";

/** gRPC length-prefixed message framing: 1 flag byte + 4 length bytes. */
export const GRPC_FRAME_BYTES = 5;

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    length++;
  }
  return length;
}

function lengthDelimited(length: number): number {
  return 1 + varintLength(length) + length;
}

function stringField(s: string): number {
  return s === "" ? 0 : lengthDelimited(Buffer.byteLength(s));
}

export function sotwResponseSize(
  versionInfo: string,
  typeUrl: string,
  nonce: string,
  resources: Iterable<VersionedResource>,
): number {
  let size = stringField(versionInfo) + stringField(typeUrl) + stringField(nonce);
  for (const r of resources) size += lengthDelimited(r.size);
  return size;
}

function deltaResourceSize(r: VersionedResource): number {
  return stringField(r.name) + stringField(r.version) + lengthDelimited(r.size);
}

export function deltaResponseSize(
  systemVersionInfo: string,
  typeUrl: string,
  nonce: string,
  resources: Iterable<VersionedResource>,
  removed: Iterable<string>,
): number {
  let size = stringField(systemVersionInfo) + stringField(typeUrl) + stringField(nonce);
  for (const r of resources) size += lengthDelimited(deltaResourceSize(r));
  for (const name of removed) size += lengthDelimited(Buffer.byteLength(name));
  return size;
}
