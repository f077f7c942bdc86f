// Finding what to restore from (after Flink's CompletedCheckpointStore): the newest checkpoint or
// savepoint whose manifest exists and parses, and whose parts are all still there.
import { MANIFEST_NAME } from "../api/object-layout.js";
import type { CheckpointManifest, JobRef } from "../api/protocol.js";
import { CorruptManifestError, type SnapshotStore } from "./interfaces.js";

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

export interface LatestCompletedOptions {
  /** Milliseconds: checkpoints completed before this are not considered (an older job of the same name). */
  completedAfter?: number;
}

/**
 * Only a corrupt manifest or a missing part passes a checkpoint over; any other error (the store
 * unreachable) rejects, so a passing outage never makes an older checkpoint look like the newest.
 */
export async function latestCompletedCheckpoint(
  store: SnapshotStore,
  job: JobRef,
  options: LatestCompletedOptions = {},
): Promise<LatestCompleted> {
  const candidates = (await store.listCheckpoints(job))
    .filter((dir) => dir.objectKeys.includes(`${dir.directory}${MANIFEST_NAME}`))
    .sort((a, b) => b.checkpointId - a.checkpointId);
  const skipped: LatestCompleted["skipped"] = [];
  for (const dir of candidates) {
    const manifestKey = `${dir.directory}${MANIFEST_NAME}`;
    let manifest: CheckpointManifest | null;
    try {
      manifest = await store.getManifest(manifestKey);
    } catch (err) {
      if (!(err instanceof CorruptManifestError)) throw err;
      skipped.push({ checkpointId: dir.checkpointId, reason: err.message });
      continue;
    }
    if (manifest === null) continue; // deleted since the listing
    // Ids only grow, so every checkpoint after this one is older still.
    if (options.completedAfter !== undefined && manifest.completedAt < options.completedAfter) break;
    const problems = await missingParts(store, manifest);
    if (problems.length > 0) {
      skipped.push({ checkpointId: dir.checkpointId, reason: problems.join("; ") });
      continue;
    }
    return { latest: { checkpointId: dir.checkpointId, manifestKey, manifest }, skipped };
  }
  return { latest: null, skipped };
}
