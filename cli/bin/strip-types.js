// Preloaded (--import) by bin/agw.js when agw is installed as a package: Node refuses to strip the
// types of .ts files under node_modules (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING), and an
// installed package is always there. This hook strips them with Node's own stripper (the same
// erasable-syntax-only transform, positions kept, so stack traces point at the source lines). --import
// also runs in every worker thread, so the data plane's workers load the same way.
import { readFileSync } from "node:fs";
import { registerHooks, stripTypeScriptTypes } from "node:module";
import { fileURLToPath } from "node:url";

registerHooks({
  load(url, context, nextLoad) {
    if (url.startsWith("file:") && url.endsWith(".ts") && url.includes("/node_modules/"))
      return {
        format: "module",
        source: stripTypeScriptTypes(readFileSync(fileURLToPath(url), "utf8")),
        shortCircuit: true,
      };
    return nextLoad(url, context);
  },
});
