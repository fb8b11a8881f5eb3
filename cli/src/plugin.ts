/**
 * `agw plugin new NAME` scaffolds a TypeScript guest; `agw plugin build DIR` makes its component with
 * the SDK (plugins/sdk/build.ts: componentize-qjs, then checked against the agw:plugin world).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";

export const PLUGIN_USAGE = `Usage: agw plugin new NAME [--dir DIR]
       agw plugin build DIR [-o FILE]

  new NAME        write a TypeScript guest to DIR (default ./NAME): plugin.ts and README.md
  build DIR       build DIR/plugin.ts into a component, DIR/<name of DIR>.wasm unless -o FILE;
                  it is checked against the agw:plugin world (wit/plugin.wit)`;

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

function template(name: string): string {
  return `/**
 * ${name}: an AGW plugin, a WebAssembly component for the agw:plugin@0.2.0 world (wit/plugin.wit).
 * on-request adds a header, named by its config, to every request it sees; on-response (called
 * when config.yaml sets \`onResponse: true\`) adds \`<header>-status\` with the upstream's status to
 * the response. Only erasable TypeScript: types are stripped before building (no enums, namespaces
 * or parameter properties).
 */
import { get as getConfig } from "agw:plugin/config@0.2.0";

type Headers = [string, string][];

interface Request {
  method: string;
  host: string;
  path: string;
  query: string;
  clientIp: string;
  headers: Headers;
  /** The whole request body when config.yaml sets \`requestBody: true\` (up to \`bodyLimit\`); else null. */
  body: Uint8Array | null;
}

interface Response {
  status: number;
  headers: Headers;
  /** The whole response body when config.yaml sets \`responseBody: true\`; else null. */
  body: Uint8Array | null;
}

interface Config {
  header?: string;
}

function header(): string {
  const config = JSON.parse(getConfig()) as Config;
  return config.header ?? "x-${name}";
}

export function onRequest(request: Request) {
  return {
    tag: "mutate",
    val: { setHeaders: [[header(), \`\${request.method} \${request.path}\`]], removeHeaders: [], path: undefined },
  };
}

export function onResponse(response: Response) {
  // status: a number changes it (200-599); undefined keeps the upstream's.
  return {
    tag: "mutate",
    val: { status: undefined, setHeaders: [[\`\${header()}-status\`, String(response.status)]], removeHeaders: [] },
  };
}
`;
}

/**
 * The README of a new plugin: a complete config.yaml (it passes `agw validate`, test/plugin-cli.test.ts
 * checks) for the directory `agw plugin new` ran in, and the loop that follows.
 */
export function readme(name: string, dir: string): string {
  return `# ${name}

An AGW plugin written in TypeScript (see docs/plugins.md for the world and the host imports).

\`\`\`sh
agw plugin build ${dir}          # → ${dir}/${name}.wasm
\`\`\`

config.yaml, next to \`${dir}/\` (a plugin's source is relative to config.yaml's directory):

\`\`\`yaml
plugins:
  - name: ${name}
    source: ${dir}/${name}.wasm
    onResponse: true          # also call onResponse (requestBody / responseBody: true hand over the bodies)
    config: { header: x-${name} }
listeners:
  - name: public
    address: 127.0.0.1
    port: 8080
    routes:
      - { name: all, cluster: app, plugins: [{ name: ${name} }] }
clusters:
  - name: app
    endpoints: ["127.0.0.1:9080"]
\`\`\`

\`\`\`sh
agw validate -c config.yaml
agw run -c config.yaml --demo-upstream 127.0.0.1:9080   # the demo upstream echoes the request it got
curl -si http://127.0.0.1:8080/hello                     # x-${name}-status: 200, and "x-${name}": "GET /hello"
\`\`\`

Edit plugin.ts and run \`agw plugin build ${dir}\` again: \`agw run\` watches the component and loads
the new build (new digest) while it keeps serving. An exception thrown by the plugin fails the
request (500, \`x-agw-error: plugin_failed\`) and its message is in the gateway's log.
`;
}

function scaffold(name: string, dir: string): void {
  if (!NAME.test(name))
    throw new PluginUsageError(
      `plugin name "${name}": lower-case letters, digits and "-", starting with a letter`,
    );
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new PluginUsageError(`${dir} exists and is not empty`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "plugin.ts"), template(name));
  const shown = relative(process.cwd(), dir) || ".";
  writeFileSync(join(dir, "README.md"), readme(name, shown));
  console.log(`wrote ${join(shown, "plugin.ts")} and ${join(shown, "README.md")}`);
  console.log(`next: agw plugin build ${shown}`);
}

async function build(dir: string, output: string | undefined): Promise<void> {
  const source = join(dir, "plugin.ts");
  if (!existsSync(source)) throw new PluginUsageError(`${source} does not exist`);
  const out = output ?? join(dir, `${basename(resolve(dir))}.wasm`);
  const started = performance.now();
  console.log(`building ${source} with componentize-qjs (QuickJS)...`);
  const { buildJs } = await import("../../plugins/sdk/build.ts");
  const component = await buildJs(readFileSync(source, "utf8"), true);
  // Written next to its place and renamed over it: a gateway watching the file never reads half of it.
  const tmp = join(dirname(resolve(out)), `.${basename(out)}.tmp-${process.pid}`);
  writeFileSync(tmp, component);
  renameSync(tmp, out);
  const digest = createHash("sha256").update(component).digest("hex");
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `checked against the agw:plugin world; wrote ${out} (${(component.length / 1e6).toFixed(1)} MB, ${seconds} s)`,
  );
  console.log(`digest: sha256:${digest}`);
}

export class PluginUsageError extends Error {}

/** Runs `agw plugin ...`; returns the exit code. */
export async function pluginCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      dir: { type: "string" },
      output: { type: "string", short: "o" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  const [sub, arg, ...extra] = positionals;
  if (values.help || sub === undefined) {
    console.log(PLUGIN_USAGE);
    return values.help ? 0 : 2;
  }
  if (extra.length > 0) throw new PluginUsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (sub === "new") {
    if (arg === undefined) throw new PluginUsageError("agw plugin new: NAME is required");
    scaffold(arg, resolve(values.dir ?? arg));
    return 0;
  }
  if (sub === "build") {
    if (arg === undefined) throw new PluginUsageError("agw plugin build: DIR is required");
    try {
      await build(arg, values.output);
    } catch (e) {
      if (e instanceof PluginUsageError) throw e;
      console.error(`agw plugin build: ${(e as Error).message}`);
      return 1;
    }
    return 0;
  }
  throw new PluginUsageError(`unknown plugin command "${sub}" (new, build)`);
}
