/**
 * A Kubernetes exec probe for an admin endpoint on the pod's loopback (the admins answer loopback
 * clients only, so the kubelet's httpGet, which dials the pod IP, cannot reach them):
 *
 *   node /app/cli/src/probe.ts URL          exit 0 on a 2xx answer (readiness)
 *   node /app/cli/src/probe.ts URL --live   exit 0 on any HTTP answer (liveness: the process serves)
 *
 * Imports nothing of AGW's, so a probe costs a Node start, not a gateway's module graph.
 */
const [url, mode] = process.argv.slice(2);
if (!url || (mode !== undefined && mode !== "--live")) {
  console.error("usage: probe.ts URL [--live]");
  process.exit(2);
}
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
  const ok = mode === "--live" || res.ok;
  if (!ok) console.error(`${url}: ${res.status}`);
  process.exit(ok ? 0 : 1);
} catch (e) {
  console.error(`${url}: ${(e as Error).message}`);
  process.exit(1);
}
