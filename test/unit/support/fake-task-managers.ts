// Fake TaskManagers for unit tests of the coordinator loop: each answers the protocol from a
// scripted behaviour and, when it acknowledges, really writes its part to the given object store.
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import type {
  AbortCheckpointRequest,
  CheckpointAck,
  CheckpointResult,
  NotifyCompleteRequest,
  PeersRequest,
  TaskManagerStatus,
  TriggerCheckpointRequest,
} from "../../../src/api/protocol.js";
import { TaskManagerCallError, type TaskManagerClient } from "../../../src/coordinator/interfaces.js";
import type { ObjectStore } from "../../../src/storage/object-store.js";

export type Behaviour =
  | "ack"
  | "decline"
  | "hang"
  /** The long poll only ends when the caller cancels it (a TaskManager that stopped answering). */
  | "hang-until-cancelled"
  | "unreachable"
  | "unreachable-on-trigger"
  /** Answers the trigger with 409. */
  | "error-on-trigger"
  /** Acknowledges for the next epoch. */
  | "ack-wrong-epoch"
  /** Answers with an ack that has no parts list (what zod keeps out of the real client). */
  | "ack-malformed";

/** Resolves never; rejects when `signal` aborts, as a cancelled fetch does. */
function untilCancelled(signal: AbortSignal | undefined, what: string): Promise<never> {
  return new Promise((_, reject) =>
    signal?.addEventListener("abort", () => reject(new TaskManagerCallError(`${what} cancelled`)), {
      once: true,
    }),
  );
}

export class FakeTaskManager implements TaskManagerClient {
  behaviour: Behaviour = "ack";
  /** notify-complete only ends when the caller cancels it (a dead TaskManager). */
  notifyHangs = false;
  /** Sent as the ack's sourceLag of its partition when set. */
  lag: number | undefined;
  /** Sent in the ack as a dataflow's task reports them, when set. */
  dataflow: Pick<CheckpointAck, "alignmentDurationMs" | "backpressure"> | undefined;
  readonly calls: string[] = [];
  private readonly results = new Map<number, Promise<CheckpointResult>>();

  constructor(
    readonly taskIndex: number,
    private readonly parallelism: number,
    private readonly maxParallelism: number,
    private readonly store: ObjectStore,
    /** Shared across tasks, to see the order of calls between them. */
    private readonly journal: string[] = [],
  ) {}

  private record(call: string): void {
    this.calls.push(call);
    this.journal.push(`task ${this.taskIndex}: ${call}`);
  }

  async trigger(request: TriggerCheckpointRequest): Promise<void> {
    this.record(`trigger ${request.checkpointId}`);
    if (this.behaviour === "unreachable-on-trigger") throw new Error("connect ECONNREFUSED");
    if (this.behaviour === "error-on-trigger") {
      throw new TaskManagerCallError(
        "answered 409: checkpoint 1 is older than checkpoint 9 already taken",
        409,
      );
    }
    this.results.set(request.checkpointId, this.snapshot(request));
  }

  private async snapshot(request: TriggerCheckpointRequest): Promise<CheckpointResult> {
    const { checkpointId, epoch } = request;
    const taskIndex = this.taskIndex;
    if (this.behaviour === "decline") {
      return { state: "declined", decline: { checkpointId, epoch, taskIndex, reason: "state backend full" } };
    }
    if (this.behaviour === "hang") return { state: "in_progress", checkpointId, epoch, taskIndex };
    const range = keyGroupRangeForTask(this.maxParallelism, this.parallelism, taskIndex);
    const key = `${request.storage.keyPrefix}kg-${range.start}-${range.end}`;
    const written = await this.store.put(key, Buffer.from(`state of task ${taskIndex} at ${checkpointId}`));
    if (this.behaviour === "ack-malformed") {
      return {
        state: "acknowledged",
        ack: { checkpointId, epoch, taskIndex },
      } as unknown as CheckpointResult;
    }
    return {
      state: "acknowledged",
      ack: {
        checkpointId,
        epoch: this.behaviour === "ack-wrong-epoch" ? epoch + 1 : epoch,
        taskIndex,
        parts: [{ key, sizeBytes: written.sizeBytes, sha256: written.sha256, keyGroupRange: range }],
        sourceOffsets: { [`partition-${taskIndex}`]: checkpointId * 10 },
        ...(this.lag !== undefined && { sourceLag: { [`partition-${taskIndex}`]: this.lag } }),
        ...this.dataflow,
        syncDurationMs: 1,
        asyncDurationMs: 2,
      },
    };
  }

  async result(
    checkpointId: number,
    _epoch: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<CheckpointResult> {
    this.record(`result ${checkpointId}`);
    if (this.behaviour === "unreachable") throw new Error("socket hang up");
    if (this.behaviour === "hang-until-cancelled") return untilCancelled(signal, `result ${checkpointId}`);
    const result = await this.results.get(checkpointId);
    if (!result) throw new Error(`404 unknown checkpoint ${checkpointId}`);
    // A task still working holds the long poll for its whole wait.
    if (result.state === "in_progress") await new Promise((r) => setTimeout(r, Math.min(waitMs, 50)));
    return result;
  }

  async notifyComplete(request: NotifyCompleteRequest, signal?: AbortSignal): Promise<void> {
    this.record(`complete ${request.checkpointId}`);
    if (this.notifyHangs) await untilCancelled(signal, `complete ${request.checkpointId}`);
  }

  async abort(request: AbortCheckpointRequest): Promise<void> {
    this.record(`abort ${request.checkpointId}`);
  }

  async status(): Promise<TaskManagerStatus> {
    throw new Error("not used by the coordinator loop");
  }

  async setPeers(request: PeersRequest): Promise<void> {
    this.record(`peers ${request.epoch}`);
  }
}
