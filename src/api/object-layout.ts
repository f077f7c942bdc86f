// Where checkpoint objects live in the bucket. Shared by the coordinator (which tells each task where
// to write and where the manifest goes), the snapshot store (which lists and deletes) and the
// TaskManager (which reads a manifest on restore). See docs/protocol.md, "Object layout".
//
//   <prefix>/<namespace>/<job>/chk-<id>/_triggered             the id, recorded before any task is triggered
//   <prefix>/<namespace>/<job>/chk-<id>/_metadata              the manifest: the commit point
//   <prefix>/<namespace>/<job>/chk-<id>/task-<index>/...       parts written by one task
//   <prefix>/<namespace>/<job>/savepoint-<id>/...              same shape; never deleted automatically

export type CheckpointKind = "checkpoint" | "savepoint";

export const MANIFEST_NAME = "_metadata";

/**
 * Written by the coordinator before it triggers any task, so the id is in storage before anything can
 * act on it: an operator that takes over resumes its ids above it even when no task wrote a part
 * (after Flink's CheckpointIDCounter, which persists an id before handing it out).
 */
export const TRIGGER_RECORD_NAME = "_triggered";

const DIRECTORY_PREFIX: Record<CheckpointKind, string> = { checkpoint: "chk-", savepoint: "savepoint-" };

export interface CheckpointLocation {
  /** Key prefix shared by every job in the bucket; may be empty. */
  basePrefix: string;
  namespace: string;
  name: string;
  kind: CheckpointKind;
  checkpointId: number;
}

/** Key prefix of one job's checkpoints and savepoints, ending in "/". */
export function jobDirectory(basePrefix: string, namespace: string, name: string): string {
  const base = basePrefix.replace(/^\/+|\/+$/g, "");
  return `${base === "" ? "" : `${base}/`}${namespace}/${name}/`;
}

/** Key prefix of one checkpoint's objects, ending in "/". */
export function checkpointDirectory(location: CheckpointLocation): string {
  const { basePrefix, namespace, name, kind, checkpointId } = location;
  return `${jobDirectory(basePrefix, namespace, name)}${DIRECTORY_PREFIX[kind]}${checkpointId}/`;
}

/** Key of the checkpoint's manifest. */
export function manifestKey(location: CheckpointLocation): string {
  return `${checkpointDirectory(location)}${MANIFEST_NAME}`;
}

/** Key of the record that the checkpoint's id was handed out (TRIGGER_RECORD_NAME). */
export function triggerRecordKey(location: CheckpointLocation): string {
  return `${checkpointDirectory(location)}${TRIGGER_RECORD_NAME}`;
}

/** Key prefix under which task `taskIndex` must write all of its parts, ending in "/". */
export function taskPartsPrefix(location: CheckpointLocation, taskIndex: number): string {
  return `${checkpointDirectory(location)}task-${taskIndex}/`;
}

/**
 * The kind and id of a checkpoint directory name (`chk-7`, `savepoint-12`, no slashes), or null
 * for any other name. Leading zeros are refused: `checkpointDirectory` never writes them, so such a
 * directory is not one of ours.
 */
export function parseCheckpointDirectoryName(
  name: string,
): { kind: CheckpointKind; checkpointId: number } | null {
  for (const kind of ["checkpoint", "savepoint"] as const) {
    const digits = name.startsWith(DIRECTORY_PREFIX[kind]) ? name.slice(DIRECTORY_PREFIX[kind].length) : "";
    if (/^[1-9][0-9]{0,15}$/.test(digits) && Number.isSafeInteger(Number(digits))) {
      return { kind, checkpointId: Number(digits) };
    }
  }
  return null;
}
