// Checkpoint manifests for the storage tests, unit and integration alike.
import { createHash } from "node:crypto";
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { checkpointDirectory, type CheckpointKind } from "../../../src/api/object-layout.js";
import { CheckpointManifest, type JobRef } from "../../../src/api/protocol.js";

/** A valid manifest of two tasks over 8 key groups, each task with one part in its directory. */
export function manifestFor(
  basePrefix: string,
  job: JobRef,
  kind: CheckpointKind,
  checkpointId: number,
): CheckpointManifest {
  const directory = checkpointDirectory({ basePrefix, ...job, kind, checkpointId });
  return CheckpointManifest.parse({
    manifestVersion: 1,
    checkpointId,
    kind,
    job,
    epoch: 2,
    parallelism: 2,
    maxParallelism: 8,
    triggeredAt: 1_767_225_600_000 + checkpointId * 1000,
    completedAt: 1_767_225_600_000 + checkpointId * 1000 + 250,
    tasks: [0, 1].map((taskIndex) => ({
      taskIndex,
      keyGroupRange: keyGroupRangeForTask(8, 2, taskIndex),
      syncDurationMs: 1,
      asyncDurationMs: 20,
    })),
    parts: [0, 1].map((taskIndex) => {
      const range = keyGroupRangeForTask(8, 2, taskIndex);
      const key = `${directory}task-${taskIndex}/kg-${range.start}-${range.end}`;
      return {
        key,
        sizeBytes: 100 + taskIndex,
        sha256: createHash("sha256").update(key).digest("hex"),
        keyGroupRange: range,
        taskIndex,
      };
    }),
    sourceOffsets: { "orders-0": 10 * checkpointId, "orders-1": 11 * checkpointId },
  });
}
