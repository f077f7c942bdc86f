// Fake TaskManagers for unit tests of the coordinator loop: each answers the protocol from a
// scripted behaviour and, when it acknowledges, really writes its part to the given object store.
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import type {
  AbortCheckpointRequest,
  CheckpointResult,
  NotifyCompleteRequest,
  TaskManagerStatus,
  TriggerCheckpointRequest,
} from "../../../src/api/protocol.js";
import type { TaskManagerClient } from "../../../src/coordinator/interfaces.js";
import type { ObjectStore } from "../../../src/storage/object-store.js";

export type Behaviour = "ack" | "decline" | "hang" | "unreachable" | "unreachable-on-trigger";

export class FakeTaskManager implements TaskManagerClient {
  behaviour: Behaviour = "ack";
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
    return {
      state: "acknowledged",
      ack: {
        checkpointId,
        epoch,
        taskIndex,
        parts: [{ key, sizeBytes: written.sizeBytes, sha256: written.sha256, keyGroupRange: range }],
        sourceOffsets: { [`partition-${taskIndex}`]: checkpointId * 10 },
        syncDurationMs: 1,
        asyncDurationMs: 2,
      },
    };
  }

  async result(checkpointId: number, _epoch: number, waitMs: number): Promise<CheckpointResult> {
    this.record(`result ${checkpointId}`);
    if (this.behaviour === "unreachable") throw new Error("socket hang up");
    const result = await this.results.get(checkpointId);
    if (!result) throw new Error(`404 unknown checkpoint ${checkpointId}`);
    // A task still working holds the long poll for its whole wait.
    if (result.state === "in_progress") await new Promise((r) => setTimeout(r, Math.min(waitMs, 50)));
    return result;
  }

  async notifyComplete(request: NotifyCompleteRequest): Promise<void> {
    this.record(`complete ${request.checkpointId}`);
  }

  async abort(request: AbortCheckpointRequest): Promise<void> {
    this.record(`abort ${request.checkpointId}`);
  }

  async status(): Promise<TaskManagerStatus> {
    throw new Error("not used by the coordinator loop");
  }
}
