// The processing loop of one task: reads the source partitions assigned to it, hands each record to
// the job with the task's keyed state and sink, and takes the consistent cut of a checkpoint.
//
// Records are processed in small synchronous batches, and the loop yields to the event loop
// (setImmediate) between batches, so HTTP requests are served while the job runs. A cut is taken
// in an HTTP handler, i.e. between two batches, where every partition's offset matches the state:
// offsets only move together with the state changes of the records they count.
import { performance } from "node:perf_hooks";
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from "node:timers/promises";
import type { KeyGroupRange } from "../../api/key-groups.js";
import { DEFAULT_STAGE_ID, PARTITION_STATE_STAGE_ID } from "../../api/protocol.js";
import {
  keyGroupOfPartition,
  type JobContext,
  type SourcePartition,
  type JobDefinition,
  type SourceBatch,
  type SourceRecord,
} from "../job/job-definition.js";
import type { KeyGroupedStateBackend, KeyedState, KeyedStateSnapshot } from "../state/keyed-state.js";
import type { PartitionScopedState } from "../state/partition-state.js";
import type { Sink } from "../sink/sink.js";

/** The frozen state of one stage, written as one part. */
export interface StageSnapshot {
  stageId: string;
  snapshot: KeyedStateSnapshot;
  /**
   * Written even when empty, so every manifest covers each task's key groups of a keyed stage;
   * partition-scoped state writes no empty part.
   */
  writeEmpty: boolean;
}

/** What a checkpoint uploads: frozen state of every stage, next offsets, sealed sink output. */
export interface CheckpointCut {
  checkpointId: number;
  stages: StageSnapshot[];
  sourceOffsets: Record<string, number>;
  /** Records behind the source's end, for the partitions whose source knows its end. */
  sourceLag: Record<string, number>;
  syncDurationMs: number;
  /** Dataflows: the longest barrier alignment of this task's stages for this checkpoint. */
  alignmentDurationMs?: number;
  /** Dataflows: per stage, the share of the time since the previous cut it waited for credit. */
  backpressure?: Record<string, number>;
}

export interface TaskRuntimeOptions {
  job: JobDefinition<unknown>;
  context: JobContext;
  state: KeyGroupedStateBackend;
  partitionState: PartitionScopedState;
  sink: Sink;
  /** Records per partition read, and per synchronous batch before yielding. */
  batchSize?: number;
  /** Pause when no partition had a record. */
  idleMs?: number;
  /** Where records go next, when the job is a dataflow (src/dataflow/): its backpressure. */
  flow?: SourceFlow;
}

/** The source's view of the exchange it feeds. */
export interface SourceFlow {
  /** Undefined when records can be sent; else resolves once they can (credit came back). */
  writable(): Promise<void> | undefined;
  /** After each batch: what the batch sent leaves now rather than when a buffer is full. */
  batchDone(): void;
}

interface AssignedPartition {
  source: SourcePartition<unknown>;
  /** The next record to read. */
  offset: number;
  /** Its partition-scoped state. */
  state: KeyedState;
}

export class TaskRuntime {
  private assigned: AssignedPartition[] = [];
  private partitions: readonly SourcePartition<unknown>[] | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private processed = 0;
  private readonly batchSize: number;
  private readonly idleMs: number;

  constructor(private readonly options: TaskRuntimeOptions) {
    this.batchSize = options.batchSize ?? 500;
    this.idleMs = options.idleMs ?? 20;
  }

  get recordsProcessed(): number {
    return this.processed;
  }

  /** The ids of the partitions this task reads, and their next offsets. */
  get sourceOffsets(): Record<string, number> {
    return Object.fromEntries(this.assigned.map((partition) => [partition.source.id, partition.offset]));
  }

  /** Per partition whose source knows its end offset: how many offsets this task is behind it. */
  get sourceLag(): Record<string, number> {
    const lag: Record<string, number> = {};
    for (const partition of this.assigned) {
      const end = partition.source.endOffset?.();
      if (end !== undefined) lag[partition.source.id] = Math.max(0, end - partition.offset);
    }
    return lag;
  }

  /**
   * Learns the job's partitions and where each one's partition-scoped state lives: before a
   * restore, which places that state by them.
   */
  async discover(): Promise<void> {
    const { job, context, partitionState } = this.options;
    const partitions = await job.partitions(context);
    const ids = new Set<string>();
    for (const partition of partitions) {
      if (ids.has(partition.id)) throw new Error(`the job has two partitions named ${partition.id}`);
      ids.add(partition.id);
      partitionState.place(partition.id, keyGroupOfPartition(job, partition, context.maxParallelism));
    }
    this.partitions = partitions;
  }

  /**
   * Keeps the partitions whose key group this task owns, starting at the restored offsets (a
   * partition not listed starts at its `startOffset()`, by default 0).
   */
  async open(restoredOffsets: Readonly<Record<string, number>>): Promise<void> {
    const { job, context, partitionState } = this.options;
    if (this.partitions === undefined) await this.discover();
    const restored = Object.keys(restoredOffsets).length > 0;
    const owned = this.partitions!.filter((partition) =>
      owns(context.keyGroupRange, keyGroupOfPartition(job, partition, context.maxParallelism)),
    );
    this.assigned = await Promise.all(
      owned.map(async (source) => ({
        source,
        offset: restoredOffsets[source.id] ?? (await source.startOffset?.(restored)) ?? 0,
        state: partitionState.view(source.id),
      })),
    );
  }

  /** Starts the loop; the returned promise rejects when the job fails. */
  start(): Promise<void> {
    this.running = true;
    this.loop = this.run();
    return this.loop;
  }

  /** Stops between two batches and waits for the loop to end (a failure was already reported by start). */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop?.catch(() => undefined);
  }

  /** After a checkpoint completed: each partition's source learns the offset it holds. */
  checkpointed(sourceOffsets: Readonly<Record<string, number>>): void {
    for (const partition of this.assigned) {
      const offset = sourceOffsets[partition.source.id];
      if (offset !== undefined) partition.source.checkpointed?.(offset);
    }
  }

  /** Takes the consistent cut for `checkpointId`; synchronous, so no record is processed meanwhile. */
  cut(checkpointId: number): CheckpointCut {
    const started = performance.now();
    const sourceOffsets = this.sourceOffsets;
    const sourceLag = this.sourceLag;
    this.options.sink.seal(checkpointId);
    // Last, so a throwing seal leaves no snapshot that nobody releases.
    const stages = [
      { stageId: DEFAULT_STAGE_ID, snapshot: this.options.state.snapshot(), writeEmpty: true },
      this.partitionStateSnapshot(),
    ];
    // Whole milliseconds: every time on the wire is an integer (docs/protocol.md, "Terms").
    return {
      checkpointId,
      stages,
      sourceOffsets,
      sourceLag,
      syncDurationMs: Math.round(performance.now() - started),
    };
  }

  /** The partition-scoped state's stage of a cut. */
  partitionStateSnapshot(): StageSnapshot {
    return {
      stageId: PARTITION_STATE_STAGE_ID,
      snapshot: this.options.partitionState.backend.snapshot(),
      writeEmpty: false,
    };
  }

  private async run(): Promise<void> {
    const { job, state, sink } = this.options;
    const emit = (value: string, key?: string) => sink.emit(value, key);
    while (this.running) {
      let sinceYield = 0;
      let roundRecords = 0;
      for (const partition of this.assigned) {
        const blocked = this.options.flow?.writable();
        if (blocked !== undefined) {
          await blocked;
          if (!this.running) return;
        }
        const { records, nextOffset } = sourceBatch(
          partition,
          await partition.source.read(partition.offset, this.batchSize),
        );
        if (!this.running) return;
        for (const record of records) {
          job.process(record.value, {
            partitionId: partition.source.id,
            offset: record.offset,
            state,
            partitionState: partition.state,
            emit,
          });
          // The next record to read, not a count: offsets may have gaps.
          partition.offset = record.offset + 1;
          this.processed++;
        }
        partition.offset = nextOffset;
        sinceYield += records.length;
        roundRecords += records.length;
        if (sinceYield >= this.batchSize) {
          this.options.flow?.batchDone();
          await yieldToEventLoop();
          sinceYield = 0;
          if (!this.running) return;
        }
      }
      this.options.flow?.batchDone();
      if (roundRecords === 0) await sleep(this.idleMs);
      else await yieldToEventLoop();
    }
  }
}

/**
 * A read's records with their offsets, and the offset to read next; refuses offsets that do not
 * increase from the one asked for, naming the partition, since a restore from them would skip or
 * repeat records.
 */
function sourceBatch(
  partition: AssignedPartition,
  read: readonly unknown[] | SourceBatch<unknown>,
): { records: readonly SourceRecord<unknown>[]; nextOffset: number } {
  const from = partition.offset;
  if (Array.isArray(read)) {
    const values = read as readonly unknown[];
    return {
      records: values.map((value, i) => ({ offset: from + i, value })),
      nextOffset: from + values.length,
    };
  }
  const { records, nextOffset } = read as SourceBatch<unknown>;
  let expectedAtLeast = from;
  for (const record of records) {
    if (!Number.isSafeInteger(record.offset) || record.offset < expectedAtLeast) {
      throw new Error(
        `source partition ${partition.source.id}: read(${from}) returned offset ${record.offset} where at least ${expectedAtLeast} was expected (offsets must increase)`,
      );
    }
    expectedAtLeast = record.offset + 1;
  }
  if (nextOffset !== undefined && (!Number.isSafeInteger(nextOffset) || nextOffset < expectedAtLeast)) {
    throw new Error(
      `source partition ${partition.source.id}: read(${from}) returned nextOffset ${nextOffset} where at least ${expectedAtLeast} was expected`,
    );
  }
  return { records, nextOffset: nextOffset ?? expectedAtLeast };
}

function owns(range: KeyGroupRange, keyGroup: number): boolean {
  return keyGroup >= range.start && keyGroup <= range.end;
}
