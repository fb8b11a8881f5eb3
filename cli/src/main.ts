#!/usr/bin/env node
/**
 * The `agw` command: a small dispatcher. Each subcommand is a module of commands/ (or plugin.ts,
 * top.ts) with its usage, its own flags and its run; this file finds the command, turns a flag that
 * belongs to another command into an error naming its owners, and maps failures to exit codes.
 */
import { readFileSync } from "node:fs";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { type Command, listenFailure, UsageError, usageFlags } from "./commands/common.ts";
import { completionScript } from "./commands/completion.ts";
import { config } from "./commands/config.ts";
import { controlPlane } from "./commands/control-plane.ts";
import { dataPlane } from "./commands/data-plane.ts";
import { demoUpstream } from "./commands/demo-upstream.ts";
import { ebpfAgent } from "./commands/ebpf-agent.ts";
import { run } from "./commands/run.ts";
import { validate } from "./commands/validate.ts";
import { watchLauncher } from "./launcher-pipe.ts";
import { PLUGIN_USAGE, PluginUsageError, pluginCommand } from "./plugin.ts";
import { TOP_USAGE, topCommand } from "./top.ts";

const MAIN_USAGE = `agw — API gateway (control plane + data plane over xDS)

Usage: agw <command> [options]

Commands:
  run            all-in-one: control plane and data plane on this machine, talking xDS over gRPC
  control-plane  watch a config file and serve it over xDS
  data-plane     connect to a control plane and proxy traffic
  validate       check a config file; exit 0, or 1 listing every error
  demo-upstream  the small echo server used by the quickstart
  plugin         scaffold (new) and build (build) a TypeScript plugin
  top            live routes and clusters by rate, errors or p99, from a control plane (terminal)
  config         config dump: the config a running control plane publishes (YAML or JSON)
  ebpf-agent     short-circuit same-node TCP (data plane <-> app) with sockmap eBPF (root)

Run 'agw <command> --help' for the options of a command, 'agw --version' for the version,
'agw completion bash|zsh' for shell completion (e.g. source <(agw completion bash)).`;

const COMMANDS: Record<string, Command> = {
  run,
  "control-plane": controlPlane,
  "data-plane": dataPlane,
  validate,
  "ebpf-agent": ebpfAgent,
  plugin: {
    usage: PLUGIN_USAGE,
    run: (argv) =>
      pluginCommand(argv).catch((e: unknown) => {
        throw e instanceof PluginUsageError ? new UsageError(e.message) : e;
      }),
  },
  top: { usage: TOP_USAGE, run: topCommand },
  "demo-upstream": demoUpstream,
  config,
  completion: {
    usage: "Usage: agw completion bash|zsh",
    run: async (argv) => {
      console.log(completionScript(argv[0], COMMANDS));
      return 0;
    },
  },
};

/** Every command's flags in one table: a flag given to the wrong command is named, not just unknown. */
const ALL_OPTIONS: ParseArgsOptionsConfig = Object.assign(
  {},
  ...Object.values(COMMANDS).map((c) => c.options ?? {}),
);

async function main(argv: string[]): Promise<number> {
  const name = argv[0];
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(MAIN_USAGE);
    return name ? 0 : 1;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    console.log(`agw ${version} (node ${process.version})`);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`unknown command "${name}"`);
  if (!command.options) return command.run(argv.slice(1));
  const { values, tokens } = parseArgs({
    args: argv.slice(1),
    options: ALL_OPTIONS,
    strict: true,
    tokens: true,
  });
  const allowed = usageFlags(command.usage);
  for (const token of tokens) {
    if (token.kind !== "option" || allowed.has(token.name)) continue;
    const owners = Object.keys(COMMANDS).filter((c) => usageFlags(COMMANDS[c]?.usage ?? "").has(token.name));
    throw new UsageError(
      `${token.rawName} is not an option of agw ${name}${owners.length > 0 ? ` (it belongs to agw ${owners.join(", agw ")})` : ""}; see 'agw ${name} --help'`,
    );
  }
  if (values.help) {
    console.log(command.usage);
    return 0;
  }
  return command.run(argv.slice(1));
}

watchLauncher();
main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`agw: ${(e as Error).message}\nRun 'agw --help' for usage.`);
      process.exit(2);
    }
    const listen = listenFailure(e);
    console.error(listen ? `agw: ${listen}` : `agw: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
