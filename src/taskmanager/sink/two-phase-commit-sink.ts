// The exactly-once sink: a two-phase commit over object storage.
//
// - emit(): lines go to an in-memory buffer.
// - seal(id), in the synchronous part of checkpoint <id>: the buffer becomes the segment of <id>
//   (the lines between the previous cut and this one); a new buffer starts.
// - stageThrough(id), in the asynchronous part, before the ack: every sealed segment up to <id> is
//   written to its staging object (output-layout.ts). Earlier segments are included because an
//   aborted checkpoint's output belongs to the next one, and a restore from <id> commits everything
//   staged up to <id>, so all of it must be durable once <id> can complete.
// - commitThrough(id), on notify-complete: each staged segment up to <id>, in id order, is copied to
//   its committed key (server-side) and its staging object deleted. A copy repeated after a crash
//   writes the same bytes again, so retries never duplicate output.
// - recoverStagedOutput(), on restore from <n>: staged segments up to <n> are committed (the notify
//   may have been lost), later ones deleted: the restored state does not include them, so the job
//   produces their lines again.
import type { ObjectStore } from "../../storage/object-store.js";
import {
  committedOutputKey,
  parseStagedOutputKeys,
  stagedOutputKey,
  stagingDirectory,
} from "./output-layout.js";

export interface SinkLocation {
  store: ObjectStore;
  /** `<prefix>/<namespace>/<job>/`, ending in "/". */
  jobDirectory: string;
}

interface Segment {
  checkpointId: number;
  data: Buffer;
  /** The staging PUT, in flight or done; unset again when it failed so the next attempt retries. */
  staging: Promise<void> | undefined;
}

export class TwoPhaseCommitSink {
  private buffer: string[] = [];
  private readonly segments: Segment[] = [];
  private commits: Promise<void> = Promise.resolve();

  constructor(private readonly taskIndex: number) {}

  emit(line: string): void {
    this.buffer.push(line.endsWith("\n") ? line : `${line}\n`);
  }

  /** Lines emitted since the last cut. */
  get pendingLines(): number {
    return this.buffer.length;
  }

  /** Sealed segments not committed yet. */
  get uncommittedCheckpointIds(): number[] {
    return this.segments.map((segment) => segment.checkpointId);
  }

  /** Synchronous part of checkpoint `checkpointId`: the lines so far belong to it. */
  seal(checkpointId: number): void {
    const last = this.segments.at(-1);
    if (last !== undefined && last.checkpointId >= checkpointId) {
      throw new Error(`sink: checkpoint ${checkpointId} sealed after checkpoint ${last.checkpointId}`);
    }
    if (this.buffer.length === 0) return;
    this.segments.push({ checkpointId, data: Buffer.from(this.buffer.join(""), "utf8"), staging: undefined });
    this.buffer = [];
  }

  /** Makes every sealed segment up to `checkpointId` durable in staging. */
  async stageThrough(checkpointId: number, location: SinkLocation): Promise<void> {
    await Promise.all(
      this.segments
        .filter((segment) => segment.checkpointId <= checkpointId)
        .map((segment) => this.stage(segment, location)),
    );
  }

  /** Commits every segment up to `checkpointId`, in order; repeated calls are harmless. */
  commitThrough(checkpointId: number, location: SinkLocation): Promise<void> {
    const commit = this.commits.then(async () => {
      while (this.segments[0] !== undefined && this.segments[0].checkpointId <= checkpointId) {
        const segment = this.segments[0];
        await this.stage(segment, location);
        const staged = stagedOutputKey(location.jobDirectory, this.taskIndex, segment.checkpointId);
        await location.store.copy(
          staged,
          committedOutputKey(location.jobDirectory, this.taskIndex, segment.checkpointId),
        );
        await location.store.delete([staged]);
        this.segments.shift();
      }
    });
    // A failed commit must not block later ones: they retry the same segments.
    this.commits = commit.catch(() => undefined);
    return commit;
  }

  private stage(segment: Segment, location: SinkLocation): Promise<void> {
    if (segment.staging === undefined) {
      const key = stagedOutputKey(location.jobDirectory, this.taskIndex, segment.checkpointId);
      const staging = location.store.put(key, segment.data).then(() => undefined);
      segment.staging = staging;
      staging.catch(() => {
        if (segment.staging === staging) segment.staging = undefined;
      });
    }
    return segment.staging;
  }
}

export interface RecoveredOutput {
  committed: number[];
  discarded: number[];
}

/**
 * Restore step 6 of docs/protocol.md for the staged output of every earlier task index `j` with
 * `j mod parallelism == taskIndex`: after a rescale each old task's staging is handled by exactly
 * one new task. Commits staged checkpoints up to `restoredCheckpointId`, deletes later ones.
 */
export async function recoverStagedOutput(
  location: SinkLocation,
  restoredCheckpointId: number,
  taskIndex: number,
  parallelism: number,
): Promise<RecoveredOutput> {
  const staged = parseStagedOutputKeys(
    location.jobDirectory,
    await location.store.list(stagingDirectory(location.jobDirectory)),
  ).filter((object) => object.taskIndex % parallelism === taskIndex);
  const recovered: RecoveredOutput = { committed: [], discarded: [] };
  for (const object of staged) {
    if (object.checkpointId <= restoredCheckpointId) {
      await location.store.copy(
        object.key,
        committedOutputKey(location.jobDirectory, object.taskIndex, object.checkpointId),
      );
      recovered.committed.push(object.checkpointId);
    } else {
      recovered.discarded.push(object.checkpointId);
    }
    await location.store.delete([object.key]);
  }
  return recovered;
}
