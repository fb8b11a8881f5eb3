/**
 * The one server name lookup of the data plane: an exact name, then a "*.example.com" wildcard that
 * matches exactly one label (as Envoy's filter_chain_match server_names and the HTTPS listener's
 * certificate choice). Wildcards are kept under the name after "*.", so a lookup is two Map reads.
 */
export interface ServerNameTable<T> {
  readonly exact: ReadonlyMap<string, T>;
  /** "example.com" → the value of "*.example.com". */
  readonly wildcard: ReadonlyMap<string, T>;
}

/** `name` must be lower-case. */
export function lookupServerName<T>(table: ServerNameTable<T>, name: string): T | undefined {
  const exact = table.exact.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf(".");
  return dot > 0 ? table.wildcard.get(name.slice(dot + 1)) : undefined;
}

/** Adds `name` ("*.x" or exact, lower-cased); the first value given for a name wins. */
export function addServerName<T>(
  table: { exact: Map<string, T>; wildcard: Map<string, T> },
  name: string,
  value: T,
): void {
  const n = name.toLowerCase();
  const [map, key] = n.startsWith("*.") ? [table.wildcard, n.slice(2)] : [table.exact, n];
  if (!map.has(key)) map.set(key, value);
}
