import { createHash } from "node:crypto";
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import type { CheckpointAck, CheckpointDecline } from "../../../src/api/protocol.js";
import {
  PendingCheckpoint,
  type PendingCheckpointInit,
} from "../../../src/coordinator/pending-checkpoint.js";
import type { FakeClock } from "./fake-clock.js";

export const JOB = { namespace: "default", name: "orders" };

export const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** Checkpoint 7 of epoch 3: three tasks over 12 key groups (0-3, 4-7, 8-11), 60 s to acknowledge. */
export function pendingCheckpoint(
  clock: FakeClock,
  overrides: Partial<PendingCheckpointInit> = {},
): PendingCheckpoint {
  return new PendingCheckpoint(
    {
      checkpointId: 7,
      kind: "checkpoint",
      job: JOB,
      epoch: 3,
      parallelism: 3,
      maxParallelism: 12,
      storage: { bucket: "streamjob", basePrefix: "checkpoints" },
      deadline: clock.now() + 60_000,
      ...overrides,
    },
    clock,
  );
}

/** A valid ack from `taskIndex`: one part holding all of its key groups, one source partition. */
export function ackFor(
  checkpoint: PendingCheckpoint,
  taskIndex: number,
  overrides: Partial<CheckpointAck> = {},
): CheckpointAck {
  const trigger = checkpoint.triggerRequest(taskIndex);
  const range = keyGroupRangeForTask(12, 3, taskIndex);
  return {
    checkpointId: trigger.checkpointId,
    epoch: trigger.epoch,
    taskIndex,
    parts: [
      {
        key: `${trigger.storage.keyPrefix}kg-${range.start}-${range.end}`,
        sizeBytes: 1000 + taskIndex,
        sha256: sha256(`state of task ${taskIndex}`),
        keyGroupRange: range,
      },
    ],
    sourceOffsets: { [`partition-${taskIndex}`]: 100 + taskIndex },
    syncDurationMs: 2,
    asyncDurationMs: 40,
    ...overrides,
  };
}

export function declineFor(
  checkpoint: PendingCheckpoint,
  taskIndex: number,
  reason: string,
): CheckpointDecline {
  return { checkpointId: checkpoint.checkpointId, epoch: checkpoint.epoch, taskIndex, reason };
}
