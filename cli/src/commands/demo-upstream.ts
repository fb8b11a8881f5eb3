/** `agw demo-upstream`: the small echo server of the quickstart. */
import { parseArgs } from "node:util";
import { parseDuration } from "@agw/core/config/schema";
import { addressOf, startDemoUpstream } from "../demo-upstream.ts";
import { type Command, HELP_OPTION, hostPort, listensOn, onShutdown, UsageError } from "./common.ts";

const options = {
  port: { type: "string", multiple: true },
  listen: { type: "string", multiple: true },
  id: { type: "string" },
  status: { type: "string" },
  delay: { type: "string" },
  log: { type: "boolean" },
  ...HELP_OPTION,
} as const;

export const demoUpstream: Command = {
  usage: `Usage: agw demo-upstream [options]

An HTTP server that answers every request with a JSON echo of it (method, url, headers, body size)
and says which instance answered: the x-upstream-id header and "upstream" in the body.

  --port N                 listen on 127.0.0.1:N; repeat for several instances in one process
  --listen ADDR:PORT       listen on ADDR:PORT; repeatable (default, without --port: 127.0.0.1:9080)
  --id ID                  the instance's name in x-upstream-id and the body (default: its ADDR:PORT);
                           only with one address
  --status N               answer every request with this status, 200..599 (default 200)
  --delay DURATION         wait this long before the response head, e.g. 500ms, 3s (default 0)
  --log                    print a line per request: ID METHOD URL host=HOST`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const addresses = [
      ...(values.port ?? []).map((p) => {
        if (!/^\d{1,5}$/.test(p) || Number(p) > 65535)
          throw new UsageError(`--port: expected a port number within 0..65535, got "${p}"`);
        listensOn("--port", Number(p));
        return { host: "127.0.0.1", port: Number(p) };
      }),
      ...(values.listen ?? []).map((l) => hostPort(l, "", "--listen")),
    ];
    if (addresses.length === 0) addresses.push(hostPort(undefined, "127.0.0.1:9080", "--listen"));
    if (values.id !== undefined && addresses.length > 1)
      throw new UsageError("--id names one instance: give one --port or --listen with it");
    const status = values.status === undefined ? 200 : Number(values.status);
    if (!Number.isInteger(status) || status < 200 || status > 599)
      throw new UsageError(`--status: expected a status within 200..599, got "${values.status}"`);
    const delayMs = values.delay === undefined ? 0 : parseDuration(values.delay);
    if (delayMs === undefined)
      throw new UsageError(`--delay: expected a duration such as 500ms or 3s, got "${values.delay}"`);
    const servers = await Promise.all(
      addresses.map((a) =>
        startDemoUpstream({
          ...a,
          ...(values.id !== undefined ? { id: values.id } : {}),
          status,
          delayMs,
          ...(values.log ? { log: (line: string) => console.log(line) } : {}),
        }),
      ),
    );
    for (const server of servers) console.log(`demo upstream listening on http://${addressOf(server)}`);
    onShutdown(async () => {
      for (const server of servers) server.close();
    });
    return -1;
  },
};
