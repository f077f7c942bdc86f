// Which checkpoint objects may be deleted (after Flink's CheckpointsCleaner), as a pure plan:
// - the newest `retained` completed checkpoints are kept, and so is any pinned one (the checkpoint
//   status.latestCheckpoint names, even if newer manifests exist because a status patch failed);
// - an older completed checkpoint goes only because `retained` newer manifests exist;
// - a directory without a manifest goes only if its checkpoint is known to have aborted: one that is
//   merely unlisted may still be in flight;
// - savepoints are never deleted (only their aborted, manifest-less leftovers);
// - no key a kept manifest or any savepoint manifest references is ever deleted, whichever
//   directory it sits in.

import { MANIFEST_NAME, type CheckpointKind } from "../api/object-layout.js";
import type { CheckpointManifest } from "../api/protocol.js";
import type { StoredCheckpoint } from "./interfaces.js";

export interface RetentionInput {
  /** Every checkpoint and savepoint directory found in storage. */
  stored: readonly StoredCheckpoint[];
  /** The parsed manifests of the stored directories that have one. */
  manifests: readonly CheckpointManifest[];
  /**
   * Checkpoints known to have aborted: those this coordinator aborted and, after an operator restart,
   * manifest-less directories below the id the counter resumed from (nothing will complete them).
   */
  abortedIds: ReadonlySet<number>;
  /** Checkpoints that must survive whatever their age. */
  pinnedIds: ReadonlySet<number>;
  /** How many completed checkpoints to keep; at least 1. */
  retained: number;
}

export interface Deletion {
  checkpointId: number;
  kind: CheckpointKind;
  reason: "superseded" | "aborted";
  /** Manifest first, so an interrupted deletion never leaves a manifest pointing at missing parts. */
  keys: string[];
}

/** The deletions, oldest checkpoint first; each one's keys must be deleted in the given order. */
export function planRetention(input: RetentionInput): Deletion[] {
  if (!Number.isInteger(input.retained) || input.retained < 1) {
    throw new RangeError(`retained must be an integer of at least 1, got ${input.retained}`);
  }
  const hasManifest = new Set(input.manifests.map(identity));
  const retainedIds = new Set(
    input.manifests
      .filter((manifest) => manifest.kind === "checkpoint")
      .map((manifest) => manifest.checkpointId)
      .sort((a, b) => b - a)
      .slice(0, input.retained),
  );
  const isKept = (checkpoint: { kind: CheckpointKind; checkpointId: number }): boolean =>
    checkpoint.kind === "savepoint" ||
    retainedIds.has(checkpoint.checkpointId) ||
    input.pinnedIds.has(checkpoint.checkpointId);

  const protectedKeys = new Set<string>();
  for (const manifest of input.manifests.filter(isKept)) {
    for (const part of manifest.parts) protectedKeys.add(part.key);
  }
  for (const dir of input.stored) {
    if (isKept(dir) && hasManifest.has(identity(dir))) {
      for (const key of dir.objectKeys) protectedKeys.add(key);
    }
  }

  const deletions: Deletion[] = [];
  for (const dir of [...input.stored].sort((a, b) => a.checkpointId - b.checkpointId)) {
    const reason = deletionReason(dir, hasManifest.has(identity(dir)), isKept(dir), input.abortedIds);
    if (reason === null) continue;
    const manifestKey = `${dir.directory}${MANIFEST_NAME}`;
    const keys = dir.objectKeys
      .filter((key) => !protectedKeys.has(key))
      .sort((a, b) => Number(b === manifestKey) - Number(a === manifestKey));
    if (keys.length > 0) deletions.push({ checkpointId: dir.checkpointId, kind: dir.kind, reason, keys });
  }
  return deletions;
}

function deletionReason(
  dir: StoredCheckpoint,
  hasManifest: boolean,
  kept: boolean,
  abortedIds: ReadonlySet<number>,
): Deletion["reason"] | null {
  if (hasManifest) return kept ? null : "superseded";
  // A manifest object we could not parse still marks a commit: leave it for a human.
  if (dir.objectKeys.includes(`${dir.directory}${MANIFEST_NAME}`)) return null;
  if (dir.kind === "checkpoint" && kept) return null;
  return abortedIds.has(dir.checkpointId) ? "aborted" : null;
}

function identity(checkpoint: { kind: CheckpointKind; checkpointId: number }): string {
  return `${checkpoint.kind}-${checkpoint.checkpointId}`;
}
