/** TLS connections to upstream endpoints, shared by the HTTP/1.1 pool and the HTTP/2 sessions. */
import { isIP } from "node:net";
import tls from "node:tls";
import type { Endpoint } from "../runtime/types.ts";
import type { UpstreamTlsRuntime } from "./manager.ts";

/** A TLS connection to an endpoint: the certificate is always verified (CA, server name, optional SAN list). */
export function connectTls(ep: Endpoint, t: UpstreamTlsRuntime): tls.TLSSocket {
  const servername = t.sni !== "" ? t.sni : isIP(ep.host) === 0 ? ep.host : undefined;
  const socket = tls.connect({
    host: ep.host,
    port: ep.port,
    secureContext: t.secureContext,
    ALPNProtocols: [...t.alpn],
    rejectUnauthorized: true,
    ...(servername !== undefined && { servername }),
    checkServerIdentity: (host, cert) => {
      const err = tls.checkServerIdentity(servername ?? host, cert);
      if (err || t.matchSubjectAltNames.length === 0) return err;
      const sans = (cert.subjectaltname ?? "").split(/,\s*/).map((e) => e.slice(e.indexOf(":") + 1));
      return sans.some((san) => t.matchSubjectAltNames.includes(san))
        ? undefined
        : new Error(
            `upstream certificate SANs (${sans.join(", ")}) match none of ${t.matchSubjectAltNames.join(", ")}`,
          );
    },
  });
  socket.setNoDelay(true);
  return socket;
}
