/** `agw validate`: check a config file; exit 0, or 1 listing every error as FILE:LINE. */
import { parseArgs } from "node:util";
import { type Command, validate as check, HELP_OPTION, needConfig } from "./common.ts";

const options = { config: { type: "string", short: "c" }, ...HELP_OPTION } as const;

export const validate: Command = {
  usage: `Usage: agw validate -c FILE

  -c, --config FILE        config.yaml to check; prints every error as FILE:LINE PATH: MESSAGE`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const file = needConfig(values);
    const ok = await check(file);
    if (ok) console.log(`${file}: valid`);
    return ok ? 0 : 1;
  },
};
