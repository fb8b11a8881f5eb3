/**
 * Who may talk xDS in plaintext. The default keeps `agw run` and a control plane and data plane on
 * one machine working without certificates, and refuses anything else: off loopback, mTLS is
 * required unless plaintext is asked for explicitly (`--xds-plaintext`).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";

export interface XdsCertificateFiles {
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
}

export interface XdsCertificates {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/**
 * The certificates to use, or undefined for plaintext. Throws a message for the user when the
 * files are incomplete, or when plaintext would leave the machine without being asked for.
 */
export function xdsTransportSecurity(
  files: XdsCertificateFiles,
  plaintext: boolean,
  hosts: readonly string[],
  role: "control plane" | "data plane",
): XdsCertificates | undefined {
  const given = [files.cert, files.key, files.ca].filter((f) => f !== undefined).length;
  if (plaintext && given > 0)
    throw new Error("--xds-plaintext cannot be combined with --xds-cert/--xds-key/--xds-ca");
  if (given > 0 && given < 3) throw new Error("mTLS needs all of --xds-cert, --xds-key and --xds-ca");
  if (given === 3) {
    const read = (flag: string, file: string) => {
      try {
        return readFileSync(file);
      } catch (e) {
        throw new Error(`${flag} ${file}: ${(e as Error).message}`);
      }
    };
    return {
      cert: read("--xds-cert", files.cert as string),
      key: read("--xds-key", files.key as string),
      ca: read("--xds-ca", files.ca as string),
    };
  }
  const remote = hosts.filter((h) => !isLoopbackHost(h));
  if (!plaintext && remote.length > 0)
    throw new Error(
      `the ${role} would talk xDS in plaintext with ${remote.join(", ")}: give --xds-cert, --xds-key and --xds-ca (mTLS), or --xds-plaintext`,
    );
  return undefined;
}

/** The subject CN of a PEM certificate: the node identity the control plane reads from it. */
export function certificateCommonName(pem: Buffer): string {
  const subject = new X509Certificate(pem).subject;
  const cn = subject.split("\n").find((line) => line.startsWith("CN="));
  return cn ? cn.slice(3) : "";
}
