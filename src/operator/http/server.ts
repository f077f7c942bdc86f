// The operator's own HTTP endpoints: /healthz (the process works), /readyz (watches are synced and,
// with leader election, this replica is leading or standing by), /metrics (Prometheus).
import type { Server } from "node:http";
import express from "express";
import type { Registry } from "prom-client";

export interface OperatorServerOptions {
  host: string;
  port: number;
  registry: Registry;
  /** Why the operator is not ready, or undefined when it is. */
  notReadyReason(): string | undefined;
}

export async function startOperatorServer(options: OperatorServerOptions): Promise<Server> {
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", (_req, res) => {
    res.type("text").send("ok");
  });
  app.get("/readyz", (_req, res) => {
    const reason = options.notReadyReason();
    res
      .status(reason ? 503 : 200)
      .type("text")
      .send(reason ?? "ok");
  });
  app.get("/metrics", async (_req, res) => {
    res.type(options.registry.contentType).send(await options.registry.metrics());
  });
  return new Promise((resolve, reject) => {
    const server = app.listen(options.port, options.host, (err?: Error) =>
      err ? reject(err) : resolve(server),
    );
  });
}
