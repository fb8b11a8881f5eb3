/**
 * L4 listeners (docs/l4.md): a TCP proxy (Envoy's tcp_proxy) and TLS passthrough routed by the
 * ClientHello's server name (tls_inspector + filter_chain_match server_names). One L4Proxy serves one
 * bound port. A connection reads the config reference once, at accept, and keeps it: a push applies
 * to new connections.
 *
 * TCP: the upstream connection is opened at accept, the client's bytes wait in the kernel until it is
 * up. TLS passthrough: the ClientHello is read (client-hello.ts) within a size limit and a time limit
 * counted from the accept (no re-arming per byte: a trickling client is cut at the deadline), the
 * server name picks the cluster, and the bytes read are replayed to the endpoint before splicing.
 *
 * The endpoint is chosen, admitted and judged by the same cluster code as HTTP requests
 * (cluster/traffic.ts): load balancing, health checks, outlier detection (a failed connect is a
 * gateway error, an established connection a success), the circuit breaker (a connection holds one
 * request and one connection slot for its life). Half-closes are passed on (allowHalfOpen on both
 * sides); a reset or an unexpected close on one side destroys the other.
 */
import net from "node:net";
import { RequestTraffic } from "../cluster/traffic.ts";
import type { L4ConnectionObserver, L4ConnectionView } from "../observability/connection.ts";
import { peerAddress } from "../policies/client-address.ts";
import type { ClusterRuntime, L4ListenerRuntime, RuntimeConfig } from "../runtime/types.ts";
import { lookupServerName } from "../tls/sni.ts";
import { ALERT_DECODE_ERROR, ALERT_UNRECOGNIZED_NAME, ClientHelloReader, tlsAlert } from "./client-hello.ts";

export interface L4ProxyOptions {
  readonly listenerName: string;
  readonly getConfig: () => RuntimeConfig;
  readonly observer?: L4ConnectionObserver | undefined;
}

const noop = () => {};

export class L4Proxy {
  readonly listenerName: string;
  readonly getConfig: () => RuntimeConfig;
  readonly observer: L4ConnectionObserver | undefined;
  readonly connections = new Set<L4Connection>();

  constructor(options: L4ProxyOptions) {
    this.listenerName = options.listenerName;
    this.getConfig = options.getConfig;
    this.observer = options.observer;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  handleConnection(socket: net.Socket): void {
    const config = this.getConfig();
    const settings = config.listeners.get(this.listenerName)?.l4;
    if (settings === undefined) {
      socket.destroy();
      return;
    }
    const conn = new L4Connection(this, config, settings, socket);
    if (settings.maxConnections > 0 && this.connections.size >= settings.maxConnections) {
      conn.fail("overflow");
      return;
    }
    this.connections.add(conn);
    conn.start();
  }

  /** A TCP stream has no request boundary to stop at: draining lets connections run to their end. */
  shutdown(): void {}

  destroyAll(): void {
    for (const c of [...this.connections]) c.fail("drained");
  }
}

class L4Connection implements L4ConnectionView {
  readonly listener: string;
  readonly protocol: L4ListenerRuntime["kind"];
  readonly clientIp: string;
  readonly startedAt = performance.now();
  serverName = "";
  cluster = "";
  endpoint = "";
  outcome = "";
  private readonly proxy: L4Proxy;
  private readonly config: RuntimeConfig;
  private readonly settings: L4ListenerRuntime;
  private readonly socket: net.Socket;
  private readonly traffic = new RequestTraffic(noop);
  private hello: ClientHelloReader | null = null;
  /** The attempt in progress, then the established upstream. */
  private connecting: net.Socket | null = null;
  private upstream: net.Socket | null = null;
  private attempts = 0;
  private timer: NodeJS.Timeout | null = null;
  private lastActivity = 0;
  private downEnded = false;
  private upEnded = false;
  private downClosed = false;
  private upClosed = false;
  private reported = false;

  constructor(proxy: L4Proxy, config: RuntimeConfig, settings: L4ListenerRuntime, socket: net.Socket) {
    this.proxy = proxy;
    this.listener = proxy.listenerName;
    this.config = config;
    this.settings = settings;
    this.protocol = settings.kind;
    this.socket = socket;
    this.clientIp = peerAddress(socket);
  }

  get bytesReceived(): number {
    return this.socket.bytesRead;
  }

  get bytesSent(): number {
    return this.socket.bytesWritten;
  }

  start(): void {
    const s = this.socket;
    s.setNoDelay(true);
    s.on("error", noop);
    s.on("end", () => this.downstreamEnd());
    s.on("close", (hadError) => this.downstreamClose(hadError));
    if (this.settings.kind === "tcp") {
      s.pause();
      this.connect(this.settings.cluster);
      return;
    }
    this.hello = new ClientHelloReader(this.settings.maxClientHelloBytes);
    s.on("data", this.onHelloData);
    this.arm(this.settings.clientHelloTimeoutMs, () => this.fail("client_hello_timeout"));
  }

  private readonly onHelloData = (chunk: Buffer): void => {
    const r = (this.hello as ClientHelloReader).push(chunk);
    if (r.state === "more") return;
    this.socket.pause();
    this.socket.off("data", this.onHelloData);
    this.clearTimer();
    if (r.state === "error") {
      this.refuse(r.code, ALERT_DECODE_ERROR);
      return;
    }
    this.serverName = r.serverName;
    const cluster =
      (r.serverName === "" ? undefined : lookupServerName(this.settings.sni, r.serverName)) ??
      this.settings.cluster;
    if (cluster === "") {
      this.refuse("route_not_found", ALERT_UNRECOGNIZED_NAME);
      return;
    }
    this.connect(cluster);
  };

  /** Answers a TLS alert and closes; the client's ClientHello goes nowhere. */
  private refuse(outcome: string, alert: number): void {
    this.outcome = outcome;
    this.socket.end(tlsAlert(alert));
    this.socket.destroySoon();
  }

  private connect(name: string): void {
    this.cluster = name;
    const cluster = this.config.clusters.get(name);
    if (cluster === undefined) this.fail("cluster_not_found");
    else if (!this.traffic.begin(cluster, null, null)) this.fail("overflow");
    else this.attempt(cluster);
  }

  private attempt(cluster: ClusterRuntime): void {
    const ep = this.traffic.nextEndpoint(this.clientIp);
    if (ep === undefined) {
      this.fail("no_healthy_upstream");
      return;
    }
    this.attempts++;
    this.traffic.attemptStarted(ep);
    this.endpoint = ep.key;
    const up = net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true });
    this.connecting = up;
    const failed = (code: string, kind: "connect_failure" | "timeout") => {
      up.off("connect", connected);
      up.destroy();
      this.connecting = null;
      this.clearTimer();
      if (this.downClosed) return;
      this.traffic.attemptFailed(kind, false);
      if (this.attempts < this.settings.maxConnectAttempts) this.attempt(cluster);
      else this.fail(code);
    };
    const onError = () => failed("upstream_connect_failed", "connect_failure");
    const connected = () => {
      up.off("error", onError);
      this.clearTimer();
      this.connecting = null;
      this.traffic.connected();
      this.established(up);
    };
    up.once("connect", connected);
    up.once("error", onError);
    if (cluster.connectTimeoutMs > 0)
      this.arm(cluster.connectTimeoutMs, () => failed("upstream_connect_timeout", "timeout"));
  }

  private established(up: net.Socket): void {
    this.upstream = up;
    const down = this.socket;
    const replay = this.hello?.received ?? [];
    this.hello = null;
    for (const chunk of replay) up.write(chunk);
    down.on("data", (chunk: Buffer) => {
      this.lastActivity = performance.now();
      if (!up.write(chunk)) down.pause();
    });
    up.on("drain", () => down.resume());
    up.on("data", (chunk: Buffer) => {
      this.lastActivity = performance.now();
      if (!down.write(chunk)) up.pause();
    });
    down.on("drain", () => up.resume());
    up.on("error", noop);
    up.on("end", () => {
      this.upEnded = true;
      down.end();
    });
    up.on("close", (hadError) => this.upstreamClose(hadError));
    if (this.downEnded) up.end();
    down.resume();
    this.lastActivity = performance.now();
    if (this.settings.idleTimeoutMs > 0) this.arm(this.settings.idleTimeoutMs, this.checkIdle);
  }

  /** Re-armed lazily: data only stamps lastActivity, the timer looks at it when it fires. */
  private readonly checkIdle = (): void => {
    const ms = this.settings.idleTimeoutMs;
    const idle = performance.now() - this.lastActivity;
    if (idle >= ms) this.fail("idle_timeout");
    else this.arm(Math.ceil(ms - idle), this.checkIdle);
  };

  private downstreamEnd(): void {
    this.downEnded = true;
    if (this.upstream !== null) this.upstream.end();
    else if (this.hello !== null) this.fail("client_hello_invalid");
  }

  private downstreamClose(hadError: boolean): void {
    this.downClosed = true;
    const up = this.upstream ?? this.connecting;
    if (up !== null && !this.upClosed && (hadError || !this.downEnded)) {
      if (this.outcome === "") this.outcome = "downstream_reset";
      up.destroy();
    }
    if (this.upstream === null || this.upClosed) this.report();
  }

  private upstreamClose(hadError: boolean): void {
    this.upClosed = true;
    if (!this.downClosed && (hadError || !this.upEnded)) {
      if (this.outcome === "") this.outcome = "upstream_reset";
      this.socket.destroy();
    }
    if (this.downClosed) this.report();
  }

  /** Ends the connection now: both sides are destroyed, the report follows their close. */
  fail(outcome: string): void {
    if (this.outcome === "") this.outcome = outcome;
    this.clearTimer();
    this.connecting?.destroy();
    this.upstream?.destroy();
    this.socket.destroy();
    if (!this.proxy.connections.has(this)) this.report();
  }

  private report(): void {
    if (this.reported) return;
    this.reported = true;
    this.clearTimer();
    this.traffic.end();
    this.proxy.connections.delete(this);
    this.proxy.observer?.l4ConnectionEnd(this, performance.now());
  }

  private arm(ms: number, fn: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(fn, ms);
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
