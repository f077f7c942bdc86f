// Restore at start (docs/protocol.md, "Restore", steps 1-5): read and check the manifest, fetch
// every part that overlaps this task's key groups, verify its size and sha256 against the manifest,
// and only when every part verified, load this task's key groups from them. Any failure is a
// RestoreError naming the object; the TaskManager then refuses to start.
import { createHash } from "node:crypto";
import { rangesOverlap, type KeyGroupRange } from "../../api/key-groups.js";
import {
  formatZodError,
  StoredCheckpointManifest,
  type CheckpointManifest,
  type TaskManagerConfig,
} from "../../api/protocol.js";
import { ObjectNotFoundError, type ObjectStore } from "../../storage/object-store.js";
import { decodeStatePart } from "../state/state-part.js";
import type { KeyGroupedStateBackend } from "../state/keyed-state.js";

export class RestoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(`restore: ${message}`, options);
  }
}

export interface RestoredCheckpoint {
  checkpointId: number;
  /** Every partition's next offset, from the manifest (the runtime keeps the ones it reads). */
  sourceOffsets: Record<string, number>;
  /** Parts read, and keys loaded into the state. */
  partsRead: number;
  keysRestored: number;
}

export interface RestoreTarget {
  restoreFrom: NonNullable<TaskManagerConfig["restoreFrom"]>;
  job: TaskManagerConfig["job"];
  maxParallelism: number;
  keyGroupRange: KeyGroupRange;
}

export async function restoreCheckpoint(
  target: RestoreTarget,
  store: ObjectStore,
  state: KeyGroupedStateBackend,
): Promise<RestoredCheckpoint> {
  const { restoreFrom } = target;
  const manifest = await readManifest(store, restoreFrom.manifestKey);
  const mismatch = manifestMismatch(manifest, target);
  if (mismatch !== undefined) {
    throw new RestoreError(`manifest ${location(store, restoreFrom.manifestKey)}: ${mismatch}`);
  }
  const parts = manifest.parts.filter((part) => rangesOverlap(part.keyGroupRange, target.keyGroupRange));
  // Every part is verified before any of them is used: never a partial restore.
  const verified = await Promise.all(
    parts.map(async (part) => ({ key: part.key, bytes: await readVerified(store, part) })),
  );
  let keysRestored = 0;
  for (const { key, bytes } of verified) {
    try {
      for (const entry of decodeStatePart(bytes, target.keyGroupRange, location(store, key))) {
        state.restoreEntry(entry.keyGroup, entry.key, entry.value);
        keysRestored++;
      }
    } catch (err) {
      throw new RestoreError(`part ${location(store, key)} is unreadable: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return {
    checkpointId: manifest.checkpointId,
    sourceOffsets: manifest.sourceOffsets,
    partsRead: parts.length,
    keysRestored,
  };
}

async function readManifest(store: ObjectStore, key: string): Promise<CheckpointManifest> {
  const bytes = await readObject(store, key, "manifest");
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new RestoreError(`manifest ${location(store, key)} is not JSON`);
  }
  const parsed = StoredCheckpointManifest.safeParse(json);
  if (!parsed.success) {
    throw new RestoreError(`manifest ${location(store, key)} is invalid: ${formatZodError(parsed.error)}`);
  }
  return parsed.data;
}

function manifestMismatch(manifest: CheckpointManifest, target: RestoreTarget): string | undefined {
  if (manifest.checkpointId !== target.restoreFrom.checkpointId) {
    return `checkpointId: ${manifest.checkpointId}, expected ${target.restoreFrom.checkpointId}`;
  }
  if (manifest.job.namespace !== target.job.namespace || manifest.job.name !== target.job.name) {
    return `job: ${manifest.job.namespace}/${manifest.job.name}, expected ${target.job.namespace}/${target.job.name}`;
  }
  if (manifest.maxParallelism !== target.maxParallelism) {
    return `maxParallelism: ${manifest.maxParallelism}, expected ${target.maxParallelism} (key groups cannot be re-cut)`;
  }
  return undefined;
}

async function readVerified(store: ObjectStore, part: CheckpointManifest["parts"][number]): Promise<Buffer> {
  const bytes = await readObject(store, part.key, "part");
  if (bytes.length !== part.sizeBytes) {
    throw new RestoreError(
      `part ${location(store, part.key)} size mismatch: expected ${part.sizeBytes} bytes, got ${bytes.length}`,
    );
  }
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (sha256 !== part.sha256) {
    throw new RestoreError(
      `part ${location(store, part.key)} sha256 mismatch: expected ${part.sha256}, got ${sha256}`,
    );
  }
  return bytes;
}

async function readObject(store: ObjectStore, key: string, what: "manifest" | "part"): Promise<Buffer> {
  try {
    return await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError)
      throw new RestoreError(`${what} ${location(store, key)} not found`);
    throw new RestoreError(`${what} ${location(store, key)} could not be read: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function location(store: ObjectStore, key: string): string {
  return `s3://${store.bucket}/${key}`;
}
