/**
 * Active health checks' thresholds, both ways, through the real gateway (the store starts the checkers
 * on a push). Decided by the probes themselves, not by time: probes of one endpoint are sequential, so
 * when probe k+1 arrives at the origin the verdict of probes 1..k is in. `unhealthyThreshold` failing
 * probes in a row take the endpoint out (not one fewer), `healthyThreshold` passing ones bring it back.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { waitFor } from "../../../test/helpers.ts";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";

const T = { timeout: 30000 };
const UNHEALTHY_THRESHOLD = 3;
const HEALTHY_THRESHOLD = 4;

async function listen(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

function body(port: number): Promise<string> {
  return new Promise((resolve, reject) =>
    http
      .get({ port, host: "127.0.0.1", path: "/", agent: false }, (res) => {
        let b = "";
        res.on("data", (c: Buffer) => {
          b += c.toString();
        });
        res.on("end", () => resolve(b));
      })
      .on("error", reject),
  );
}

describe("active health check thresholds", () => {
  const name = `${UNHEALTHY_THRESHOLD} failures in a row take an endpoint out, ${HEALTHY_THRESHOLD} successes bring it back`;
  it(name, T, async () => {
    let gw: Gateway | undefined;
    let failing = false;
    /** The victim's probes, in order: whether it failed, and the endpoint's verdict when it arrived. */
    const probes: Array<{ failed: boolean; healthyOnArrival: boolean }> = [];
    let victimKey = "";
    const victim = await listen((req, res) => {
      if (req.url !== "/healthz") return void res.end("victim");
      const state = gw?.serving.store.clusterStates.find("c")?.endpoints.get(victimKey);
      if (state !== undefined) probes.push({ failed: failing, healthyOnArrival: state.checkHealthy });
      res.statusCode = failing ? 503 : 200;
      res.end();
    });
    victimKey = `127.0.0.1:${victim.port}`;
    // The other endpoint always passes (with every endpoint out, the balancer would panic and use all).
    const other = await listen((req, res) => res.end(req.url === "/healthz" ? "" : "other"));
    gw = await startGateway(
      config(
        "v1",
        [{ prefix: "/", cluster: "c" }],
        [
          cluster("c", [endpoint(victim.port), endpoint(other.port)], {
            proto: {
              health: {
                interval: durationFromMs(20),
                timeout: durationFromMs(5000),
                httpPath: "/healthz",
                unhealthyThreshold: UNHEALTHY_THRESHOLD,
                healthyThreshold: HEALTHY_THRESHOLD,
              },
            },
          }),
        ],
      ),
    );
    const port = gw.port;
    /** Who answers 4 requests in a row (round robin over the endpoints in rotation). */
    const answers = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(await body(port));
      return [...seen].sort();
    };
    /** Waits until `n` probes have arrived from index `from` on. */
    const probesAfter = (from: number, n: number) =>
      waitFor(`${n} probes`, () => (probes.length >= from + n ? true : undefined), 20_000);
    try {
      await probesAfter(0, 1);
      assert.deepEqual(await answers(), ["other", "victim"]);

      failing = true;
      const down = probes.length;
      await probesAfter(down, UNHEALTHY_THRESHOLD + 1);
      // Probes 1..threshold arrive while it is still in; the one after finds it out.
      assert.deepEqual(
        probes.slice(down, down + UNHEALTHY_THRESHOLD + 1).map((p) => [p.failed, p.healthyOnArrival]),
        [...Array(UNHEALTHY_THRESHOLD).fill([true, true]), [true, false]],
      );
      assert.deepEqual(await answers(), ["other"], "the victim is out of the rotation");

      failing = false;
      const up = probes.length;
      await probesAfter(up, HEALTHY_THRESHOLD + 1);
      assert.deepEqual(
        probes.slice(up, up + HEALTHY_THRESHOLD + 1).map((p) => [p.failed, p.healthyOnArrival]),
        [...Array(HEALTHY_THRESHOLD).fill([false, false]), [false, true]],
      );
      assert.deepEqual(await answers(), ["other", "victim"]);
    } finally {
      await gw.close();
      for (const { server } of [victim, other]) {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  });
});
