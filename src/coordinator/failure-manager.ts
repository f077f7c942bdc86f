// Decides when failing checkpoints mean the job itself is unhealthy (after Flink's
// CheckpointFailureManager): more than `tolerableFailures` consecutive failed checkpoints ask for a job
// restart (a new epoch, restoring the latest completed checkpoint); a completed checkpoint resets.

import type { CheckpointKind } from "../api/object-layout.js";
import { isCheckpointFailure, type CheckpointAbortCause } from "./abort-cause.js";

export interface FailureDecision {
  consecutiveFailures: number;
  restartJob: boolean;
}

export class CheckpointFailureManager {
  private readonly failedIds = new Set<number>();
  private lastCompletedId = 0;

  constructor(private readonly tolerableFailures: number) {
    if (!Number.isInteger(tolerableFailures) || tolerableFailures < 0) {
      throw new RangeError(`tolerableFailures must be a non-negative integer, got ${tolerableFailures}`);
    }
  }

  /**
   * Report a checkpoint that aborted. Only real failures count: not an abort because the coordinator
   * stopped (a redeploy, upgrade, scale, suspend or restart), not savepoints (a failed on-demand
   * savepoint is not a reason to restart a running job), not checkpoints older than the last
   * completed one (a newer success already shows the job can checkpoint); the same id counts once.
   */
  onCheckpointFailed(
    checkpointId: number,
    kind: CheckpointKind,
    cause: CheckpointAbortCause,
  ): FailureDecision {
    if (isCheckpointFailure(cause) && kind === "checkpoint" && checkpointId > this.lastCompletedId) {
      this.failedIds.add(checkpointId);
    }
    return this.decision();
  }

  /** Report a completed checkpoint or savepoint: either shows the tasks can snapshot. */
  onCheckpointCompleted(checkpointId: number): FailureDecision {
    if (checkpointId > this.lastCompletedId) {
      this.lastCompletedId = checkpointId;
      for (const id of this.failedIds) if (id < checkpointId) this.failedIds.delete(id);
    }
    return this.decision();
  }

  private decision(): FailureDecision {
    const consecutiveFailures = this.failedIds.size;
    return { consecutiveFailures, restartJob: consecutiveFailures > this.tolerableFailures };
  }
}
