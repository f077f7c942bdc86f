// One TaskManager's instances of every stage of a dataflow, and the consistent cut of a checkpoint
// across them (docs/protocol.md, "Barriers"). The source stage runs in TaskRuntime's loop; its sends
// go into the first exchange. Each keyed stage drains its input channels round-robin, blocked
// channels excepted, in batches between which the event loop runs; its sends go into the next
// exchange, and the last stage's emits into the job's sink.
//
// A trigger records the source offsets, snapshots the partition-scoped state and sends barrier n into
// every channel of the first exchange. A keyed stage snapshots its state once barrier n came in on
// every input channel (aligned), then sends it on; when the last stage has aligned, the sink is
// sealed and the cut is complete. Records a stage processes after its snapshot belong to the next
// checkpoint, on every task alike: a consistent cut with nothing in flight.
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { keyGroupForKey, taskIndexForKeyGroup } from "../api/key-groups.js";
import type { JobContext, JobDefinition, JsonValue } from "../taskmanager/job/job-definition.js";
import { TaskRuntime, type CheckpointCut, type StageSnapshot } from "../taskmanager/runtime/task-runtime.js";
import type { Sink } from "../taskmanager/sink/sink.js";
import { KeyGroupedStateBackend } from "../taskmanager/state/keyed-state.js";
import type { PartitionScopedState } from "../taskmanager/state/partition-state.js";
import { BarrierAligner } from "./barrier-aligner.js";
import { InputChannel, OUTPUT_BACKLOG, OutputChannel } from "./channels.js";
import {
  SOURCE_STAGE,
  type DataflowDefinition,
  type KeyedStageContext,
  type KeyedStageDefinition,
} from "./definition.js";
import { Exchange, type Peer } from "./exchange.js";
import type { Frame } from "./frames.js";

// How long a keyed stage processes before it lets the event loop run (HTTP calls, other stages, the
// source), checked after each buffer.
const DRAIN_BUDGET_MS = 10;

export interface DataflowRuntimeOptions {
  dataflow: DataflowDefinition<unknown>;
  context: JobContext;
  epoch: number;
  token: string;
  partitionState: PartitionScopedState;
  /** Each keyed stage's state, by stage id. */
  stageStates: ReadonlyMap<string, KeyGroupedStateBackend>;
  sink: Sink;
  log: Logger;
  batchSize?: number;
  onNewerEpoch(epoch: number): void;
}

/** Per stage: what `/v1/status` and acks report. */
export interface StageStatus {
  stageId: string;
  recordsProcessed: number;
  /** Share of the time since the previous cut this stage waited for credit (backpressure). */
  backpressure: number;
  /** Buffers waiting in its input channels. */
  queuedBuffers: number;
  /** The alignment time of the latest checkpoint it aligned, if any. */
  lastAlignmentMs?: number;
}

interface PendingCut {
  checkpointId: number;
  stages: StageSnapshot[];
  sourceOffsets: Record<string, number>;
  sourceLag: Record<string, number>;
  syncDurationMs: number;
  alignmentDurationMs: number;
  resolve(cut: CheckpointCut): void;
  reject(error: Error): void;
}

/** Time a stage spent waiting for credit, measured between two cuts. */
class BackpressureClock {
  private since = performance.now();
  private waitingSince: number | undefined;
  private waited = 0;

  start(): void {
    this.waitingSince ??= performance.now();
  }

  stop(): void {
    if (this.waitingSince === undefined) return;
    this.waited += performance.now() - this.waitingSince;
    this.waitingSince = undefined;
  }

  /** The share of time waited since the last reset (or start), then resets. */
  ratio(reset: boolean): number {
    const now = performance.now();
    const waited = this.waited + (this.waitingSince === undefined ? 0 : now - this.waitingSince);
    const ratio = Math.min(1, waited / Math.max(1, now - this.since));
    if (reset) {
      this.since = now;
      this.waited = 0;
      if (this.waitingSince !== undefined) this.waitingSince = now;
    }
    return Math.round(ratio * 1000) / 1000;
  }
}

class KeyedStageInstance {
  readonly aligner: BarrierAligner;
  readonly backpressure = new BackpressureClock();
  recordsProcessed = 0;
  lastAlignmentMs: number | undefined;
  private scheduled = false;
  private next = 0;

  constructor(
    readonly definition: KeyedStageDefinition,
    readonly state: KeyGroupedStateBackend,
    readonly inputs: InputChannel[],
    /** The next exchange's channels by target task; undefined for the last stage. */
    readonly outputs: OutputChannel[] | undefined,
    private readonly runtime: DataflowRuntime,
  ) {
    this.aligner = new BarrierAligner(inputs.length);
  }

  get queuedBuffers(): number {
    return this.inputs.reduce((total, input) => total + input.queued, 0);
  }

  schedule(): void {
    if (this.scheduled || !this.runtime.processing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.drain();
      } catch (err) {
        this.runtime.fail(err as Error);
      }
    });
  }

  private drain(): void {
    if (!this.runtime.processing) return;
    const until = performance.now() + DRAIN_BUDGET_MS;
    let progress = true;
    while (progress && performance.now() < until) {
      if (this.outputs?.some((output) => output.backlog >= OUTPUT_BACKLOG)) {
        this.backpressure.start();
        return; // an output's credit wakes the stage
      }
      this.backpressure.stop();
      progress = false;
      for (let i = 0; i < this.inputs.length && performance.now() < until; i++) {
        const input = this.inputs[(this.next + i) % this.inputs.length]!;
        if (this.aligner.isBlocked(input.source)) continue;
        const head = input.peek();
        if (head === undefined) continue;
        progress = true;
        if ("barrier" in head) {
          input.take();
          this.barrier(input.source, head.barrier);
        } else {
          this.process(head.data);
          input.take();
        }
      }
      this.next = (this.next + 1) % this.inputs.length;
    }
    for (const output of this.outputs ?? []) output.flush();
    if (this.inputs.some((input) => input.peek() !== undefined && !this.aligner.isBlocked(input.source))) {
      this.schedule();
    }
  }

  private process(payload: Buffer): void {
    const decoded = this.decode(payload);
    if (decoded === undefined) return;
    const { records, keyGroups } = decoded;
    const context = this.runtime.stageContext(this);
    for (let i = 0; i < records.length; i++) {
      const [key, value] = records[i]!;
      // Hashed once, in decode: the state's get and put of this key need not hash it again.
      this.state.rememberKeyGroup(key, keyGroups[i]!);
      context.key = key;
      this.definition.process(value, context);
      this.recordsProcessed++;
    }
  }

  /**
   * A buffer's records and their keys' groups, all checked before any is processed: a malformed
   * buffer or a key this task does not own is the sender breaking the protocol, which ends the
   * exchange and changes nothing.
   */
  private decode(payload: Buffer): { records: Array<[string, JsonValue]>; keyGroups: number[] } | undefined {
    let records: unknown;
    try {
      records = JSON.parse(payload.toString("utf8"));
    } catch {
      records = undefined;
    }
    const { maxParallelism, keyGroupRange } = this.state;
    const keyGroups: number[] = [];
    const valid =
      Array.isArray(records) &&
      records.every((record) => {
        if (!Array.isArray(record) || record.length !== 2 || typeof record[0] !== "string") return false;
        const keyGroup = keyGroupForKey(record[0], maxParallelism);
        keyGroups.push(keyGroup);
        return keyGroup >= keyGroupRange.start && keyGroup <= keyGroupRange.end;
      });
    if (valid) return { records: records as Array<[string, JsonValue]>, keyGroups };
    this.runtime.protocolError(
      `stage ${this.definition.id} got a data frame that is not a JSON array of [key, value] records of this task's key groups`,
    );
    return undefined;
  }

  private barrier(channel: number, checkpointId: number): void {
    const outcome = this.aligner.barrier(channel, checkpointId);
    if (outcome.cancelled !== undefined) {
      this.runtime.cancelCut(
        outcome.cancelled,
        `stage ${this.definition.id} got barrier ${checkpointId} first`,
      );
    }
    if (outcome.kind !== "aligned") return;
    this.lastAlignmentMs = outcome.alignmentMs;
    this.runtime.stageAligned(this, checkpointId, outcome.alignmentMs);
  }
}

export class DataflowRuntime {
  readonly source: TaskRuntime;
  readonly exchange: Exchange;
  private readonly stages: KeyedStageInstance[];
  /** The first exchange's channels, by target task. */
  private readonly sourceOutputs: OutputChannel[];
  private readonly sourceBackpressure = new BackpressureClock();
  private readonly pending = new Map<number, PendingCut>();
  private readonly contexts = new Map<KeyedStageInstance, KeyedStageContext & { key: string }>();
  private writableWaiters: Array<() => void> = [];
  private peers: readonly Peer[] | undefined;
  private halted: string | undefined;
  private opened = false;
  private failure: ((error: Error) => void) | undefined;
  processing = false;

  constructor(private readonly options: DataflowRuntimeOptions) {
    const { dataflow, context } = options;
    const parallelism = context.parallelism;
    this.exchange = new Exchange({
      epoch: options.epoch,
      taskIndex: context.taskIndex,
      parallelism,
      token: options.token,
      log: options.log,
      onFrame: (from, frame) => this.receive(from, frame),
      onCredit: (to, channel, count) => {
        const output = this.outputsOf(channel)?.[to];
        if (output === undefined)
          this.halt(
            `exchange: task ${to} sent a credit for channel ${channel}, which this job does not have`,
          );
        else output.grant(count);
      },
      onFailure: (error) => this.halt(error.message),
      onNewerEpoch: options.onNewerEpoch,
    });
    const outputs = (channel: number) =>
      Array.from({ length: parallelism }, (_, target) => {
        const output = new OutputChannel(channel, target, this.exchange.dataLink(target));
        output.onWritable = () => this.writable(channel);
        return output;
      });
    this.sourceOutputs = outputs(0);
    this.stages = dataflow.stages.map((definition, index) => {
      const state = options.stageStates.get(definition.id);
      if (state === undefined) throw new Error(`no state for stage ${definition.id}`);
      const inputs = Array.from(
        { length: parallelism },
        (_, from) => new InputChannel(index, from, this.exchange.creditLink(from)),
      );
      const last = index === dataflow.stages.length - 1;
      return new KeyedStageInstance(definition, state, inputs, last ? undefined : outputs(index + 1), this);
    });
    this.source = new TaskRuntime({
      job: this.sourceJob(),
      context,
      // The source stage keeps partition-scoped state only: this backend stays empty.
      state: new KeyGroupedStateBackend(context.maxParallelism, context.keyGroupRange),
      partitionState: options.partitionState,
      sink: options.sink,
      ...(options.batchSize !== undefined && { batchSize: options.batchSize }),
      flow: {
        writable: () => this.sourceWritable(),
        batchDone: () => {
          for (const output of this.sourceOutputs) output.flush();
        },
      },
    });
  }

  /** Undefined while processing can go on; else why it stopped. */
  get haltedReason(): string | undefined {
    return this.halted;
  }

  get peersKnown(): boolean {
    return this.peers !== undefined;
  }

  /**
   * The epoch's TaskManagers, from the operator: the same list again is accepted, another one
   * refused (a conflict), since connections are made once per epoch.
   */
  setPeers(peers: readonly Peer[]): string | undefined {
    const sorted = [...peers].sort((a, b) => a.taskIndex - b.taskIndex);
    if (this.peers !== undefined) {
      return JSON.stringify(this.peers) === JSON.stringify(sorted)
        ? undefined
        : `the peers of epoch ${this.options.epoch} are already set to another list`;
    }
    const { parallelism } = this.options.context;
    if (sorted.length !== parallelism || sorted.some((peer, i) => peer.taskIndex !== i)) {
      return `peers: expected one entry per task 0-${parallelism - 1}`;
    }
    this.peers = sorted;
    this.gotPeers(sorted);
    return undefined;
  }

  private gotPeers: (peers: readonly Peer[]) => void = () => undefined;

  /**
   * Waits for the peers, connects to every one and lets the input channels take records. The
   * source does not start before: nothing it sends could leave.
   */
  async connect(): Promise<void> {
    const peers = this.peers ?? (await new Promise<readonly Peer[]>((resolve) => (this.gotPeers = resolve)));
    await Promise.all([this.exchange.connect(peers), this.exchange.connected]);
    for (const stage of this.stages) for (const input of stage.inputs) input.open();
    this.opened = true;
  }

  /** Starts the source loop and the stages; rejects when the job fails (not when the exchange halts). */
  start(): Promise<void> {
    if (!this.opened) throw new Error("the dataflow is not connected");
    this.processing = true;
    const failed = new Promise<never>((_, reject) => (this.failure = reject));
    for (const stage of this.stages) stage.schedule();
    return Promise.race([this.source.start(), failed]);
  }

  async stop(): Promise<void> {
    this.processing = false;
    this.exchange.stop();
    for (const pending of this.pending.values()) pending.reject(new Error("the TaskManager is stopping"));
    this.releaseWaiters();
    await this.source.stop();
  }

  /** A stage's job code threw: the job fails. */
  fail(error: Error): void {
    this.processing = false;
    this.failure?.(error);
  }

  stageStatus(resetBackpressure = false): StageStatus[] {
    return [
      {
        stageId: SOURCE_STAGE,
        recordsProcessed: this.source.recordsProcessed,
        backpressure: this.sourceBackpressure.ratio(resetBackpressure),
        queuedBuffers: 0,
      },
      ...this.stages.map((stage) => ({
        stageId: stage.definition.id,
        recordsProcessed: stage.recordsProcessed,
        backpressure: stage.backpressure.ratio(resetBackpressure),
        queuedBuffers: stage.queuedBuffers,
        ...(stage.lastAlignmentMs !== undefined && { lastAlignmentMs: stage.lastAlignmentMs }),
      })),
    ];
  }

  /**
   * The source's part of checkpoint n, synchronously between two batches; the returned cut completes
   * when every keyed stage of this task has aligned on barrier n.
   */
  cut(checkpointId: number, signal: AbortSignal): Promise<CheckpointCut> {
    if (this.halted !== undefined) return Promise.reject(new Error(`processing stopped: ${this.halted}`));
    const started = performance.now();
    const cut = new Promise<CheckpointCut>((resolve, reject) => {
      const pending: PendingCut = {
        checkpointId,
        stages: [this.source.partitionStateSnapshot()],
        sourceOffsets: this.source.sourceOffsets,
        sourceLag: this.source.sourceLag,
        syncDurationMs: 0,
        alignmentDurationMs: 0,
        resolve,
        reject: (error) => {
          this.pending.delete(checkpointId);
          for (const stage of pending.stages) stage.snapshot.release();
          reject(error);
        },
      };
      this.pending.set(checkpointId, pending);
      for (const output of this.sourceOutputs) output.barrier(checkpointId);
      pending.syncDurationMs = Math.round(performance.now() - started);
    });
    const onAbort = () => this.cancelCut(checkpointId, (signal.reason as Error).message);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    return cut;
  }

  /**
   * The checkpoint was aborted (or its deadline passed here): channels held back for it, or for an
   * older one, are released, and those checkpoints' cuts give up.
   */
  aborted(checkpointId: number): void {
    for (const stage of this.stages) {
      stage.aligner.abort(checkpointId);
      stage.schedule();
    }
    for (const id of [...this.pending.keys()]) {
      if (id <= checkpointId) this.cancelCut(id, `checkpoint ${checkpointId} aborted`);
    }
  }

  /** A peer broke the protocol: the exchange ends. */
  protocolError(reason: string): void {
    this.halt(`exchange: ${reason}`);
  }

  /** After a checkpoint completed: each partition's source learns the offset it holds. */
  checkpointed(sourceOffsets: Readonly<Record<string, number>>): void {
    this.source.checkpointed(sourceOffsets);
  }

  cancelCut(checkpointId: number, reason: string): void {
    this.pending.get(checkpointId)?.reject(new Error(reason));
  }

  stageAligned(stage: KeyedStageInstance, checkpointId: number, alignmentMs: number): void {
    const pending = this.pending.get(checkpointId);
    if (pending !== undefined) {
      pending.stages.push({
        stageId: stage.definition.id,
        snapshot: stage.state.snapshot(),
        writeEmpty: true,
      });
      pending.alignmentDurationMs = Math.max(pending.alignmentDurationMs, alignmentMs);
    }
    if (stage.outputs !== undefined) {
      for (const output of stage.outputs) output.barrier(checkpointId);
    } else if (pending !== undefined) {
      // The last stage: everything it emitted so far belongs to this checkpoint.
      this.options.sink.seal(checkpointId);
      this.pending.delete(checkpointId);
      pending.resolve({
        checkpointId,
        stages: pending.stages,
        sourceOffsets: pending.sourceOffsets,
        sourceLag: pending.sourceLag,
        syncDurationMs: pending.syncDurationMs,
        alignmentDurationMs: pending.alignmentDurationMs,
        backpressure: Object.fromEntries(
          this.stageStatus(true).map((status) => [status.stageId, status.backpressure]),
        ),
      });
    }
    stage.schedule();
  }

  stageContext(stage: KeyedStageInstance): KeyedStageContext & { key: string } {
    let context = this.contexts.get(stage);
    if (context === undefined) {
      const outputs = stage.outputs;
      const { sink } = this.options;
      const id = stage.definition.id;
      context = {
        key: "",
        state: stage.state,
        send:
          outputs === undefined
            ? () => {
                throw new Error(
                  `stage ${id} is the last stage: it emits output and has no next stage to send to`,
                );
              }
            : (key, value) => this.route(outputs, key, value),
        emit:
          outputs === undefined
            ? (value, key) => sink.emit(value, key)
            : () => {
                throw new Error(`stage ${id} is not the last stage: only the last stage emits output`);
              },
      };
      this.contexts.set(stage, context);
    }
    return context;
  }

  private sourceJob(): JobDefinition<unknown> {
    const { dataflow } = this.options;
    const send = (key: string, value: JsonValue) => this.route(this.sourceOutputs, key, value);
    return {
      partitions: (context) => dataflow.partitions(context),
      ...(dataflow.partitionKeyGroup && { partitionKeyGroup: dataflow.partitionKeyGroup.bind(dataflow) }),
      process: (record, context) =>
        dataflow.source.process(record, {
          partitionId: context.partitionId,
          offset: context.offset,
          partitionState: context.partitionState,
          send,
        }),
    };
  }

  private route(outputs: OutputChannel[], key: string, value: JsonValue): void {
    const { maxParallelism, parallelism } = this.options.context;
    const target = taskIndexForKeyGroup(maxParallelism, parallelism, keyGroupForKey(key, maxParallelism));
    outputs[target]!.add(key, value);
  }

  private sourceWritable(): Promise<void> | undefined {
    if (!this.sourceOutputs.some((output) => output.backlog >= OUTPUT_BACKLOG)) {
      this.sourceBackpressure.stop();
      return undefined;
    }
    this.sourceBackpressure.start();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  /** A channel of exchange `channel` can take more: wake whoever sends into it. */
  private writable(channel: number): void {
    if (channel === 0) this.releaseWaiters();
    else this.stages[channel - 1]?.schedule();
  }

  private releaseWaiters(): void {
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const wake of waiters) wake();
  }

  private outputsOf(channel: number): OutputChannel[] | undefined {
    return channel === 0 ? this.sourceOutputs : this.stages[channel - 1]?.outputs;
  }

  private receive(from: number, frame: Frame): void {
    if (frame.type !== "data" && frame.type !== "barrier") return;
    const stage = this.stages[frame.channel];
    const input = stage?.inputs[from];
    if (stage === undefined || input === undefined) {
      this.halt(`exchange: task ${from} sent to channel ${frame.channel}, which this job does not have`);
      return;
    }
    if (frame.type === "barrier") input.receiveBarrier(frame.checkpointId);
    else if (!input.receiveData(frame.payload)) {
      this.halt(`exchange: task ${from} sent on channel ${frame.channel} without credit`);
      return;
    }
    stage.schedule();
  }

  private halt(reason: string): void {
    if (this.halted !== undefined) return;
    this.halted = reason;
    this.options.log.warn({ reason }, "exchange halted: processing stopped until the job is redeployed");
    void this.stop();
  }
}
