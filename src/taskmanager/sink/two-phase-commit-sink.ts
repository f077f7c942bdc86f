// The exactly-once sink: a two-phase commit whose first phase stages output in object storage and
// whose second phase is the OutputTarget's publish (files in the bucket by default; a Kafka topic).
//
// - emit(): records go to an in-memory buffer, encoded by the target.
// - seal(id), in the synchronous part of checkpoint <id>: the buffer becomes the segment of <id>
//   (the records between the previous cut and this one); a new buffer starts.
// - stageThrough(id), in the asynchronous part, before the ack: every sealed segment up to <id> is
//   written to its staging object (output-layout.ts). Earlier segments are included because an
//   aborted checkpoint's output belongs to the next one, and a restore from <id> publishes
//   everything staged up to <id>, so all of it must be durable once <id> can complete.
// - commitThrough(id), on notify-complete: each staged segment up to <id>, in id order, is
//   published and its staging object deleted. The target makes a repeated publish harmless.
// - recover(), on restore from <n>: staged segments up to <n> are published (the notify may have
//   been lost), later ones deleted: the restored state does not include them, so the job produces
//   their records again.
import type { ObjectStore } from "../../storage/object-store.js";
import {
  committedOutputKey,
  parseStagedOutputKeys,
  stagedOutputKey,
  stagingDirectory,
} from "./output-layout.js";
import type { OutputTarget, RecoveredOutput, Sink, SinkLocation, StagedSegment } from "./sink.js";

interface Segment {
  checkpointId: number;
  data: Buffer;
  /** The staging PUT, in flight or done; unset again when it failed so the next attempt retries. */
  staging: Promise<void> | undefined;
}

/** The default target: committed objects in the bucket (output-layout.ts), one line per record. */
export const bucketOutput: OutputTarget = {
  encode: (value) => (value.endsWith("\n") ? value : `${value}\n`),
  async publish(segment, location) {
    // A server-side copy: repeated after a crash, it writes the same bytes to the same key again.
    await location.store.copy(
      segment.key,
      committedOutputKey(location.jobDirectory, segment.writerIndex, segment.checkpointId),
    );
  },
  close: () => Promise.resolve(),
};

export class TwoPhaseCommitSink implements Sink {
  private buffer: string[] = [];
  private readonly segments: Segment[] = [];
  private commits: Promise<void> = Promise.resolve();

  constructor(
    private readonly taskIndex: number,
    private readonly target: OutputTarget = bucketOutput,
  ) {}

  emit(value: string, key?: string): void {
    this.buffer.push(this.target.encode(value, key));
  }

  get pendingRecords(): number {
    return this.buffer.length;
  }

  /** Sealed segments not committed yet. */
  get uncommittedCheckpointIds(): number[] {
    return this.segments.map((segment) => segment.checkpointId);
  }

  seal(checkpointId: number): void {
    const last = this.segments.at(-1);
    if (last !== undefined && last.checkpointId >= checkpointId) {
      throw new Error(`sink: checkpoint ${checkpointId} sealed after checkpoint ${last.checkpointId}`);
    }
    if (this.buffer.length === 0) return;
    this.segments.push({ checkpointId, data: Buffer.from(this.buffer.join(""), "utf8"), staging: undefined });
    this.buffer = [];
  }

  async stageThrough(checkpointId: number, location: SinkLocation): Promise<void> {
    await Promise.all(
      this.segments
        .filter((segment) => segment.checkpointId <= checkpointId)
        .map((segment) => this.stage(segment, location)),
    );
  }

  commitThrough(checkpointId: number, location: SinkLocation): Promise<void> {
    const commit = this.commits.then(async () => {
      while (this.segments[0] !== undefined && this.segments[0].checkpointId <= checkpointId) {
        const segment = this.segments[0];
        await this.stage(segment, location);
        const key = stagedOutputKey(location.jobDirectory, this.taskIndex, segment.checkpointId);
        await this.target.publish(
          { writerIndex: this.taskIndex, checkpointId: segment.checkpointId, key, data: segment.data },
          location,
        );
        await location.store.delete([key]);
        this.segments.shift();
      }
    });
    // A failed commit must not block later ones: they retry the same segments.
    this.commits = commit.catch(() => undefined);
    return commit;
  }

  async recover(
    location: SinkLocation,
    restoredCheckpointId: number,
    parallelism: number,
  ): Promise<RecoveredOutput> {
    const staged = await stagedSegments(location.store, location.jobDirectory);
    const recovered: RecoveredOutput = { committed: [], discarded: [] };
    // After a rescale each old task's staging is handled by exactly one new task, in id order.
    for (const segment of staged.filter((object) => object.writerIndex % parallelism === this.taskIndex)) {
      if (segment.checkpointId <= restoredCheckpointId) {
        await this.target.publish(segment, location);
        recovered.committed.push(segment.checkpointId);
      } else {
        recovered.discarded.push(segment.checkpointId);
      }
      await location.store.delete([segment.key]);
    }
    return recovered;
  }

  close(): Promise<void> {
    return this.target.close();
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

/** Every staged segment of the job, in checkpoint then writer order. */
async function stagedSegments(store: ObjectStore, jobDirectory: string): Promise<StagedSegment[]> {
  return parseStagedOutputKeys(jobDirectory, await store.list(stagingDirectory(jobDirectory))).map(
    (object) => ({ writerIndex: object.taskIndex, checkpointId: object.checkpointId, key: object.key }),
  );
}
