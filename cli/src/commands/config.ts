/**
 * `agw config dump`: what a running control plane publishes, from its admin API's /config_dump
 * (loopback, or the admin token; docs/security.md): the effective config (the file and Kubernetes
 * merged, as data planes receive it), each xDS type's version, and config errors. The admin server
 * redacts the answer (PEM fields, private keys, plugin configs, URL credentials) before it leaves
 * the control plane, so no key reaches this terminal.
 */
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { adminBase, adminGet } from "../admin-client.ts";
import { type Command, HELP_OPTION, UsageError } from "./common.ts";

const USAGE = `Usage: agw config dump [options]

Prints the configuration a running control plane publishes (its admin API's /config_dump): the
effective config, file and Kubernetes merged as data planes receive it, the version of each xDS
resource type, and config errors. Secrets, private keys and plugin configs are redacted.

  --cp-admin ADDR:PORT     the control plane's admin (default 127.0.0.1:9902)
  --admin-token TOKEN      for a remote control plane started with --admin-token (also AGW_ADMIN_TOKEN)
  -o, --output FORMAT      yaml (default) or json`;

const options = {
  "cp-admin": { type: "string" },
  "admin-token": { type: "string" },
  output: { type: "string", short: "o" },
  ...HELP_OPTION,
} as const;

export const config: Command = {
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const [sub, ...extra] = positionals;
    if (sub !== "dump")
      throw new UsageError(
        `config: expected the subcommand dump, got ${sub === undefined ? "nothing" : `"${sub}"`}`,
      );
    if (extra.length > 0) throw new UsageError(`config dump: unexpected argument "${extra[0]}"`);
    const output = values.output ?? "yaml";
    if (output !== "yaml" && output !== "json")
      throw new UsageError(`--output: expected yaml or json, got "${output}"`);
    const base = adminBase(values["cp-admin"] ?? "127.0.0.1:9902");
    const dump = (await adminGet(
      base,
      "/config_dump",
      values["admin-token"] ?? process.env.AGW_ADMIN_TOKEN,
    ).catch((e: unknown) => {
      console.error(`agw config dump: ${(e as Error).message}`);
      return undefined;
    })) as Record<string, unknown> | undefined;
    if (dump === undefined) return 1;
    // The published config first, then what describes it.
    const { versions, ir, ...rest } = dump;
    const ordered = { versions, config: ir, ...rest };
    process.stdout.write(output === "json" ? `${JSON.stringify(ordered, null, 2)}\n` : stringify(ordered));
    return 0;
  },
};
