/** The engine's response heads as field lists (exchange.ts builds them, each protocol writes them). */

/**
 * A response head as the gateway sends it: a field list (raw names, lower-case names, values) that only
 * the HTTP/1.1 side turns into bytes. Reused from response to response.
 */
export class FieldList {
  status = 0;
  readonly rawNames: string[] = [];
  readonly names: string[] = [];
  readonly values: string[] = [];

  clear(status: number): void {
    this.status = status;
    this.rawNames.length = 0;
    this.names.length = 0;
    this.values.length = 0;
  }

  push(rawName: string, name: string, value: string): void {
    this.rawNames.push(rawName);
    this.names.push(name);
    this.values.push(value);
  }

  /** A field whose name the caller knows to be lower-case. */
  add(name: string, value: string): void {
    this.rawNames.push(name);
    this.names.push(name);
    this.values.push(value);
  }

  /** Replaces every field named `name` (lower-case) by one with `value`. */
  set(name: string, value: string): void {
    const names = this.names;
    for (let i = names.length - 1; i >= 0; i--) {
      if (names[i] !== name) continue;
      names.splice(i, 1);
      this.rawNames.splice(i, 1);
      this.values.splice(i, 1);
    }
    this.add(name, value);
  }

  /** "name: value\r\n" lines, for an HTTP/1.1 head. */
  lines(): string {
    let h = "";
    const raw = this.rawNames;
    const values = this.values;
    for (let i = 0; i < raw.length; i++) h += `${raw[i]}: ${values[i]}\r\n`;
    return h;
  }
}
