// The TaskManager's HTTP API, exactly as docs/protocol.md specifies: bearer token first (401, before
// the body is even parsed), then the schema (400 naming the field), then epoch and task (409), then
// the checkpoint's own rules. /healthz and /readyz are the only unauthenticated endpoints.
import express, { type NextFunction, type Request, type Response } from "express";
import type { Logger } from "pino";
import type { z } from "zod";
import {
  AbortCheckpointRequest,
  CheckpointPathParams,
  CheckpointResultQuery,
  formatZodError,
  NotifyCompleteRequest,
  PeersRequest,
  TriggerCheckpointRequest,
  type TaskManagerStatus,
  type TriggerCheckpointAccepted,
} from "../../api/protocol.js";
import type { CheckpointExecutor } from "../checkpoints/checkpoint-executor.js";
import { bearerTokenCheck } from "./bearer-token.js";

export interface TaskManagerApi {
  token: string;
  epoch: number;
  taskIndex: number;
  checkpoints: CheckpointExecutor;
  status(): TaskManagerStatus;
  /** undefined when ready, else why not (e.g. "restoring from checkpoint 4"). */
  notReadyReason(): string | undefined;
  /** false once the processing loop has failed. */
  alive(): boolean;
  /** A call carried a newer epoch: this TaskManager has been replaced. */
  onNewerEpoch(epoch: number): void;
  /** The epoch's TaskManagers (PUT /v1/peers); a string says why they conflict with earlier ones. */
  setPeers(peers: PeersRequest["peers"]): string | undefined;
  log: Logger;
}

const BODY_LIMIT = "1mb";

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createTaskManagerApp(api: TaskManagerApi): express.Express {
  const app = express();
  app.disable("x-powered-by");

  app.get("/healthz", (_req, res) => {
    if (api.alive()) res.type("text/plain").send("ok");
    else res.status(503).type("text/plain").send("processing failed");
  });
  app.get("/readyz", (_req, res) => {
    if (api.notReadyReason() === undefined) res.type("text/plain").send("ok");
    else res.status(503).type("text/plain").send("not ready");
  });

  app.use("/v1", bearerToken(api.token));
  app.use("/v1", express.json({ limit: BODY_LIMIT, type: () => true }));

  app.post("/v1/checkpoints/trigger", (req, res) => {
    const request = parse(TriggerCheckpointRequest, req.body);
    checkEpoch(api, request.epoch);
    if (request.taskIndex !== api.taskIndex) {
      throw new HttpError(409, `task ${request.taskIndex} addressed, this is task ${api.taskIndex}`);
    }
    const conflict = api.checkpoints.triggerConflict(request.checkpointId);
    if (conflict !== undefined) throw new HttpError(409, conflict);
    const notReady = api.notReadyReason();
    if (notReady !== undefined) throw new HttpError(503, `not ready: ${notReady}`);
    api.checkpoints.trigger(request);
    const accepted: TriggerCheckpointAccepted = {
      checkpointId: request.checkpointId,
      epoch: api.epoch,
      taskIndex: api.taskIndex,
    };
    res.status(202).json(accepted);
  });

  app.get("/v1/checkpoints/:id", async (req, res) => {
    const { id } = parse(CheckpointPathParams, req.params);
    const query = parse(CheckpointResultQuery, req.query);
    checkEpoch(api, query.epoch);
    const result = await api.checkpoints.result(id, query.waitMs);
    if (result === undefined)
      throw new HttpError(404, `checkpoint ${id} was never triggered in epoch ${api.epoch}`);
    res.json(result);
  });

  app.post("/v1/checkpoints/:id/complete", async (req, res) => {
    const { id } = parse(CheckpointPathParams, req.params);
    const request = parse(NotifyCompleteRequest, req.body);
    checkPathId(id, request.checkpointId);
    checkEpoch(api, request.epoch);
    await api.checkpoints.complete(request);
    res.status(204).end();
  });

  app.post("/v1/checkpoints/:id/abort", (req, res) => {
    const { id } = parse(CheckpointPathParams, req.params);
    const request = parse(AbortCheckpointRequest, req.body);
    checkPathId(id, request.checkpointId);
    checkEpoch(api, request.epoch);
    api.checkpoints.abort(request);
    res.status(204).end();
  });

  app.put("/v1/peers", (req, res) => {
    const request = parse(PeersRequest, req.body);
    checkEpoch(api, request.epoch);
    const conflict = api.setPeers(request.peers);
    if (conflict !== undefined) throw new HttpError(409, conflict);
    res.status(204).end();
  });

  app.get("/v1/status", (_req, res) => {
    res.json(api.status());
  });

  app.use("/v1", () => {
    throw new HttpError(404, "no such endpoint");
  });

  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const { status, message } = describeError(err);
    if (status >= 500) api.log.error({ err }, "request failed");
    res.status(status).json({ error: message });
  });
  return app;
}

function bearerToken(token: string) {
  const matches = bearerTokenCheck(token);
  return (req: Request, res: Response, next: NextFunction) => {
    if (matches(req.get("authorization"))) return next();
    res.status(401).set("WWW-Authenticate", "Bearer").json({ error: "missing or invalid bearer token" });
  };
}

function parse<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input);
  if (!result.success) throw new HttpError(400, formatZodError(result.error));
  return result.data;
}

function checkPathId(pathId: number, bodyId: number): void {
  if (pathId !== bodyId) throw new HttpError(400, `checkpointId: does not match the path (${pathId})`);
}

function checkEpoch(api: TaskManagerApi, epoch: number): void {
  if (epoch === api.epoch) return;
  if (epoch > api.epoch) api.onNewerEpoch(epoch);
  throw new HttpError(409, `epoch ${epoch} is not this TaskManager's epoch ${api.epoch}`);
}

function describeError(err: unknown): { status: number; message: string } {
  if (err instanceof HttpError) return { status: err.status, message: err.message };
  // body-parser's errors: malformed JSON (400), body over the limit (413).
  const status = (err as { status?: unknown }).status;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const type = (err as { type?: unknown }).type;
    if (type === "entity.parse.failed") return { status: 400, message: "(body): not valid JSON" };
    if (type === "entity.too.large") return { status: 413, message: `(body): larger than ${BODY_LIMIT}` };
    return { status, message: (err as Error).message };
  }
  return { status: 500, message: (err as Error).message || "internal error" };
}
