// The coordinator's view of checkpoint storage (SnapshotStore) on top of any ObjectStore: manifests
// are validated on the way out and on the way in, and directories are found by the names
// src/api/object-layout.ts gives them.
import {
  jobDirectory,
  MANIFEST_NAME,
  manifestKey,
  parseCheckpointDirectoryName,
  triggerRecordKey,
} from "../api/object-layout.js";
import {
  CheckpointManifest,
  formatZodError,
  StoredCheckpointManifest,
  type JobRef,
} from "../api/protocol.js";
import {
  CorruptManifestError,
  type SnapshotStore,
  type StoredCheckpoint,
  type TriggerRecord,
} from "../coordinator/interfaces.js";

export { CorruptManifestError };
import { ObjectNotFoundError, type ObjectStore } from "./object-store.js";

export class ObjectSnapshotStore implements SnapshotStore {
  constructor(
    readonly objects: ObjectStore,
    /** Key prefix shared by every job's checkpoints in the bucket; may be empty. */
    readonly basePrefix: string,
  ) {}

  async recordTrigger(record: TriggerRecord): Promise<void> {
    const { job, kind, checkpointId } = record;
    const key = triggerRecordKey({ basePrefix: this.basePrefix, ...job, kind, checkpointId });
    await this.objects.put(key, Buffer.from(`${JSON.stringify(record)}\n`));
  }

  async putManifest(manifest: CheckpointManifest): Promise<string> {
    const parsed = CheckpointManifest.safeParse(manifest);
    if (!parsed.success) {
      throw new Error(
        `refusing to write the manifest of ${manifest.kind} ${manifest.checkpointId}: ${formatZodError(parsed.error)}`,
      );
    }
    const { job, kind, checkpointId } = parsed.data;
    const key = manifestKey({ basePrefix: this.basePrefix, ...job, kind, checkpointId });
    // Indented: people read manifests with `mc cat` when deciding what to restore.
    await this.objects.put(key, Buffer.from(`${JSON.stringify(parsed.data, null, 2)}\n`));
    return key;
  }

  async getManifest(key: string): Promise<CheckpointManifest | null> {
    let bytes: Buffer;
    try {
      bytes = await this.objects.get(key);
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return null;
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString("utf8"));
    } catch (err) {
      throw new CorruptManifestError(key, `not JSON (${(err as Error).message})`);
    }
    const parsed = StoredCheckpointManifest.safeParse(json);
    if (!parsed.success) throw new CorruptManifestError(key, formatZodError(parsed.error));
    // Retention and restore trust the directory name; a manifest claiming another checkpoint is wrong.
    const directory = parseCheckpointDirectoryName(key.split("/").at(-2) ?? "");
    const { kind, checkpointId } = parsed.data;
    if (directory !== null && (directory.kind !== kind || directory.checkpointId !== checkpointId)) {
      throw new CorruptManifestError(key, `it describes ${kind} ${checkpointId}, not the directory it is in`);
    }
    return parsed.data;
  }

  async listCheckpoints(job: JobRef): Promise<StoredCheckpoint[]> {
    const jobPrefix = jobDirectory(this.basePrefix, job.namespace, job.name);
    const found = new Map<string, StoredCheckpoint>();
    for (const key of await this.objects.list(jobPrefix)) {
      const rest = key.slice(jobPrefix.length);
      const slash = rest.indexOf("/");
      if (slash === -1) continue; // an object beside the directories, not in one
      const name = rest.slice(0, slash);
      const parsed = parseCheckpointDirectoryName(name);
      if (parsed === null) continue;
      let checkpoint = found.get(name);
      if (checkpoint === undefined) {
        checkpoint = { ...parsed, directory: `${jobPrefix}${name}/`, objectKeys: [] };
        found.set(name, checkpoint);
      }
      checkpoint.objectKeys.push(key);
    }
    return [...found.values()];
  }

  /**
   * Deletes the keys in the given order. Keys between manifests go together in batches; each
   * manifest goes in a request of its own, so it is gone before any key after it is touched and
   * only once every key before it is gone.
   */
  async deleteObjects(keys: readonly string[]): Promise<void> {
    let batch: string[] = [];
    for (const key of keys) {
      if (!isManifestKey(key)) {
        batch.push(key);
        continue;
      }
      if (batch.length > 0) await this.objects.delete(batch);
      await this.objects.delete([key]);
      batch = [];
    }
    if (batch.length > 0) await this.objects.delete(batch);
  }

  async statObject(key: string): Promise<{ sizeBytes: number } | null> {
    return this.objects.stat(key);
  }
}

function isManifestKey(key: string): boolean {
  return key === MANIFEST_NAME || key.endsWith(`/${MANIFEST_NAME}`);
}
