// Restore at start (docs/protocol.md, "Restore", steps 1-5): read and check the manifest, then for
// every part that overlaps this task's key groups stage the entries of its own key groups, read with
// ranged GETs through the part's index (v2) or by streaming the whole part (v1, or no index), and
// verified against digests the manifest vouches for; only when every part is staged does any entry
// reach the state. Any failure is a RestoreError naming the object; the TaskManager then refuses to
// start.
import { createHash } from "node:crypto";
import { rangesOverlap, type KeyGroupRange } from "../../api/key-groups.js";
import {
  DEFAULT_STAGE_ID,
  PARTITION_STATE_STAGE_ID,
  formatZodError,
  stageOfPart,
  StoredCheckpointManifest,
  type CheckpointManifest,
  type TaskManagerConfig,
} from "../../api/protocol.js";
import { ObjectNotFoundError, type ObjectStore } from "../../storage/object-store.js";
import type { Readable } from "node:stream";
import {
  decodeBlock,
  StatePartLineDecoder,
  verifiedIndex,
  type PartExpectation,
  type StateEntry,
} from "../state/state-part-decoder.js";
import type { PartIndexLocation } from "../state/state-part.js";
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

/** The backend of each stage the job has: its keyed state, and its partition-scoped state. */
export type StageStates = Readonly<Record<string, KeyGroupedStateBackend>>;

export async function restoreCheckpoint(
  target: RestoreTarget,
  store: ObjectStore,
  states: StageStates,
): Promise<RestoredCheckpoint> {
  const { restoreFrom } = target;
  const manifest = await readManifest(store, restoreFrom.manifestKey);
  const mismatch = manifestMismatch(manifest, target);
  if (mismatch !== undefined) {
    throw new RestoreError(`manifest ${location(store, restoreFrom.manifestKey)}: ${mismatch}`);
  }
  const parts = manifest.parts.filter((part) => rangesOverlap(part.keyGroupRange, target.keyGroupRange));
  // State of a stage the job does not have would be lost, so it is refused.
  const foreign = parts.find((part) => !Object.hasOwn(states, stageOfPart(part)));
  if (foreign !== undefined) {
    throw new RestoreError(
      `part ${location(store, foreign.key)} holds state of stage ${JSON.stringify(foreign.stageId)}, which this job does not have`,
    );
  }
  // Every part is verified into staging before any entry reaches the state: never a partial restore.
  const staged = await Promise.all(parts.map((part) => stagePart(store, part, target)));
  let keysRestored = 0;
  for (const [i, entries] of staged.entries()) {
    const part = parts[i]!;
    const state = states[stageOfPart(part)]!;
    for (const entry of entries) {
      try {
        state.restoreEntry(entry.keyGroup, entry.key, entry.value);
      } catch (err) {
        // Partition-scoped state follows its partition's key group, which the partition count decides.
        const hint =
          stageOfPart(part) === PARTITION_STATE_STAGE_ID
            ? " (partition-scoped state cannot be restored after the source's partition count changed)"
            : "";
        throw new RestoreError(
          `part ${location(store, part.key)}, stage ${stageOfPart(part)}: ${(err as Error).message}${hint}`,
        );
      }
      keysRestored++;
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

type ManifestPart = CheckpointManifest["parts"][number];

/** The wanted entries of one part, every byte they came from verified against the manifest. */
async function stagePart(
  store: ObjectStore,
  part: ManifestPart,
  target: RestoreTarget,
): Promise<StateEntry[]> {
  const expect: PartExpectation = {
    objectName: location(store, part.key),
    keyGroupRange: part.keyGroupRange,
    stageId: stageOfPart(part),
    wanted: target.keyGroupRange,
    // Keyed state lies in its keys' hash key groups; partition-scoped state in its partitions',
    // which the stage's backend checks as it loads each entry.
    ...(stageOfPart(part) === DEFAULT_STAGE_ID && { maxParallelism: target.maxParallelism }),
  };
  try {
    return part.index === undefined
      ? await stageWholePart(store, part, expect)
      : await stageKeyGroups(store, part, part.index, expect);
  } catch (err) {
    if (err instanceof RestoreError) throw err;
    throw new RestoreError(`unreadable part ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Streams the part line by line into staging, hashing it; the entries are returned only when its size
 * and sha256 match the manifest. A part that is corrupt is reported as a digest mismatch rather than
 * by the first line it breaks.
 */
async function stageWholePart(
  store: ObjectStore,
  part: ManifestPart,
  expect: PartExpectation,
): Promise<StateEntry[]> {
  const decoder = new StatePartLineDecoder(expect);
  const hash = createHash("sha256");
  const entries: StateEntry[] = [];
  let sizeBytes = 0;
  let unreadable: unknown;
  const decode = (line: Buffer) => {
    if (unreadable !== undefined) return;
    try {
      const entry = decoder.line(line);
      if (entry !== undefined) entries.push(entry);
    } catch (err) {
      unreadable = err;
    }
  };
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of await readStream(() => store.getStream(part.key), expect.objectName)) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    sizeBytes += bytes.length;
    let start = 0;
    for (let newline = bytes.indexOf(0x0a); newline !== -1; newline = bytes.indexOf(0x0a, start)) {
      decode(
        carry.length === 0
          ? bytes.subarray(start, newline)
          : Buffer.concat([carry, bytes.subarray(start, newline)]),
      );
      carry = Buffer.alloc(0);
      start = newline + 1;
    }
    if (start < bytes.length) carry = Buffer.concat([carry, bytes.subarray(start)]);
  }
  if (sizeBytes !== part.sizeBytes) {
    throw new RestoreError(
      `part ${expect.objectName} size mismatch: expected ${part.sizeBytes} bytes, got ${sizeBytes}`,
    );
  }
  const sha256 = hash.digest("hex");
  if (sha256 !== part.sha256) {
    throw new RestoreError(
      `part ${expect.objectName} sha256 mismatch: expected ${part.sha256}, got ${sha256}`,
    );
  }
  if (unreadable !== undefined) throw unreadable;
  if (carry.length > 0)
    throw new Error(
      `${expect.objectName} at byte ${sizeBytes - carry.length}: the last line does not end in "\\n"`,
    );
  decoder.end();
  return entries;
}

/**
 * Reads the part's index (its digest is in the manifest), then with one ranged GET the contiguous
 * blocks of the wanted key groups, verifying each block against the index before decoding it.
 */
async function stageKeyGroups(
  store: ObjectStore,
  part: ManifestPart,
  indexAt: PartIndexLocation,
  expect: PartExpectation,
): Promise<StateEntry[]> {
  // One byte more than the index: the index must end the part, so any byte after it means the
  // object is not the one the manifest describes.
  const read = () => store.getRange(part.key, indexAt.offset, indexAt.length + 1);
  const indexBytes = await collect(await readStream(read, expect.objectName));
  if (indexBytes.length > indexAt.length) {
    throw new RestoreError(
      `part ${expect.objectName} size mismatch: expected ${part.sizeBytes} bytes, got more`,
    );
  }
  const index = verifiedIndex(indexBytes, indexAt, expect);
  const blocks = index.keyGroups.filter(
    ([keyGroup]) => keyGroup >= expect.wanted.start && keyGroup <= expect.wanted.end,
  );
  const first = blocks[0];
  const last = blocks.at(-1);
  if (first === undefined || last === undefined) return [];
  const spanEnd = last[1] + last[2];
  const span = await readStream(
    () => store.getRange(part.key, first[1], spanEnd - first[1]),
    expect.objectName,
  );
  const entries: StateEntry[] = [];
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let next = 0;
  for await (const chunk of span) {
    let bytes = chunk as Buffer;
    while (bytes.length > 0) {
      const block = blocks[next];
      if (block === undefined)
        throw new Error(`${expect.objectName}: the range holds more bytes than its blocks`);
      const take = Math.min(block[2] - pendingBytes, bytes.length);
      pending.push(bytes.subarray(0, take));
      pendingBytes += take;
      bytes = bytes.subarray(take);
      if (pendingBytes === block[2]) {
        entries.push(...decodeBlock(Buffer.concat(pending), block, expect));
        pending = [];
        pendingBytes = 0;
        next++;
      }
    }
  }
  if (next < blocks.length) {
    const block = blocks[next]!;
    throw new Error(
      `${expect.objectName} at byte ${block[1]}: the range ended inside the block of key group ${block[0]}`,
    );
  }
  return entries;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readStream(open: () => Promise<Readable>, objectName: string): Promise<Readable> {
  try {
    return await open();
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new RestoreError(`part ${objectName} not found`);
    throw new RestoreError(`part ${objectName} could not be read: ${(err as Error).message}`, { cause: err });
  }
}

async function readObject(store: ObjectStore, key: string, what: "manifest"): Promise<Buffer> {
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
