/** `agw completion bash|zsh`: commands, then each command's subcommands and flags, then file names. */
import { type Command, UsageError, usageFlags } from "./common.ts";

/** The second word of commands that take a subcommand. */
const SUBCOMMANDS: Record<string, readonly string[]> = { plugin: ["new", "build"], config: ["dump"] };

export function completionScript(shell: string | undefined, commands: Record<string, Command>): string {
  const names = [...Object.keys(commands)];
  const withFlags = names.filter((c) => c !== "completion");
  const flags = (c: string) => [...usageFlags(commands[c]?.usage ?? "")].map((f) => `--${f}`).join(" ");
  if (shell === "bash")
    return [
      "# agw completion for bash: source <(agw completion bash)",
      "_agw() {",
      `  local cur="\${COMP_WORDS[COMP_CWORD]}" opts=""`,
      '  if [ "$COMP_CWORD" -eq 1 ]; then',
      `    COMPREPLY=($(compgen -W "${names.join(" ")} --help --version" -- "$cur"))`,
      "    return",
      "  fi",
      ...Object.entries(SUBCOMMANDS).map(
        ([c, subs]) =>
          `  if [ "$COMP_CWORD" -eq 2 ] && [ "\${COMP_WORDS[1]}" = ${c} ] && [[ "$cur" != -* ]]; then COMPREPLY=($(compgen -W "${subs.join(" ")}" -- "$cur")); return; fi`,
      ),
      `  case "\${COMP_WORDS[1]}" in`,
      ...withFlags.map((c) => `    ${c}) opts="${flags(c)}" ;;`),
      '    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return ;;',
      "  esac",
      '  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi',
      "}",
      "complete -o filenames -F _agw agw",
    ].join("\n");
  if (shell === "zsh")
    return [
      "#compdef agw",
      "# agw completion for zsh: source <(agw completion zsh) after compinit",
      "_agw() {",
      "  if (( CURRENT == 2 )); then",
      `    compadd -- ${names.join(" ")} --help --version`,
      "    return",
      "  fi",
      ...Object.entries(SUBCOMMANDS).map(
        ([c, subs]) =>
          `  if (( CURRENT == 3 )) && [[ $words[2] == ${c} && $PREFIX != -* ]]; then compadd -- ${subs.join(" ")}; return; fi`,
      ),
      "  case $words[2] in",
      ...withFlags.map((c) => `    ${c}) [[ $PREFIX == -* ]] && { compadd -- ${flags(c)}; return } ;;`),
      "    completion) compadd -- bash zsh; return ;;",
      "  esac",
      "  _files",
      "}",
      "compdef _agw agw",
    ].join("\n");
  throw new UsageError(
    `completion: expected bash or zsh, got ${shell === undefined ? "nothing" : `"${shell}"`}`,
  );
}
