/**
 * Regenerates everything generated: protobuf code (buf + protoc-gen-es → packages/core/src/gen) and
 * the config JSON Schema (docs/config.schema.json). With --check, fails when that changed the tree,
 * so CI catches a proto or schema edit committed without its generated code.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { configJsonSchema } from "../packages/core/src/config/schema.ts";

const GENERATED = ["packages/core/src/gen", "docs/config.schema.json"];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
}

run("buf", ["lint", "--path", "proto/agw"]);
run("buf", ["generate"]);
writeFileSync("docs/config.schema.json", `${JSON.stringify(configJsonSchema(), null, 2)}\n`);

if (process.argv.includes("--check")) {
  const changed = run("git", ["status", "--porcelain", "--", ...GENERATED]);
  if (changed.trim()) {
    console.error(
      `generated files differ from the committed ones; run \`npm run gen\` and commit:\n${changed}`,
    );
    process.exit(1);
  }
  console.log("generated code is up to date");
}
