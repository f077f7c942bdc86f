// The interface job code implements: the built-in jobs (builtin/) and users' own modules
// (docs/writing-a-job.md). The runtime owns everything else: which partitions this task reads,
// offsets, keyed state, snapshots, restore and the exactly-once sink. A JobDefinition is the code;
// a StreamJob (src/api/streamjob.ts) is the resource that names it in `spec.job`.
import { keyGroupForKey, type KeyGroupRange } from "../../api/key-groups.js";
import type { JobRef } from "../../api/protocol.js";
import type { ObjectStore } from "../../storage/object-store.js";
import type { Sink } from "../sink/sink.js";
import type { KeyedState } from "../state/keyed-state.js";

export type { JsonValue, KeyedState } from "../state/keyed-state.js";

/** What a job learns when the task starts. */
export interface JobContext {
  /** The StreamJob's `spec.job.args` (`program.args` of the TaskManager's start-up configuration). */
  readonly args: readonly string[];
  readonly job: JobRef;
  readonly taskIndex: number;
  readonly parallelism: number;
  readonly maxParallelism: number;
  readonly keyGroupRange: KeyGroupRange;
  /** Object storage of the job's endpoint, for sources that read objects. */
  storage(bucket: string): ObjectStore;
}

/** A record with its offset, for sources whose offsets have gaps. */
export interface SourceRecord<TRecord> {
  readonly offset: number;
  readonly value: TRecord;
}

/**
 * What a source whose offsets are not contiguous returns from `read` (Kafka: transaction markers,
 * aborted transactions, retention and compaction leave gaps).
 */
export interface SourceBatch<TRecord> {
  /** In increasing offset order, none below the offset asked for. */
  readonly records: readonly SourceRecord<TRecord>[];
  /**
   * The offset to read next, when the source skipped past offsets that hold no record (a batch of
   * markers only). Default: the last record's offset + 1, or the offset asked for when none.
   */
  readonly nextOffset?: number;
}

/**
 * One source partition: an ordered, replayable sequence of records numbered by increasing offsets.
 * Reading the same offset again (after a restore) must give the same record.
 */
export interface SourcePartition<TRecord> {
  /** Unique within the job; the key of `sourceOffsets` in acks and manifests. */
  readonly id: string;
  /**
   * Up to `maxRecords` records starting at `offset`; fewer or none when no more are available yet.
   * A plain array means contiguous offsets (`offset`, `offset` + 1, …); a `SourceBatch` carries each
   * record's offset.
   */
  read(offset: number, maxRecords: number): Promise<readonly TRecord[] | SourceBatch<TRecord>>;
  /**
   * Where reading starts when the restored checkpoint has no offset for this partition (a new job,
   * a new partition). Default: 0. Asked once, when the task opens, so a checkpoint records it.
   * `restored` says the task restored a checkpoint, so the partition was added since: a source
   * should then start at its beginning, not at a new job's starting position.
   */
  startOffset?(restored?: boolean): Promise<number>;
  /**
   * The key group whose owner reads this partition, when the partition knows better than a hash of
   * its id (Kafka spreads a topic's partitions evenly; see src/connectors/kafka/source.ts). The
   * job's `partitionKeyGroup`, when it has one, decides first. It must not depend on the
   * parallelism: the partition's partition-scoped state lives in this key group.
   */
  keyGroup?(maxParallelism: number): number;
  /**
   * The offset after the last record the source knew of at its latest read (Kafka: the last stable
   * offset), if it knows one: the partition's lag is this minus the next offset to read.
   */
  endOffset?(): number | undefined;
  /**
   * Told, after a checkpoint completed, the offset it holds for this partition: a source may
   * report it elsewhere (Kafka: a consumer group's offsets, for lag tools). Never decides a restore.
   */
  checkpointed?(offset: number): void;
}

/** What `process` gets with every record. */
export interface RecordContext {
  readonly partitionId: string;
  readonly offset: number;
  /** The task's keyed state; only keys in the task's key groups are accepted. */
  readonly state: KeyedState;
  /**
   * The state of the record's source partition (partition-scoped state): any key, visible only
   * while processing records of this partition, moved with the partition on a rescale.
   */
  readonly partitionState: KeyedState;
  /**
   * Appends one record to the job's output: a line of the committed files by default, or a record
   * of the job's `output` (a Kafka topic, keyed by `key`). Exactly-once outputs publish it when a
   * checkpoint that includes it completes.
   */
  emit(value: string, key?: string): void;
}

export interface JobDefinition<TRecord> {
  /**
   * Every partition of the job, the same list on every task. The runtime reads only the ones
   * assigned to this task (see `partitionKeyGroup`), starting at their restored offsets.
   */
  partitions(
    context: JobContext,
  ): readonly SourcePartition<TRecord>[] | Promise<readonly SourcePartition<TRecord>[]>;
  /**
   * The key group whose owner reads a partition. Default: the partition's own `keyGroup`, else
   * keyGroupForKey(partitionId), the rule docs/protocol.md recommends. Records whose state key is not owned by the reading task cannot be
   * processed, so a job keys its state by something that lands in the partition's key group.
   */
  partitionKeyGroup?(partitionId: string, maxParallelism: number): number;
  /**
   * Where `emit` writes. Default: files in the job's bucket, committed exactly once
   * (docs/protocol.md, "Sink output"). Connectors provide others (src/connectors/kafka/sink.ts).
   * Called once per task, before a restore, which publishes what the restored checkpoint staged.
   */
  output?(context: JobContext): Sink | Promise<Sink>;
  /** Called for each record, in offset order per partition; must be synchronous and deterministic. */
  process(record: TRecord, context: RecordContext): void;
}

/** Identity function that lets TypeScript infer the record type of a job. */
export function defineJob<TRecord>(job: JobDefinition<TRecord>): JobDefinition<TRecord> {
  return job;
}

/** The key group that decides which task reads `partition`. */
export function keyGroupOfPartition(
  job: JobDefinition<unknown>,
  partition: Pick<SourcePartition<unknown>, "id" | "keyGroup">,
  maxParallelism: number,
): number {
  return (
    job.partitionKeyGroup?.(partition.id, maxParallelism) ??
    partition.keyGroup?.(maxParallelism) ??
    keyGroupForKey(partition.id, maxParallelism)
  );
}
