// A job as a dataflow (docs/writing-a-job.md, "Jobs with several stages"): a source stage that
// reads the job's partitions, then keyed stages, each fed through a keyBy exchange that routes every
// record by the key group of its key to the TaskManager owning that key group. Every TaskManager runs
// one instance of every stage. Stage ids are stable: they name the stage's state parts in checkpoints,
// so a restore matches state to stages by id.
import { DEFAULT_STAGE_ID, PARTITION_STATE_STAGE_ID, StageId } from "../api/protocol.js";
import type {
  JobContext,
  JobDefinition,
  JsonValue,
  KeyedState,
  SourcePartition,
} from "../taskmanager/job/job-definition.js";
import type { Sink } from "../taskmanager/sink/sink.js";

/** What the source stage gets with every record it reads. */
export interface SourceStageContext {
  readonly partitionId: string;
  readonly offset: number;
  /** The state of the record's source partition (partition-scoped state, as in single-stage jobs). */
  readonly partitionState: KeyedState;
  /** Sends a record into the exchange of the first keyed stage, to the owner of `key`'s key group. */
  send(key: string, value: JsonValue): void;
}

/** What a keyed stage gets with every record. */
export interface KeyedStageContext {
  /** The key the record was sent with: always in this task's key groups. */
  readonly key: string;
  /** This stage's keyed state (its own stage in checkpoints, named by the stage id). */
  readonly state: KeyedState;
  /** Into the next stage's exchange; only stages before the last one have a next stage. */
  send(key: string, value: JsonValue): void;
  /** Appends to the job's output; only the last stage writes output (see `emit` in RecordContext). */
  emit(value: string, key?: string): void;
}

export interface KeyedStageDefinition {
  /** Stable id: lowercase letters, digits and `-`; the stage's state parts are named by it. */
  readonly id: string;
  /** Called for each record, synchronously and deterministically, in arrival order per input channel. */
  process(value: JsonValue, context: KeyedStageContext): void;
}

export interface DataflowDefinition<TRecord> {
  /** Every partition of the job, as in a single-stage job (JobDefinition.partitions). */
  partitions(
    context: JobContext,
  ): readonly SourcePartition<TRecord>[] | Promise<readonly SourcePartition<TRecord>[]>;
  partitionKeyGroup?(partitionId: string, maxParallelism: number): number;
  output?(context: JobContext): Sink | Promise<Sink>;
  /** Runs on the partitions this task reads, in offset order per partition. */
  source: { process(record: TRecord, context: SourceStageContext): void };
  /** The keyed stages in order; each is fed by a keyBy exchange from the one before. */
  stages: readonly KeyedStageDefinition[];
}

/** Checks the stages and lets TypeScript infer the record type of the source. */
export function defineDataflow<TRecord>(dataflow: DataflowDefinition<TRecord>): DataflowDefinition<TRecord> {
  checkStages(dataflow.stages);
  return dataflow;
}

/** Single-stage jobs (JobDefinition) and dataflows are told apart by their shape. */
export function isDataflow(
  job: JobDefinition<unknown> | DataflowDefinition<unknown>,
): job is DataflowDefinition<unknown> {
  return Array.isArray((job as Partial<DataflowDefinition<unknown>>).stages);
}

/** Refuses stage lists a checkpoint could not name unambiguously. */
export function checkStages(stages: readonly KeyedStageDefinition[]): void {
  if (stages.length === 0) throw new Error("a dataflow needs at least one keyed stage");
  if (stages.length > MAX_STAGES) throw new Error(`a dataflow has at most ${MAX_STAGES} keyed stages`);
  const seen = new Set<string>();
  for (const [i, stage] of stages.entries()) {
    const where = `stages[${i}].id`;
    if (!StageId.safeParse(stage.id).success) {
      throw new Error(
        `${where}: ${JSON.stringify(stage.id)} is not a stage id (lowercase letters, digits, -)`,
      );
    }
    if ([DEFAULT_STAGE_ID, PARTITION_STATE_STAGE_ID, SOURCE_STAGE].includes(stage.id)) {
      throw new Error(`${where}: ${JSON.stringify(stage.id)} is reserved`);
    }
    if (seen.has(stage.id)) throw new Error(`${where}: ${JSON.stringify(stage.id)} is used twice`);
    seen.add(stage.id);
    if (typeof stage.process !== "function") throw new Error(`stages[${i}].process: not a function`);
  }
}

/** The source stage's name in status, acks and metrics: no keyed stage may take it. */
export const SOURCE_STAGE = "source";

/** Channel numbers on the wire are 16 bits wide: one per exchange. */
export const MAX_STAGES = 64;
