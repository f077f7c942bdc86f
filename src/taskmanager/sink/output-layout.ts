// Where the exactly-once sink keeps a job's output, next to its checkpoints in the same bucket:
//
//   <prefix>/<namespace>/<job>/output/staging/task-<index>/chk-<id>     staged at checkpoint <id>'s cut
//   <prefix>/<namespace>/<job>/output/committed/chk-<id>/task-<index>   committed (the job's result)
//
// <id> is zero-padded to 12 digits so a listing sorts in checkpoint order. An object holds the
// lines the task emitted between the previous cut and checkpoint <id>'s cut, in emit order, each
// ending in "\n". Reading the committed objects in checkpoint order (any task order within one
// checkpoint) gives every key's output in order, also across restores with another parallelism.
//
// The TaskManager learns the bucket and `<prefix>/<namespace>/<job>/` from its start-up
// configuration's `output`; a v1 configuration without it implies the bucket and job directory of
// the trigger's storage.keyPrefix and restoreFrom.manifestKey (docs/protocol.md, "Sink output").

const ID_DIGITS = 12;

function paddedId(checkpointId: number): string {
  return String(checkpointId).padStart(ID_DIGITS, "0");
}

export function stagingDirectory(jobDirectory: string): string {
  return `${jobDirectory}output/staging/`;
}

export function committedDirectory(jobDirectory: string): string {
  return `${jobDirectory}output/committed/`;
}

export function stagedOutputKey(jobDirectory: string, taskIndex: number, checkpointId: number): string {
  return `${stagingDirectory(jobDirectory)}task-${taskIndex}/chk-${paddedId(checkpointId)}`;
}

export function committedOutputKey(jobDirectory: string, taskIndex: number, checkpointId: number): string {
  return `${committedDirectory(jobDirectory)}chk-${paddedId(checkpointId)}/task-${taskIndex}`;
}

export interface OutputObject {
  key: string;
  taskIndex: number;
  checkpointId: number;
}

/** The staged objects among `keys` (a listing of stagingDirectory), other keys ignored. */
export function parseStagedOutputKeys(jobDirectory: string, keys: readonly string[]): OutputObject[] {
  return parseKeys(keys, stagingDirectory(jobDirectory), /^task-(\d+)\/chk-(\d+)$/, 1, 2);
}

/** The committed objects among `keys` (a listing of committedDirectory), in checkpoint then task order. */
export function parseCommittedOutputKeys(jobDirectory: string, keys: readonly string[]): OutputObject[] {
  return parseKeys(keys, committedDirectory(jobDirectory), /^chk-(\d+)\/task-(\d+)$/, 2, 1);
}

function parseKeys(
  keys: readonly string[],
  directory: string,
  pattern: RegExp,
  taskGroup: number,
  checkpointGroup: number,
): OutputObject[] {
  const objects: OutputObject[] = [];
  for (const key of keys) {
    if (!key.startsWith(directory)) continue;
    const match = pattern.exec(key.slice(directory.length));
    if (match === null) continue;
    objects.push({ key, taskIndex: Number(match[taskGroup]), checkpointId: Number(match[checkpointGroup]) });
  }
  return objects.sort((a, b) => a.checkpointId - b.checkpointId || a.taskIndex - b.taskIndex);
}

/** `<prefix>/<namespace>/<job>/` of a trigger's `…/chk-<id>/task-<index>/` key prefix, or undefined. */
export function jobDirectoryOfPartsPrefix(keyPrefix: string): string | undefined {
  return /^(.*?)(?:chk|savepoint)-\d+\/task-\d+\/$/.exec(keyPrefix)?.[1];
}

/** `<prefix>/<namespace>/<job>/` of a `…/chk-<id>/_metadata` manifest key, or undefined. */
export function jobDirectoryOfManifestKey(manifestKey: string): string | undefined {
  return /^(.*?)(?:chk|savepoint)-\d+\/_metadata$/.exec(manifestKey)?.[1];
}
