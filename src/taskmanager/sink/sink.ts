// What the runtime needs from a job's output: records go in with emit(), a checkpoint's cut seals
// them, its asynchronous part makes them durable before the ack, and notify-complete publishes
// them. The exactly-once sinks are TwoPhaseCommitSink over an OutputTarget (files in the bucket by
// default, a Kafka topic); an at-least-once sink may publish at once and only flush at the cut.
import type { ObjectStore } from "../../storage/object-store.js";

export interface SinkLocation {
  store: ObjectStore;
  /** `<prefix>/<namespace>/<job>/`, ending in "/". */
  jobDirectory: string;
}

export interface RecoveredOutput {
  committed: number[];
  discarded: number[];
}

export interface Sink {
  /** One output record; `key` is the record's key where the output has keys (Kafka). */
  emit(value: string, key?: string): void;
  /** Records emitted since the last cut. */
  readonly pendingRecords: number;
  /** Synchronous part of checkpoint `checkpointId`: the records so far belong to it. */
  seal(checkpointId: number): void;
  /** Asynchronous part, before the ack: what checkpoints up to `checkpointId` need is durable. */
  stageThrough(checkpointId: number, location: SinkLocation): Promise<void>;
  /** On notify-complete: publishes the output of checkpoints up to `checkpointId`; repeatable. */
  commitThrough(checkpointId: number, location: SinkLocation): Promise<void>;
  /**
   * Restore step 6 of docs/protocol.md, before processing starts: output staged by earlier tasks
   * `j` with `j mod parallelism == taskIndex` is published up to `restoredCheckpointId`, the rest
   * discarded (the restored state does not include it, so the job produces it again).
   */
  recover(
    location: SinkLocation,
    restoredCheckpointId: number,
    parallelism: number,
  ): Promise<RecoveredOutput>;
  /** Ends the sink's connections. */
  close(): Promise<void>;
}

/** A staged segment: the records task `writerIndex` emitted up to checkpoint `checkpointId`'s cut. */
export interface StagedSegment {
  writerIndex: number;
  checkpointId: number;
  /** The staging object's key. */
  key: string;
  /** Its bytes, when the task still holds them (a recovery reads them from `key`). */
  data?: Buffer;
}

/** Where a two-phase-commit sink publishes: the second phase, and the staged encoding of a record. */
export interface OutputTarget {
  /** One record as a line of a staged segment, ending in "\n". */
  encode(value: string, key: string | undefined): string;
  /**
   * Makes a staged segment part of the job's output. Called in checkpoint order per writer, and
   * again for the same segment after a crash: a repeat must not publish it twice.
   */
  publish(segment: StagedSegment, location: SinkLocation): Promise<void>;
  close(): Promise<void>;
}
