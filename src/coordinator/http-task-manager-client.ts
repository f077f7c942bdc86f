// The coordinator's HTTP client for one TaskManager (docs/protocol.md): bearer token on every call,
// every response body checked with the shared zod schema before the coordinator believes it.
import type { z } from "zod";
import {
  CheckpointResult,
  ErrorResponse,
  TaskManagerStatus,
  type AbortCheckpointRequest,
  type NotifyCompleteRequest,
  type TriggerCheckpointRequest,
} from "../api/protocol.js";
import type { TaskManagerClient } from "./interfaces.js";

export class TaskManagerCallError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface HttpTaskManagerClientOptions {
  taskIndex: number;
  /** e.g. http://127.1.0.7:8080 */
  baseUrl: string;
  token: string;
  /** Time allowed for calls other than the long poll. */
  requestTimeoutMs?: number;
}

export class HttpTaskManagerClient implements TaskManagerClient {
  readonly taskIndex: number;
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly requestTimeoutMs: number;

  constructor(options: HttpTaskManagerClientOptions) {
    this.taskIndex = options.taskIndex;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
  }

  async trigger(request: TriggerCheckpointRequest): Promise<void> {
    await this.call("POST", "/v1/checkpoints/trigger", 202, request);
  }

  async result(checkpointId: number, epoch: number, waitMs: number): Promise<CheckpointResult> {
    const path = `/v1/checkpoints/${checkpointId}?epoch=${epoch}&waitMs=${Math.max(0, Math.floor(waitMs))}`;
    return this.parse(
      CheckpointResult,
      await this.call("GET", path, 200, undefined, waitMs + this.requestTimeoutMs),
    );
  }

  async notifyComplete(request: NotifyCompleteRequest): Promise<void> {
    await this.call("POST", `/v1/checkpoints/${request.checkpointId}/complete`, 204, request);
  }

  async abort(request: AbortCheckpointRequest): Promise<void> {
    await this.call("POST", `/v1/checkpoints/${request.checkpointId}/abort`, 204, request);
  }

  async status(): Promise<TaskManagerStatus> {
    return this.parse(TaskManagerStatus, await this.call("GET", "/v1/status", 200));
  }

  private parse<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      throw new TaskManagerCallError(
        `task ${this.taskIndex} answered with an unexpected body: ${parsed.error.message}`,
      );
    }
    return parsed.data;
  }

  private async call(
    method: "GET" | "POST",
    path: string,
    expected: number,
    body?: unknown,
    timeoutMs = this.requestTimeoutMs,
  ): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new TaskManagerCallError(`task ${this.taskIndex} at ${this.baseUrl} is unreachable: ${cause}`);
    }
    const text = await response.text();
    if (response.status !== expected) {
      const error = ErrorResponse.safeParse(safeJson(text));
      const detail = error.success ? error.data.error : text.slice(0, 200);
      throw new TaskManagerCallError(
        `task ${this.taskIndex}: ${method} ${path} answered ${response.status}: ${detail}`,
        response.status,
      );
    }
    return text === "" ? undefined : safeJson(text);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
