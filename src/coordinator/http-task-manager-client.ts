// The coordinator's HTTP client for one TaskManager (docs/protocol.md): bearer token on every call,
// every response body checked with the shared zod schema before the coordinator believes it.
import type { z } from "zod";
import {
  ErrorResponse,
  ReceivedCheckpointResult,
  type CheckpointResult,
  TaskManagerStatus,
  type AbortCheckpointRequest,
  type NotifyCompleteRequest,
  type PeersRequest,
  type TriggerCheckpointRequest,
} from "../api/protocol.js";
import { TaskManagerCallError, type TaskManagerClient } from "./interfaces.js";

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

  async trigger(request: TriggerCheckpointRequest, signal?: AbortSignal): Promise<void> {
    await this.call("POST", "/v1/checkpoints/trigger", 202, { body: request, signal });
  }

  async result(
    checkpointId: number,
    epoch: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<CheckpointResult> {
    const path = `/v1/checkpoints/${checkpointId}?epoch=${epoch}&waitMs=${Math.max(0, Math.floor(waitMs))}`;
    const timeoutMs = waitMs + this.requestTimeoutMs;
    return this.parse(ReceivedCheckpointResult, await this.call("GET", path, 200, { signal, timeoutMs }));
  }

  async notifyComplete(request: NotifyCompleteRequest, signal?: AbortSignal): Promise<void> {
    const path = `/v1/checkpoints/${request.checkpointId}/complete`;
    await this.call("POST", path, 204, { body: request, signal });
  }

  async abort(request: AbortCheckpointRequest, signal?: AbortSignal): Promise<void> {
    await this.call("POST", `/v1/checkpoints/${request.checkpointId}/abort`, 204, { body: request, signal });
  }

  async status(signal?: AbortSignal): Promise<TaskManagerStatus> {
    return this.parse(TaskManagerStatus, await this.call("GET", "/v1/status", 200, { signal }));
  }

  async setPeers(request: PeersRequest, signal?: AbortSignal): Promise<void> {
    await this.call("PUT", "/v1/peers", 204, { body: request, signal });
  }

  private parse<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      throw new TaskManagerCallError(
        `task ${this.taskIndex} answered with an unexpected body: ${parsed.error.message}`,
        200,
      );
    }
    return parsed.data;
  }

  private async call(
    method: "GET" | "POST" | "PUT",
    path: string,
    expected: number,
    {
      body,
      signal,
      timeoutMs = this.requestTimeoutMs,
    }: { body?: unknown; signal?: AbortSignal; timeoutMs?: number },
  ): Promise<unknown> {
    const timeout = AbortSignal.timeout(timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      text = await response.text();
    } catch (err) {
      if (signal?.aborted) {
        throw new TaskManagerCallError(
          `task ${this.taskIndex}: ${method} ${path} cancelled: ${reasonOf(signal)}`,
        );
      }
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new TaskManagerCallError(`task ${this.taskIndex} at ${this.baseUrl} is unreachable: ${cause}`);
    }
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

function reasonOf(signal: AbortSignal): string {
  return signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
