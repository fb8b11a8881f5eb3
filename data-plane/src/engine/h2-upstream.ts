/**
 * HTTP/2 upstreams: node:http2 client sessions per endpoint, each carrying many concurrent streams.
 * A session takes new streams until it reaches the peer's SETTINGS_MAX_CONCURRENT_STREAMS, then
 * another session opens beside it; a GOAWAY (or the cluster's max requests per connection) stops new
 * streams on a session while its streams in flight finish; an idle session closes after the cluster's
 * idle timeout. Like the HTTP/1.1 pool, the sessions are independent of any RuntimeConfig, so a config
 * push keeps them (and the streams on them) as long as their endpoint stays.
 *
 * An H2Call is one request on these sessions. A stream the peer refused (REFUSED_STREAM, or past the
 * last stream id of a GOAWAY) was never processed, so the call resends it on another session by
 * itself, whatever the method, as long as it still holds the request body it sent (up to 64 KiB).
 */
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { ClusterRuntime, Endpoint } from "../runtime/types.ts";
import { connectTls } from "../tls/connect.ts";

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** Streams assumed available before the peer's SETTINGS arrive (RFC 9113 §6.5.2 recommends ≥ 100). */
const INITIAL_STREAM_LIMIT = 100;
/** The most streams one session carries, whatever the peer allows. */
const MAX_STREAMS_PER_SESSION = 1000;
/** Body bytes kept so a refused stream can be resent; a larger body is sent once. */
export const MAX_REPLAY_BYTES = 65536;
/** Resends of one request after refused streams. */
const MAX_REFUSED_RESENDS = 3;

/** Why a call failed before its response head (mapped to the engine's 502/503/504 answers). */
export type H2FailureKind = "connect_failure" | "connect_timeout" | "tls" | "reset";

export interface H2CallSink {
  /** The response head; `endStream` when it is the whole response (e.g. gRPC trailers-only). */
  onH2Response(headers: http2.IncomingHttpHeaders, endStream: boolean): void;
  onH2Data(chunk: Buffer): void;
  /** The response is complete; `trailers` when the upstream sent a trailer section. */
  onH2End(trailers: http2.IncomingHttpHeaders | null): void;
  /** The request side can take more body bytes. */
  onH2Drain(): void;
  /** No response head will come; or (`afterHead`) the response was cut short. */
  onH2Failure(kind: H2FailureKind, message: string, afterHead: boolean): void;
}

class H2Session {
  readonly key: string;
  readonly pool: H2SessionPool;
  readonly session: http2.ClientHttp2Session;
  /** Streams open on this session. */
  active = 0;
  /** Streams ever opened (the cluster's max requests per connection). */
  opened = 0;
  /** Lowered when the peer refuses a stream below its advertised limit. */
  streamLimit = INITIAL_STREAM_LIMIT;
  connected = false;
  connectTimedOut = false;
  /** Why TLS (handshake or ALPN) failed, when it did. */
  tlsFailure: string | null = null;
  error: Error | null = null;
  /** Takes no new streams: GOAWAY received, request cap reached, endpoint gone, or closed. */
  draining = false;
  closed = false;
  private readonly idleTimeoutMs: number;
  private readonly maxRequests: number;
  private readonly maxIdle: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(pool: H2SessionPool, ep: Endpoint, cluster: ClusterRuntime) {
    this.pool = pool;
    this.key = ep.key;
    this.idleTimeoutMs = cluster.idleTimeoutMs;
    this.maxRequests = cluster.maxRequestsPerConnection;
    this.maxIdle = cluster.maxIdlePerEndpoint;
    const upstreamTls = cluster.tls;
    let socket: net.Socket;
    if (upstreamTls !== undefined) {
      const s = connectTls(ep, upstreamTls);
      let tcpConnected = false;
      s.once("connect", () => {
        tcpConnected = true;
      });
      // Registered before http2.connect's own listener, so a wrong protocol never reaches the session.
      s.once("secureConnect", () => this.checkAlpn(s));
      s.on("error", (e: Error & { code?: string }) => {
        if (!tcpConnected || this.connected || this.tlsFailure !== null) return;
        this.tlsFailure =
          e.code === "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
            ? "the upstream did not negotiate h2 by ALPN (it has no protocol in common with [h2])"
            : e.code
              ? `${e.message} (${e.code})`
              : e.message;
      });
      socket = s;
    } else {
      socket = net.connect({ host: ep.host, port: ep.port, noDelay: true });
    }
    const authority = `${upstreamTls ? "https" : "http"}://${ep.host.includes(":") ? `[${ep.host}]` : ep.host}:${ep.port}`;
    const session = http2.connect(authority, {
      createConnection: () => socket,
      settings: { enablePush: false },
    });
    this.session = session;
    if (cluster.connectTimeoutMs > 0)
      this.timer = setTimeout(onConnectTimeout, cluster.connectTimeoutMs, this);
    session.on("connect", () => {
      this.connected = true;
      this.clearTimer();
      if (this.active === 0) this.idle();
    });
    session.on("remoteSettings", (s: http2.Settings) => {
      this.streamLimit = Math.min(MAX_STREAMS_PER_SESSION, s.maxConcurrentStreams ?? MAX_STREAMS_PER_SESSION);
    });
    // In-flight streams finish; node closes the session after them (or destroys it on an error code).
    session.on("goaway", () => {
      this.draining = true;
    });
    session.on("error", (e: Error) => {
      this.error ??= e;
    });
    session.on("close", () => {
      this.closed = true;
      this.draining = true;
      this.clearTimer();
      pool.forget(this);
    });
  }

  private checkAlpn(socket: tls.TLSSocket): void {
    if (socket.alpnProtocol === "h2") return;
    this.tlsFailure = `the upstream did not negotiate h2 by ALPN (got ${socket.alpnProtocol || "none"})`;
    socket.destroy();
  }

  onConnectTimeout(): void {
    this.timer = null;
    if (this.connected) return;
    this.connectTimedOut = true;
    this.session.destroy();
  }

  hasRoom(): boolean {
    return !this.draining && this.active < this.streamLimit;
  }

  /** Opens a stream; throws when node refuses (session closing, out of stream ids). */
  request(headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream {
    const stream = this.session.request(headers, { endStream });
    if (this.active++ === 0) {
      this.clearTimer();
      this.session.ref();
    }
    this.opened++;
    if (this.maxRequests > 0 && this.opened >= this.maxRequests) this.drain();
    stream.once("close", () => this.streamClosed());
    return stream;
  }

  private streamClosed(): void {
    if (--this.active > 0) return;
    if (this.draining) this.session.close();
    else this.idle();
  }

  /** No streams: unref'd (idle sessions must not keep the process alive), closed after the idle timeout. */
  private idle(): void {
    if (!this.connected || this.closed) return;
    // As for idle HTTP/1.1 connections: at most maxIdlePerEndpoint sessions without streams per endpoint.
    if (this.pool.idleSessions(this.key) > this.maxIdle) {
      this.drain();
      return;
    }
    this.session.unref();
    this.clearTimer();
    if (this.idleTimeoutMs > 0) this.timer = setTimeout(onIdleTimeout, this.idleTimeoutMs, this);
  }

  onIdleTimeout(): void {
    this.timer = null;
    if (this.active === 0) this.drain();
  }

  /** No new streams; the session closes (GOAWAY) once its streams are done. */
  drain(): void {
    this.draining = true;
    if (this.active === 0 && !this.closed) this.session.close();
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

function onConnectTimeout(s: H2Session): void {
  s.onConnectTimeout();
}

function onIdleTimeout(s: H2Session): void {
  s.onIdleTimeout();
}

export class H2SessionPool {
  private readonly sessions = new Map<string, H2Session[]>();
  private closed = false;

  /** Sessions open now (for tests and stats). */
  get sessionCount(): number {
    let n = 0;
    for (const list of this.sessions.values()) n += list.length;
    return n;
  }

  /** Open sessions, by whether they carry streams now (agw_upstream_http2_sessions). */
  sessionStates(): { idle: number; active: number } {
    let idle = 0;
    let active = 0;
    for (const list of this.sessions.values())
      for (const s of list) {
        if (s.active > 0) active++;
        else idle++;
      }
    return { idle, active };
  }

  /** Connected sessions to `key` that carry no stream and take new ones. */
  idleSessions(key: string): number {
    let n = 0;
    for (const s of this.sessions.get(key) ?? []) if (s.connected && s.active === 0 && !s.draining) n++;
    return n;
  }

  /** A session to `ep` with room for one more stream, opened when none has. */
  session(ep: Endpoint, cluster: ClusterRuntime, avoid: H2Session | null): H2Session {
    let list = this.sessions.get(ep.key);
    if (list === undefined) {
      list = [];
      this.sessions.set(ep.key, list);
    }
    for (let i = 0; i < list.length; i++) {
      const s = list[i] as H2Session;
      if (s !== avoid && s.hasRoom()) return s;
    }
    const s = new H2Session(this, ep, cluster);
    if (this.closed) s.drain();
    list.push(s);
    return s;
  }

  /** @internal a session closed. */
  forget(s: H2Session): void {
    const list = this.sessions.get(s.key);
    const i = list === undefined ? -1 : list.indexOf(s);
    if (list === undefined || i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.sessions.delete(s.key);
  }

  /** Sessions to endpoints whose key is not in `keys` take no new streams and close when done. */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const [key, list] of this.sessions) if (!keys.has(key)) for (const s of list) s.drain();
  }

  /** Every session closes once its streams are done; no new ones open. */
  close(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const s of list) s.drain();
  }
}

/** One request to one endpoint over HTTP/2; events go to `sink`, never synchronously from a method. */
export class H2Call {
  private readonly pool: H2SessionPool;
  private readonly ep: Endpoint;
  private readonly cluster: ClusterRuntime;
  private readonly headers: http2.OutgoingHttpHeaders;
  private sink: H2CallSink | null;
  private session: H2Session | null = null;
  private stream: http2.ClientHttp2Stream | null = null;
  /** Body chunks sent so far, while they may still have to be resent; null once over the limit. */
  private replay: Buffer[] | null = [];
  private replayBytes = 0;
  private requestEnded: boolean;
  private resends = 0;
  private responded = false;
  private trailers: http2.IncomingHttpHeaders | null = null;
  private paused = false;
  private done = false;

  constructor(
    pool: H2SessionPool,
    ep: Endpoint,
    cluster: ClusterRuntime,
    headers: http2.OutgoingHttpHeaders,
    endStream: boolean,
    sink: H2CallSink,
    sentBody: readonly Buffer[] = [],
  ) {
    this.pool = pool;
    this.ep = ep;
    this.cluster = cluster;
    this.headers = headers;
    this.requestEnded = endStream;
    this.sink = sink;
    // A retry of a request whose body was already sent (whole) to another endpoint.
    for (const chunk of sentBody) {
      (this.replay as Buffer[]).push(chunk);
      this.replayBytes += chunk.length;
    }
    this.open();
  }

  /** Whether the whole request sent so far is still at hand (a retry elsewhere can resend it). */
  get replayable(): boolean {
    return this.replay !== null;
  }

  /** The body sent so far, when replayable. */
  get sentBody(): readonly Buffer[] {
    return this.replay ?? [];
  }

  write(chunk: Buffer): boolean {
    const r = this.replay;
    if (r !== null) {
      this.replayBytes += chunk.length;
      if (this.replayBytes > MAX_REPLAY_BYTES) this.replay = null;
      else r.push(chunk);
    }
    const s = this.stream;
    return s === null || s.destroyed ? true : s.write(chunk);
  }

  end(): void {
    this.requestEnded = true;
    const s = this.stream;
    if (s !== null && !s.destroyed) s.end();
  }

  /** Response backpressure: the downstream is full. */
  pause(): void {
    this.paused = true;
    this.stream?.pause();
  }

  resume(): void {
    this.paused = false;
    this.stream?.resume();
  }

  /** Abandons the call: the stream is reset (CANCEL) and the sink hears nothing more. */
  cancel(): void {
    this.sink = null;
    this.done = true;
    const s = this.stream;
    if (s !== null && !s.destroyed) s.close(NGHTTP2_CANCEL);
  }

  private open(): void {
    const session = this.pool.session(this.ep, this.cluster, this.session);
    this.session = session;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(this.headers, this.requestEnded && this.replayBytes === 0);
    } catch (e) {
      session.drain();
      setImmediate(() => this.fail("reset", `could not open a stream: ${(e as Error).message}`));
      return;
    }
    this.stream = stream;
    stream.on("error", noop);
    stream.on("response", (headers: http2.IncomingHttpHeaders, flags: number) => {
      if (this.done) return;
      this.responded = true;
      this.sink?.onH2Response(headers, (flags & NGHTTP2_FLAG_END_STREAM) !== 0);
    });
    stream.on("data", (chunk: Buffer) => {
      if (!this.done) this.sink?.onH2Data(chunk);
    });
    // Trailers may arrive while earlier DATA is still buffered (paused): they are passed on at 'end'.
    stream.on("trailers", (headers: http2.IncomingHttpHeaders) => {
      this.trailers = headers;
    });
    stream.on("end", () => {
      if (this.done || !this.responded) return;
      // node ends the readable side of a reset stream too: only a clean END_STREAM completes it.
      const rst = stream.rstCode;
      if (rst !== undefined && rst !== NGHTTP2_NO_ERROR) {
        this.fail("reset", "the upstream reset the stream during the response");
        return;
      }
      this.done = true;
      // The response is complete: the upstream no longer needs the rest of the request.
      if (!this.requestEnded && !stream.destroyed) stream.close(NGHTTP2_NO_ERROR);
      const sink = this.sink;
      this.sink = null;
      sink?.onH2End(this.trailers);
    });
    stream.on("drain", () => this.sink?.onH2Drain());
    stream.on("close", () => this.onClose(stream, session));
    if (this.paused) stream.pause();
    if (this.replay !== null && this.replayBytes > 0) {
      for (const chunk of this.replay) stream.write(chunk);
      if (this.requestEnded) stream.end();
    }
  }

  private onClose(stream: http2.ClientHttp2Stream, session: H2Session): void {
    if (this.done || stream !== this.stream) return;
    if (this.responded) {
      this.fail("reset", "the upstream reset the stream during the response");
      return;
    }
    if (session.connected && stream.rstCode === NGHTTP2_REFUSED_STREAM) {
      // Never processed by the upstream: safe to resend, on another session.
      if (session.active >= 1) session.streamLimit = Math.max(1, session.active);
      if (this.replay !== null && this.resends < MAX_REFUSED_RESENDS) {
        this.resends++;
        this.stream = null;
        this.open();
        return;
      }
      this.fail("reset", "the upstream refused the stream");
      return;
    }
    if (!session.connected) {
      if (session.tlsFailure !== null) this.fail("tls", session.tlsFailure);
      else if (session.connectTimedOut) this.fail("connect_timeout", "timed out connecting to the upstream");
      else
        this.fail(
          "connect_failure",
          `could not connect to the upstream${session.error ? `: ${session.error.message}` : ""}`,
        );
      return;
    }
    this.fail("reset", "the upstream reset the stream before responding");
  }

  private fail(kind: H2FailureKind, message: string): void {
    if (this.done) return;
    this.done = true;
    const sink = this.sink;
    this.sink = null;
    sink?.onH2Failure(kind, message, this.responded);
  }
}

function noop(): void {}
