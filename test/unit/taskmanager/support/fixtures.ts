// Shared by the TaskManager unit tests: a job, configurations and checkpoints written the way a
// TaskManager and the coordinator write them, into an in-memory store.
import { pino } from "pino";
import { keyGroupRangeForTask } from "../../../../src/api/key-groups.js";
import { manifestKey, taskPartsPrefix } from "../../../../src/api/object-layout.js";
import type { CheckpointManifest, TaskManagerConfig } from "../../../../src/api/protocol.js";
import type { ObjectStore } from "../../../../src/storage/object-store.js";
import { defineJob } from "../../../../src/taskmanager/job/job-definition.js";
import { KeyGroupedStateBackend } from "../../../../src/taskmanager/state/keyed-state.js";
import { encodeStatePart, statePartName } from "../../../../src/taskmanager/state/state-part.js";

export const JOB = { namespace: "default", name: "orders" };
export const BUCKET = "streamjob";
export const silentLog = pino({ level: "silent" });

export function location(checkpointId: number) {
  return {
    basePrefix: "checkpoints",
    namespace: JOB.namespace,
    name: JOB.name,
    kind: "checkpoint" as const,
    checkpointId,
  };
}

export function taskConfig(
  overrides: Partial<TaskManagerConfig> & { parallelism?: number; taskIndex?: number } = {},
): TaskManagerConfig {
  const parallelism = overrides.parallelism ?? 1;
  const taskIndex = overrides.taskIndex ?? 0;
  const maxParallelism = overrides.maxParallelism ?? 12;
  return {
    protocolVersion: "v1",
    job: JOB,
    program: { name: "counting", args: [] },
    epoch: 3,
    parallelism,
    maxParallelism,
    taskIndex,
    keyGroupRange: keyGroupRangeForTask(maxParallelism, parallelism, taskIndex),
    port: 8080,
    storage: { endpoint: "http://127.0.0.1:9000", region: "us-east-1" },
    ...overrides,
  };
}

/**
 * A job of `partitions` generated partitions `p-<i>` with `available` records each (value = offset + 1);
 * per partition it keeps the count of records in state and emits `p-<i> <value>`.
 */
export function countingJob(partitions: number, available: () => number) {
  return defineJob<number>({
    partitions: () =>
      Array.from({ length: partitions }, (_, i) => ({
        id: `p-${i}`,
        read: (offset: number, max: number) =>
          Promise.resolve(
            Array.from(
              { length: Math.max(0, Math.min(max, available() - offset)) },
              (_, j) => offset + j + 1,
            ),
          ),
      })),
    process(value, context) {
      context.state.put(context.partitionId, value);
      context.emit(`${context.partitionId} ${value}`);
    },
  });
}

/** Writes checkpoint `checkpointId` of the given task states (task i = states[i]) and its manifest. */
export async function writeCheckpoint(
  store: ObjectStore,
  checkpointId: number,
  states: KeyGroupedStateBackend[],
  sourceOffsets: Record<string, number> = {},
): Promise<{ manifestKey: string; manifest: CheckpointManifest }> {
  const maxParallelism = states[0]?.maxParallelism ?? 1;
  const parts: CheckpointManifest["parts"] = [];
  for (const [taskIndex, state] of states.entries()) {
    const snapshot = state.snapshot();
    const key = `${taskPartsPrefix(location(checkpointId), taskIndex)}${statePartName(snapshot.keyGroupRange)}`;
    const body = encodeStatePart(snapshot);
    const stored = await store.put(key, body);
    snapshot.release();
    parts.push({
      key,
      ...stored,
      keyGroupRange: snapshot.keyGroupRange,
      stageId: "default",
      index: body.indexLocation,
      taskIndex,
    });
  }
  const manifest: CheckpointManifest = {
    manifestVersion: 1,
    checkpointId,
    kind: "checkpoint",
    job: JOB,
    epoch: 2,
    parallelism: states.length,
    maxParallelism,
    triggeredAt: 1_000,
    completedAt: 1_200,
    tasks: states.map((state, taskIndex) => ({
      taskIndex,
      keyGroupRange: state.keyGroupRange,
      syncDurationMs: 1,
      asyncDurationMs: 2,
    })),
    parts,
    sourceOffsets,
  };
  const key = manifestKey(location(checkpointId));
  await store.put(key, Buffer.from(JSON.stringify(manifest)));
  return { manifestKey: key, manifest };
}

/** `parallelism` task states of `maxParallelism` key groups holding `keys` keys `key-<i>` = i. */
export function filledStates(
  keys: number,
  parallelism: number,
  maxParallelism: number,
): KeyGroupedStateBackend[] {
  const states = Array.from(
    { length: parallelism },
    (_, i) =>
      new KeyGroupedStateBackend(maxParallelism, keyGroupRangeForTask(maxParallelism, parallelism, i)),
  );
  for (let i = 0; i < keys; i++) {
    const owner = states.find((state) => state.owns(`key-${i}`));
    owner?.put(`key-${i}`, i);
  }
  return states;
}
