/**
 * The CLI's client of a control plane's admin API (agw top, agw config dump): the address as
 * --cp-admin gives it, the token (--admin-token or AGW_ADMIN_TOKEN) as a Bearer header, a bounded
 * wait, and errors that say what to do.
 */

/** `ADDR:PORT` or a URL, as --cp-admin takes it, to a base URL. */
export function adminBase(address: string): string {
  return /^https?:\/\//.test(address) ? address.replace(/\/$/, "") : `http://${address}`;
}

export async function adminGet(base: string, path: string, token: string | undefined): Promise<unknown> {
  const res = await fetch(`${base}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(5_000),
  }).catch((e: unknown) => {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    throw new Error(
      `cannot reach the control plane's admin at ${base} (${why}); is it running there? (--cp-admin)`,
    );
  });
  if (!res.ok) {
    const text = (await res.text()).trim();
    let why = text.slice(0, 200);
    try {
      why = String((JSON.parse(text) as { message?: unknown }).message ?? why);
    } catch {}
    const hint =
      res.status === 401 || res.status === 403
        ? token
          ? " (the token was refused)"
          : " (a remote admin needs --admin-token or AGW_ADMIN_TOKEN)"
        : "";
    throw new Error(`HTTP ${res.status}: ${why}${hint}`);
  }
  return res.json();
}
