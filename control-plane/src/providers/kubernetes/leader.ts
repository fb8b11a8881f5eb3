/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: the
 * holder renews every `renewMs`; another replica takes the Lease only once `leaseDurationSeconds`
 * passed without a renewal. Writes use the Lease's resourceVersion, so two replicas racing for it
 * cannot both win. Only the leader writes status; every replica serves xDS regardless.
 */
import type { Logger } from "@agw/core";
import { KubeApiError, type KubeClient } from "./client.ts";

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  renewMs: number;
  log: Logger;
  onChange: (leading: boolean) => void;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    renewTime?: string;
    acquireTime?: string;
    leaseTransitions?: number;
  };
}

function microTime(date: Date): string {
  return date.toISOString().replace("Z", "000Z");
}

export class LeaderElector {
  private readonly options: LeaderElectionOptions;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private leadingSince: Date | undefined;
  /** When we last saw someone else's lease change; expiry is judged by our own clock, not theirs. */
  private observed: { renewTime: string; at: number } | undefined;

  constructor(options: LeaderElectionOptions) {
    this.options = options;
  }

  get leading(): boolean {
    return this.leadingSince !== undefined;
  }

  start(): void {
    void this.tick();
  }

  /** Stops renewing and, when leading, releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.read();
      if (lease?.spec?.holderIdentity === this.options.identity) {
        await this.write({
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: microTime(new Date()),
          },
        });
      }
    } catch {}
  }

  private path(name = ""): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${this.options.namespace}/leases`;
    return name ? `${base}/${name}` : base;
  }

  private async read(): Promise<Lease | undefined> {
    try {
      return await this.options.client.request<Lease>("GET", this.path(this.options.name));
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  private write(lease: Lease): Promise<Lease> {
    return this.options.client.request<Lease>("PUT", this.path(this.options.name), lease);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leadingSince = leading ? new Date() : undefined;
    this.options.log.info(
      { identity: this.options.identity, leading },
      leading ? "became leader" : "lost leadership",
    );
    this.options.onChange(leading);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      this.setLeading(await this.tryAcquireOrRenew());
    } catch (err) {
      this.options.log.warn({ err: String(err) }, "leader election: lease update failed");
      this.setLeading(false);
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.options.renewMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { identity, leaseDurationSeconds } = this.options;
    const now = new Date();
    const lease = await this.read();
    if (!lease) {
      await this.options.client.request("POST", this.path(), {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.options.name, namespace: this.options.namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    if (holder && holder !== identity) {
      const renewTime = spec.renewTime ?? "";
      if (this.observed?.renewTime !== renewTime) this.observed = { renewTime, at: Date.now() };
      const expired =
        Date.now() - this.observed.at > (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
      if (!expired) return false;
    }
    try {
      await this.write({
        ...lease,
        spec: {
          ...spec,
          holderIdentity: identity,
          leaseDurationSeconds,
          renewTime: microTime(now),
          ...(holder === identity
            ? {}
            : { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
        },
      });
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 409) return false;
      throw e;
    }
  }
}
