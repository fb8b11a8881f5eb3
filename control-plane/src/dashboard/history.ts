/**
 * Config history for the dashboard: the last published versions, each with what changed (listeners,
 * routes, clusters, plugins, secrets added, removed or changed, with a line diff of the changed ones)
 * and which source changed it. A Secret's material never shows: only that it changed. Everything is bounded: entries, changes per entry, lines per diff.
 */
import { type Ir, redact, shortType, TYPE_URL, type TypeUrl } from "@agw/core";
import { routeResourceName, type Snapshot } from "../xds/resources.ts";

export interface ConfigChange {
  kind: "listener" | "route" | "cluster" | "plugin" | "secret";
  name: string;
  change: "added" | "removed" | "changed";
  /** Changed resources: unified-style lines ("  " same, "- " before, "+ " after), bounded. */
  diff?: string[];
}

export interface HistoryEntry {
  at: string;
  versions: Record<string, string>;
  /**
   * Which sources changed it: "file PATH", the Kubernetes objects ("GatewayRoute ns/name",
   * "HTTPRoute ns/name", "EndpointSlice ns/name", …, "and N more objects"), "kubernetes" for the
   * initial list, "start".
   */
  source: string;
  changes: ConfigChange[];
  /** Changes left out past the bound. */
  more: number;
}

const MAX_CHANGES = 200;
const MAX_DIFF_LINES = 120;
/** Above this many lines on either side a diff is not computed (quadratic), only announced. */
const MAX_COMPARED_LINES = 400;

/** Which IR object each snapshot resource comes from (kind and name as the dashboard shows them). */
const KINDS: readonly [TypeUrl, ConfigChange["kind"]][] = [
  [TYPE_URL.listener, "listener"],
  [TYPE_URL.route, "route"],
  [TYPE_URL.cluster, "cluster"],
  [TYPE_URL.endpoints, "cluster"],
  [TYPE_URL.plugin, "plugin"],
  [TYPE_URL.secret, "secret"],
];

/** The IR object behind a resource, as shown in a diff (redacted; a Secret never: only its name). */
function irObject(ir: Ir | undefined, kind: ConfigChange["kind"], name: string): unknown {
  switch (kind) {
    case "listener": {
      const l = ir?.listeners.find((x) => x.name === name);
      if (!l) return undefined;
      const { routes: _, ...listener } = l;
      return listener;
    }
    case "route":
      for (const l of ir?.listeners ?? [])
        for (const r of l.routes) if (routeResourceName(l.name, r.name) === name) return r;
      return undefined;
    case "cluster":
      return ir?.clusters.find((c) => c.name === name);
    case "plugin":
      return ir?.plugins?.find((p) => p.name === name);
    case "secret":
      return { name, material: "(changed; not shown)" };
  }
}

function pretty(value: unknown): string {
  return JSON.stringify(redact(value), null, 2) ?? "";
}

/** A line diff (longest common subsequence) of two texts, or a note when they are too long. */
export function lineDiff(before: string, after: string): string[] {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length > MAX_COMPARED_LINES || b.length > MAX_COMPARED_LINES)
    return [`(${a.length} → ${b.length} lines: too large to compare here; see /config_dump)`];
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      (lcs[i] as number[])[j] =
        a[i] === b[j]
          ? ((lcs[i + 1] as number[])[j + 1] as number) + 1
          : Math.max((lcs[i + 1] as number[])[j] as number, (lcs[i] as number[])[j + 1] as number);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (
      j < b.length &&
      (i >= a.length || ((lcs[i] as number[])[j + 1] as number) >= ((lcs[i + 1] as number[])[j] as number))
    ) {
      out.push(`+ ${b[j]}`);
      j++;
    } else {
      out.push(`- ${a[i]}`);
      i++;
    }
  }
  // Keep the changed lines with two lines of context around them.
  const keep = out.map((_line, k) => out.slice(Math.max(0, k - 2), k + 3).some((l) => !l.startsWith("  ")));
  const shown = out.filter((_, k) => keep[k]);
  return shown.length > MAX_DIFF_LINES
    ? [...shown.slice(0, MAX_DIFF_LINES), `… ${shown.length - MAX_DIFF_LINES} more lines`]
    : shown;
}

export class ConfigHistory {
  private readonly max: number;
  private readonly entries: HistoryEntry[] = [];
  private previous: { ir: Ir | undefined; snapshot: Snapshot | undefined } = {
    ir: undefined,
    snapshot: undefined,
  };

  constructor(max = 20) {
    this.max = max;
  }

  /**
   * A newly published config. What changed comes from the snapshot's per-resource versions (content
   * hashes, computed anyway), so only changed resources are turned into text for their diff.
   */
  record(ir: Ir, snapshot: Snapshot, source: string): void {
    const before = this.previous;
    const changes: ConfigChange[] = [];
    const seen = new Set<string>();
    let more = 0;
    const push = (kind: ConfigChange["kind"], name: string, change: ConfigChange["change"]) => {
      if (seen.has(`${kind}\n${name}`)) return;
      seen.add(`${kind}\n${name}`);
      if (changes.length >= MAX_CHANGES) {
        more++;
        return;
      }
      changes.push(
        change === "changed"
          ? {
              kind,
              name,
              change,
              diff: lineDiff(pretty(irObject(before.ir, kind, name)), pretty(irObject(ir, kind, name))),
            }
          : { kind, name, change },
      );
    };
    for (const [type, kind] of KINDS) {
      const snap = snapshot.get(type);
      const now = snap?.resources ?? new Map();
      const old = before.snapshot?.get(type)?.resources ?? new Map();
      if (now === old) continue;
      // The builder said what it replaced (same names): no need to compare 10,000 versions.
      const replaced = snap?.changedFrom;
      if (replaced && replaced.from.deref() === before.snapshot?.get(type)) {
        for (const r of replaced.updated) push(kind, r.name, "changed");
        continue;
      }
      for (const [name, r] of now) {
        const o = old.get(name);
        if (o === undefined) push(kind, name, type === TYPE_URL.endpoints ? "changed" : "added");
        else if (o.version !== r.version) push(kind, name, "changed");
      }
      for (const name of old.keys()) if (!now.has(name)) push(kind, name, "removed");
    }
    this.previous = { ir, snapshot };
    const versions = Object.fromEntries([...snapshot].map(([t, s]) => [shortType(t), s.version]));
    this.entries.unshift({ at: new Date().toISOString(), versions, source, changes, more });
    if (this.entries.length > this.max) this.entries.length = this.max;
  }

  /** Newest first. */
  list(): readonly HistoryEntry[] {
    return this.entries;
  }
}
