/**
 * `agw top`: the fleet stats in a terminal, in the spirit of htop and k9s. It polls the control
 * plane's `/dashboard/state` (the admin API: loopback, or the token) and draws routes and clusters
 * sorted by rate, errors or p99, with plain ANSI escapes (works over SSH, no browser, no
 * dependency). It uses the alternate screen and raw keys, and restores the terminal however it ends
 * (q, Ctrl-C, SIGTERM, SIGHUP when the SSH session goes, or an error).
 */
import { parseArgs } from "node:util";
import { adminBase, adminGet } from "./admin-client.ts";

export const TOP_USAGE = `Usage: agw top [options]

Live routes and clusters of a running gateway, from its control plane's admin API.

  --cp-admin ADDR:PORT     the control plane's admin (default 127.0.0.1:9902)
  --admin-token TOKEN      for a remote control plane started with --admin-token (also AGW_ADMIN_TOKEN)
  --sort KEY               rate (default), errors, p99 or name
  --interval S             seconds between refreshes (default 1)
  --once                   print one frame as plain text and exit (scripts, no terminal needed)

Keys: r rate · e errors · p p99 · n name · / filter (Enter applies, Esc clears) · q quit`;

type SortKey = "rate" | "errors" | "p99" | "name";
const SORTS: readonly SortKey[] = ["rate", "errors", "p99", "name"];

interface Stat {
  key: string;
  rps: number;
  error_ratio: number;
  p50_ms: number;
  p99_ms: number;
  rps_series?: number[];
}

interface State {
  at: number;
  interval_ms: number;
  gateway: { rps: number[]; error_ratio: number[]; p50_ms: number[]; p99_ms: number[] };
  stats: { routes: Stat[]; clusters: Stat[]; nodes: Stat[] };
  listeners: { name: string; routes: { route: string; key: string; target: string }[] }[];
  clusters: { name: string; key: string; endpoints: { address: string; health: string }[] }[];
  data_planes: { node: string; in_sync: boolean }[];
  snapshot: Record<string, string>;
}

export interface Row {
  name: string;
  detail: string;
  rps: number;
  errorRatio: number;
  p50: number;
  p99: number;
  trend: number[];
  bad: boolean;
}

const ESC = "\x1b[";
const BOLD = `${ESC}1m`;
const DIM = `${ESC}2m`;
const RED = `${ESC}31m`;
const GREEN = `${ESC}32m`;
const INVERSE = `${ESC}7m`;
const RESET = `${ESC}0m`;
const SPARK = "▁▂▃▄▅▆▇█";

function sparkline(values: readonly number[], width: number): string {
  const v = values.slice(-width);
  const max = Math.max(...v, 0);
  if (max === 0) return "".padEnd(v.length, "▁");
  return v.map((x) => SPARK[Math.min(7, Math.floor((x / max) * 7.999))]).join("");
}

function num(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return "-";
  return n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n.toFixed(digits);
}

/** Routes and clusters of the state, with their latest stats (zero when idle). */
export function rowsOf(state: State): { routes: Row[]; clusters: Row[] } {
  const stats = new Map([...state.stats.routes, ...state.stats.clusters].map((s) => [s.key, s]));
  const row = (key: string, name: string, detail: string, bad: boolean): Row => {
    const s = stats.get(key);
    return {
      name,
      detail,
      rps: s?.rps ?? 0,
      errorRatio: s?.error_ratio ?? 0,
      p50: s?.p50_ms ?? 0,
      p99: s?.p99_ms ?? 0,
      trend: s?.rps_series ?? [],
      bad,
    };
  };
  return {
    routes: state.listeners.flatMap((l) =>
      l.routes.map((r) => row(r.key, `${l.name}/${r.route}`, `→ ${r.target}`, false)),
    ),
    clusters: state.clusters.map((c) => {
      const down = c.endpoints.filter((e) => e.health === "unhealthy" || e.health === "ejected").length;
      return row(c.key, c.name, `${c.endpoints.length - down}/${c.endpoints.length} up`, down > 0);
    }),
  };
}

export function sortRows(rows: Row[], by: SortKey, filter: string): Row[] {
  const f = filter.toLowerCase();
  const kept = f ? rows.filter((r) => r.name.toLowerCase().includes(f)) : [...rows];
  const key: Record<SortKey, (r: Row) => number> = {
    rate: (r) => r.rps,
    errors: (r) => r.errorRatio,
    p99: (r) => r.p99,
    name: () => 0,
  };
  return kept.sort((a, b) => key[by](b) - key[by](a) || a.name.localeCompare(b.name));
}

interface View {
  sort: SortKey;
  filter: string;
  /** Text being typed after "/", or undefined. */
  typing: string | undefined;
  error: string | undefined;
}

/** One screen of text (lines), `width` × `height`; `color` off for --once and plain output. */
export function frame(
  state: State | undefined,
  view: View,
  width: number,
  height: number,
  color: boolean,
): string[] {
  const c = (code: string, text: string) => (color ? `${code}${text}${RESET}` : text);
  const lines: string[] = [];
  const at = state ? new Date(state.at).toLocaleTimeString() : "-";
  const nodes = state?.data_planes.length ?? 0;
  const synced = state?.data_planes.filter((d) => d.in_sync).length ?? 0;
  lines.push(
    c(
      BOLD,
      `agw top · ${at} · data planes ${synced}/${nodes} in sync · sort: ${view.sort}${view.filter ? ` · filter: ${view.filter}` : ""}`,
    ),
  );
  if (view.error) lines.push(c(RED, `cannot reach the control plane: ${view.error}`));
  if (!state) return lines;
  const g = state.gateway;
  const last = (a: number[]) => a[a.length - 1] ?? 0;
  lines.push(
    `gateway  ${num(last(g.rps))} req/s  errors ${(last(g.error_ratio) * 100).toFixed(1)}%  p50 ${num(last(g.p50_ms), 2)} ms  p99 ${num(last(g.p99_ms), 2)} ms  ${sparkline(g.rps, 30)}`,
  );
  const { routes, clusters } = rowsOf(state);
  const nameWidth = Math.max(16, Math.min(40, width - 70));
  const header = (title: string) =>
    c(
      INVERSE,
      `${title.padEnd(nameWidth)} ${"REQ/S".padStart(8)} ${"ERR%".padStart(6)} ${"P50ms".padStart(8)} ${"P99ms".padStart(8)}  TREND${"".padEnd(Math.max(0, width - nameWidth - 41))}`.slice(
        0,
        width,
      ),
    );
  const line = (r: Row) => {
    const text = `${r.name.slice(0, nameWidth).padEnd(nameWidth)} ${num(r.rps).padStart(8)} ${(r.errorRatio * 100).toFixed(1).padStart(6)} ${num(r.p50, 2).padStart(8)} ${num(r.p99, 2).padStart(8)}  ${sparkline(r.trend, 20).padEnd(20)} ${r.detail}`;
    const cut = text.slice(0, width);
    return r.bad || r.errorRatio > 0.01 ? c(RED, cut) : r.rps > 0 ? cut : c(DIM, cut);
  };
  const room = Math.max(2, height - lines.length - 5);
  const routeRoom = Math.max(1, Math.ceil(room * 0.6));
  const sortedRoutes = sortRows(routes, view.sort, view.filter);
  lines.push("", header(`ROUTES (${sortedRoutes.length})`));
  for (const r of sortedRoutes.slice(0, routeRoom)) lines.push(line(r));
  const sortedClusters = sortRows(clusters, view.sort, view.filter);
  lines.push("", header(`CLUSTERS (${sortedClusters.length})`));
  for (const r of sortedClusters.slice(0, Math.max(1, room - routeRoom))) lines.push(line(r));
  const help =
    view.typing !== undefined
      ? `filter: ${view.typing}_  (Enter applies, Esc clears)`
      : "r rate · e errors · p p99 · n name · / filter · q quit";
  while (lines.length < height - 1) lines.push("");
  lines.push(c(GREEN, help.slice(0, width)));
  return lines.slice(0, height);
}

async function fetchState(base: string, token: string | undefined): Promise<State> {
  return (await adminGet(base, "/dashboard/state", token)) as State;
}

export async function topCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "cp-admin": { type: "string" },
      "admin-token": { type: "string" },
      sort: { type: "string" },
      interval: { type: "string" },
      once: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(TOP_USAGE);
    return 0;
  }
  const sort = (values.sort ?? "rate") as SortKey;
  if (!SORTS.includes(sort)) {
    console.error(`agw top: --sort: expected one of ${SORTS.join(", ")}, got "${values.sort}"`);
    return 2;
  }
  const intervalMs = Number(values.interval ?? 1) * 1000;
  if (!(intervalMs >= 100)) {
    console.error(`agw top: --interval: expected seconds ≥ 0.1, got "${values.interval}"`);
    return 2;
  }
  const address = values["cp-admin"] ?? "127.0.0.1:9902";
  const base = adminBase(address);
  const token = values["admin-token"] ?? process.env.AGW_ADMIN_TOKEN;
  const view: View = { sort, filter: "", typing: undefined, error: undefined };

  if (values.once || !process.stdout.isTTY || !process.stdin.isTTY) {
    const state = await fetchState(base, token).catch((e: unknown) => {
      view.error = (e as Error).message;
      return undefined;
    });
    const lines = frame(state, view, process.stdout.columns || 120, 1000, false);
    console.log(lines.join("\n").trimEnd());
    return state ? 0 : 1;
  }

  const out = process.stdout;
  const stdin = process.stdin;
  let state: State | undefined;
  let timer: NodeJS.Timeout | undefined;
  let restored = false;
  let finished: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => {
    finished = resolve;
  });
  const draw = () => {
    const lines = frame(state, view, out.columns || 80, out.rows || 24, true);
    // Home, then each line cleared to its end: no flicker, no scrolling.
    out.write(`${ESC}H${lines.map((l) => `${l}${ESC}K`).join("\r\n")}${ESC}J`);
  };
  const refresh = async () => {
    try {
      state = await fetchState(base, token);
      view.error = undefined;
    } catch (e) {
      view.error = (e as Error).message;
    }
    if (restored) return;
    draw();
    timer = setTimeout(refresh, intervalMs);
  };
  const restore = () => {
    if (restored) return;
    restored = true;
    clearTimeout(timer);
    stdin.setRawMode(false);
    stdin.pause();
    out.write(`${ESC}0m${ESC}?25h${ESC}?1049l`);
  };
  const quit = (code: number) => {
    restore();
    finished(code);
  };
  const onData = (data: Buffer) => {
    const text = data.toString("utf8");
    // An escape sequence (arrow keys, ...) is one chunk: ignored. Otherwise keys typed or pasted
    // quickly arrive together and are taken one by one.
    if (text.startsWith("\x1b") && text.length > 1) return;
    for (const key of text) onKey(key);
  };
  const onKey = (key: string) => {
    if (view.typing !== undefined) {
      if (key === "\r" || key === "\n") {
        view.filter = view.typing;
        view.typing = undefined;
      } else if (key === "\x1b") {
        view.filter = "";
        view.typing = undefined;
      } else if (key === "\x7f" || key === "\b") view.typing = view.typing.slice(0, -1);
      else if (key === "\x03") return quit(130);
      else if (/^[\x20-\x7e]$/.test(key)) view.typing = (view.typing + key).slice(0, 64);
      draw();
      return;
    }
    switch (key) {
      case "q":
      case "\x03":
        return quit(key === "q" ? 0 : 130);
      case "r":
        view.sort = "rate";
        break;
      case "e":
        view.sort = "errors";
        break;
      case "p":
        view.sort = "p99";
        break;
      case "n":
        view.sort = "name";
        break;
      case "/":
        view.typing = "";
        break;
      case "\x1b":
        view.filter = "";
        break;
      default:
        return;
    }
    draw();
  };
  const onSignal = (signal: NodeJS.Signals) => quit(signal === "SIGHUP" ? 129 : 143);
  process.once("SIGTERM", onSignal);
  process.once("SIGHUP", onSignal);
  process.once("exit", restore);
  out.on("resize", draw);
  out.write(`${ESC}?1049h${ESC}?25l${ESC}2J`);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.on("data", onData);
  try {
    await refresh();
    return await done;
  } catch (e) {
    restore();
    throw e;
  } finally {
    restore();
    stdin.off("data", onData);
    out.off("resize", draw);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
  }
}
