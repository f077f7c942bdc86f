// Finding what to restore from (after Flink's CompletedCheckpointStore): the newest checkpoint or
// savepoint whose manifest exists and parses, and whose parts are all still there.
import { MANIFEST_NAME } from "../api/object-layout.js";
import type { CheckpointManifest, JobRef } from "../api/protocol.js";
import type { SnapshotStore } from "./interfaces.js";

export interface RestorableCheckpoint {
  checkpointId: number;
  manifestKey: string;
  manifest: CheckpointManifest;
}

export interface LatestCompleted {
  latest: RestorableCheckpoint | null;
  /** Newer checkpoints passed over, and why: a corrupt checkpoint is never restored. */
  skipped: { checkpointId: number; reason: string }[];
}

/** Every part the manifest lists exists with its recorded size; otherwise what is wrong. */
export async function missingParts(store: SnapshotStore, manifest: CheckpointManifest): Promise<string[]> {
  const problems: string[] = [];
  for (const part of manifest.parts) {
    const stat = await store.statObject(part.key);
    if (stat === null) problems.push(`part ${part.key} is missing`);
    else if (stat.sizeBytes !== part.sizeBytes) {
      problems.push(`part ${part.key} has ${stat.sizeBytes} bytes, the manifest says ${part.sizeBytes}`);
    }
  }
  return problems;
}

export async function latestCompletedCheckpoint(store: SnapshotStore, job: JobRef): Promise<LatestCompleted> {
  const candidates = (await store.listCheckpoints(job))
    .filter((dir) => dir.objectKeys.includes(`${dir.directory}${MANIFEST_NAME}`))
    .sort((a, b) => b.checkpointId - a.checkpointId);
  const skipped: LatestCompleted["skipped"] = [];
  for (const dir of candidates) {
    const manifestKey = `${dir.directory}${MANIFEST_NAME}`;
    try {
      const manifest = await store.getManifest(manifestKey);
      if (manifest === null) continue; // deleted since the listing
      const problems = await missingParts(store, manifest);
      if (problems.length > 0) {
        skipped.push({ checkpointId: dir.checkpointId, reason: problems.join("; ") });
        continue;
      }
      return { latest: { checkpointId: dir.checkpointId, manifestKey, manifest }, skipped };
    } catch (err) {
      skipped.push({ checkpointId: dir.checkpointId, reason: (err as Error).message });
    }
  }
  return { latest: null, skipped };
}
