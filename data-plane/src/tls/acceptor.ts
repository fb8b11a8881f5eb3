/**
 * Runs the TLS handshakes of one version of a listener's TLS settings. It is a tls.Server that never
 * listens: the listener's net.Server hands it accepted sockets, so a new certificate version serves
 * the next handshake at once while connections already established keep the version they started on.
 */
import type net from "node:net";
import tls from "node:tls";
import type {
  ClientCertificateCheck,
  ClientIdentity,
  DownstreamTlsAcceptor,
  SecureConnectionHandler,
} from "../runtime/types.ts";

export type {
  ClientCertificateCheck,
  ClientIdentity,
  DownstreamTlsInfo,
  SecureConnectionHandler,
} from "../runtime/types.ts";

export function peerCommonName(cert: tls.PeerCertificate): string {
  const cn = cert.subject?.CN;
  return Array.isArray(cn) ? cn.join("+") : (cn ?? "");
}

const REFUSAL_TIMEOUT_MS = 5_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;

function identity(cert: tls.PeerCertificate): ClientIdentity {
  const subject = Object.entries(cert.subject ?? {})
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
    .join(",");
  const sans = (cert.subjectaltname ?? "").split(/,\s*/).filter((s) => s !== "");
  const sha256 = (cert.fingerprint256 ?? "").replaceAll(":", "").toLowerCase();
  let header = `Hash=${sha256};Subject="${subject.replaceAll('"', '\\"')}"`;
  for (const san of sans) {
    if (san.startsWith("URI:")) header += `;URI=${san.slice(4)}`;
    else if (san.startsWith("DNS:")) header += `;DNS=${san.slice(4)}`;
  }
  return {
    subject,
    commonName: peerCommonName(cert),
    subjectAltNames: sans,
    sha256,
    forwardedHeader: header,
  };
}

export class TlsAcceptor<R extends ClientCertificateCheck = ClientCertificateCheck>
  implements DownstreamTlsAcceptor
{
  readonly server: tls.Server;
  readonly runtime: R;
  /** Set by the listener currently using this acceptor. */
  onSecure: SecureConnectionHandler | null = null;
  /** Handshakes that failed (bad client hello, untrusted client certificate, timeout...). */
  failedHandshakes = 0;

  constructor(options: tls.TlsOptions, runtime: R) {
    this.runtime = runtime;
    this.server = tls.createServer({ ...options, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
    this.server.on("secureConnection", (socket: tls.TLSSocket) => this.secure(socket));
    this.server.on("tlsClientError", (_err, socket) => {
      this.failedHandshakes++;
      socket.destroy();
    });
  }

  /** Takes an accepted TCP socket through the handshake. */
  accept(raw: net.Socket): void {
    this.server.emit("connection", raw);
  }

  private secure(socket: tls.TLSSocket): void {
    socket.on("error", noop);
    const handler = this.onSecure;
    if (handler === null) {
      socket.destroy();
      return;
    }
    const cert = socket.getPeerCertificate();
    let client: ClientIdentity | undefined;
    let clientRejected = "";
    if (cert && Object.keys(cert).length > 0) {
      const reason = !socket.authorized
        ? `client certificate not verified: ${String(socket.authorizationError)}`
        : this.runtime.checkClient(cert);
      if (reason !== undefined) {
        // The client is told why, in the protocol ALPN chose, on its first request; a refused
        // connection gets no longer than REFUSAL_TIMEOUT_MS to send it.
        clientRejected = reason;
        const timer = setTimeout(() => socket.destroy(), REFUSAL_TIMEOUT_MS);
        socket.once("close", () => clearTimeout(timer));
      } else client = identity(cert);
    }
    const serverName = (socket as tls.TLSSocket & { servername?: string | false }).servername;
    handler(socket, {
      serverName: typeof serverName === "string" ? serverName : "",
      alpn: typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : "http/1.1",
      version: socket.getProtocol() ?? "",
      cipher: socket.getCipher()?.name ?? "",
      client,
      clientRejected,
    });
  }
}

function noop(): void {}
