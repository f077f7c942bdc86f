// Partition-scoped state, the Kafka Streams model: what a job reads and writes while processing a
// record of source partition P belongs to P. It lives in P's key group (the one whose owner reads
// P, SourcePartition.keyGroup), so a rescale moves it with P, by the same key-group machinery as
// keyed state, in its own stage of the checkpoint. A job whose topic is keyed the way its state is
// (records of a key always in one partition) keeps per-key state without any exchange; state keyed
// another way needs a re-keyed topic (docs/writing-a-job.md, "Partition-scoped state").
import type { KeyGroupRange } from "../../api/key-groups.js";
import { KeyGroupedStateBackend, type JsonValue, type KeyedState } from "./keyed-state.js";

/** How a partition's key is stored: JSON `[partitionId, key]`, readable in a part. */
function storedKey(partitionId: string, key: string): string {
  return JSON.stringify([partitionId, key]);
}

function partitionOfStoredKey(stored: string): string {
  const parsed: unknown = JSON.parse(stored);
  if (!Array.isArray(parsed) || typeof parsed[0] !== "string") {
    throw new RangeError(`partition-scoped state has key ${stored}, not [partitionId, key]`);
  }
  return parsed[0];
}

export class PartitionScopedState {
  readonly backend: KeyGroupedStateBackend;
  private readonly keyGroups = new Map<string, number>();

  constructor(maxParallelism: number, keyGroupRange: KeyGroupRange) {
    this.backend = new KeyGroupedStateBackend(maxParallelism, keyGroupRange, (key) =>
      this.keyGroupOf(partitionOfStoredKey(key)),
    );
  }

  /** Where partition `partitionId`'s state lives; told for every partition of the job, before a restore. */
  place(partitionId: string, keyGroup: number): void {
    this.keyGroups.set(partitionId, keyGroup);
  }

  /** The state of one partition, as job code sees it while processing that partition's records. */
  view(partitionId: string): KeyedState {
    const backend = this.backend;
    return {
      get: (key: string) => backend.get(storedKey(partitionId, key)),
      put: (key: string, value: JsonValue) => backend.put(storedKey(partitionId, key), value),
      delete: (key: string) => backend.delete(storedKey(partitionId, key)),
      // Every key of the partition is the partition's: the task reading it owns its key group.
      owns: () => true,
    };
  }

  private keyGroupOf(partitionId: string): number {
    const keyGroup = this.keyGroups.get(partitionId);
    if (keyGroup === undefined) {
      throw new RangeError(
        `partition-scoped state of source partition ${partitionId}, which the job does not have (was the topic deleted or its partition count changed?)`,
      );
    }
    return keyGroup;
  }
}
