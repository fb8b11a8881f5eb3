/** Certificates made at test time with the openssl command: CAs, server and client leaves, RSA or ECDSA. */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type KeyType = "rsa" | "ec";

export interface Ca {
  readonly name: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly pem: string;
}

export interface Leaf {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function keyArgs(type: KeyType): string[] {
  return type === "rsa" ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
}

/** openssl time format, e.g. 20250101000000Z. */
function asn1Time(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

export function makeCa(dir: string, name: string, type: KeyType = "ec"): Ca {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  openssl(
    [
      "req",
      "-x509",
      ...keyArgs(type),
      "-nodes",
      "-subj",
      `/CN=${name}`,
      "-days",
      "2",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    dir,
  );
  return { name, certFile, keyFile, pem: readFileSync(certFile, "utf8") };
}

export interface LeafOptions {
  /** Subject common name. */
  readonly cn: string;
  /** e.g. ["DNS:a.example.com", "URI:spiffe://agw/x", "IP:127.0.0.1"]. */
  readonly sans?: readonly string[];
  readonly type?: KeyType;
  /** Validity window, ms since epoch; default one hour ago to a day from now. */
  readonly notBefore?: number;
  readonly notAfter?: number;
  readonly clientAuth?: boolean;
  /** File stem; default the CN. */
  readonly file?: string;
}

/** A leaf signed by `ca` (openssl ca, so the validity window can be anything, past or future). */
export function makeLeaf(dir: string, ca: Ca, o: LeafOptions): Leaf {
  const stem = o.file ?? o.cn.replace(/[^a-z0-9.-]/gi, "_");
  const keyFile = join(dir, `${stem}.key`);
  const csr = join(dir, `${stem}.csr`);
  const certFile = join(dir, `${stem}.crt`);
  openssl(
    [
      "req",
      "-new",
      ...keyArgs(o.type ?? "ec"),
      "-nodes",
      "-subj",
      `/CN=${o.cn}`,
      "-keyout",
      keyFile,
      "-out",
      csr,
    ],
    dir,
  );
  const db = join(dir, `${stem}.db`);
  writeFileSync(`${db}.index`, "");
  const ext = [
    "basicConstraints=CA:FALSE",
    `extendedKeyUsage=${o.clientAuth ? "clientAuth" : "serverAuth"}`,
    ...(o.sans && o.sans.length > 0 ? [`subjectAltName=${o.sans.join(",")}`] : []),
  ].join("\n");
  writeFileSync(`${db}.ext`, `${ext}\n`);
  writeFileSync(
    `${db}.cnf`,
    `[ca]\ndefault_ca=c\n[c]\ndatabase=${db}.index\nnew_certs_dir=${dir}\nserial=${db}.serial\n` +
      "default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
  );
  writeFileSync(`${db}.serial`, `${Date.now().toString(16).padStart(16, "0")}\n`);
  const now = Date.now();
  openssl(
    [
      "ca",
      "-batch",
      "-notext",
      "-config",
      `${db}.cnf`,
      "-cert",
      ca.certFile,
      "-keyfile",
      ca.keyFile,
      "-in",
      csr,
      "-out",
      certFile,
      "-extfile",
      `${db}.ext`,
      "-startdate",
      asn1Time(o.notBefore ?? now - 3_600_000),
      "-enddate",
      asn1Time(o.notAfter ?? now + 86_400_000),
    ],
    dir,
  );
  return {
    certFile,
    keyFile,
    certPem: readFileSync(certFile, "utf8"),
    keyPem: readFileSync(keyFile, "utf8"),
  };
}
