import type { ServerNameTable } from "../runtime/types.ts";

export type { ServerNameTable } from "../runtime/types.ts";

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
