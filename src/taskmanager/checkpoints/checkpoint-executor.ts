// The TaskManager's side of a checkpoint (docs/protocol.md, "Life of a checkpoint"): on trigger the
// synchronous cut, then in the background the upload of the state part and the sink's staged output,
// ending in an ack or a decline that GET /v1/checkpoints/{id} hands out (long poll). Results are kept
// until the checkpoint completes, aborts, or a later one completes. Every repeated call is harmless.
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import {
  type AbortCheckpointRequest,
  type CheckpointPart,
  type CheckpointResult,
  type NotifyCompleteRequest,
  type TriggerCheckpointRequest,
} from "../../api/protocol.js";
import type { ObjectStore } from "../../storage/object-store.js";
import type { CheckpointCut } from "../runtime/task-runtime.js";
import { jobDirectoryOfPartsPrefix } from "../sink/output-layout.js";
import type { Sink, SinkLocation } from "../sink/sink.js";
import type { KeyedStateSnapshot } from "../state/keyed-state.js";
import { encodeStatePart, statePartName } from "../state/state-part.js";

export interface CheckpointExecutorOptions {
  epoch: number;
  taskIndex: number;
  /**
   * Takes the cut (TaskRuntime.cut); a dataflow's completes once its barriers are aligned, and
   * gives up when `signal` aborts (the checkpoint was aborted or its deadline passed).
   */
  cut(checkpointId: number, signal: AbortSignal): CheckpointCut | Promise<CheckpointCut>;
  /** The checkpoint was aborted: a dataflow releases channels held back for it. */
  onAborted?(checkpointId: number): void;
  /** After notify-complete of a checkpoint this task acked: the offsets it holds (TaskRuntime.checkpointed). */
  onCompleted?(sourceOffsets: Readonly<Record<string, number>>): void;
  sink: Sink;
  /**
   * Where the sink keeps its output (the start-up configuration's `output`); when absent, the bucket
   * and job directory of each trigger's storage.keyPrefix, as v1 configurations without it implied.
   */
  sinkLocation?: SinkLocation;
  storage(bucket: string): ObjectStore;
  log: Logger;
  /** How long after the trigger's deadline an unfinished upload gives up (clocks differ). */
  deadlineGraceMs?: number;
  now?: () => number;
}

interface CheckpointAttempt {
  result: CheckpointResult;
  /** Resolves when `result` is final. */
  settled: Promise<void>;
  abort: AbortController;
}

export class CheckpointExecutor {
  private readonly attempts = new Map<number, CheckpointAttempt>();
  private highestTriggered = 0;
  private completed: number | null = null;
  private sinkLocation: SinkLocation | undefined;
  private readonly deadlineGraceMs: number;
  private readonly now: () => number;

  constructor(private readonly options: CheckpointExecutorOptions) {
    this.deadlineGraceMs = options.deadlineGraceMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.sinkLocation = options.sinkLocation;
  }

  get lastCompletedCheckpointId(): number | null {
    return this.completed;
  }

  get highestTriggeredCheckpointId(): number | null {
    return this.highestTriggered === 0 ? null : this.highestTriggered;
  }

  /** After a restore from `checkpointId`: it counts as completed and later triggers must be newer. */
  restored(checkpointId: number, sinkLocation: SinkLocation): void {
    this.completed = checkpointId;
    this.highestTriggered = checkpointId;
    this.sinkLocation = sinkLocation;
  }

  /** The 409 message when `checkpointId` is older than a checkpoint already taken, else undefined. */
  triggerConflict(checkpointId: number): string | undefined {
    if (this.attempts.has(checkpointId) || checkpointId > this.highestTriggered) return undefined;
    if (checkpointId === this.highestTriggered) {
      return `checkpoint ${checkpointId} was already taken and is completed or aborted`;
    }
    return `checkpoint ${checkpointId} is older than checkpoint ${this.highestTriggered} already taken`;
  }

  /** Takes the cut (unless this checkpoint was already triggered) and starts the upload. */
  trigger(request: TriggerCheckpointRequest): void {
    const { checkpointId } = request;
    if (this.triggerConflict(checkpointId) !== undefined || this.attempts.has(checkpointId)) return;
    const abort = new AbortController();
    const cut = this.options.cut(checkpointId, abort.signal);
    this.highestTriggered = checkpointId;
    const attempt: CheckpointAttempt = {
      result: {
        state: "in_progress",
        checkpointId,
        epoch: this.options.epoch,
        taskIndex: this.options.taskIndex,
      },
      settled: Promise.resolve(),
      abort,
    };
    const deadlineTimer = setTimeout(
      () => {
        abort.abort(new Error(`the deadline ${new Date(request.deadline).toISOString()} has passed`));
        this.options.onAborted?.(checkpointId);
      },
      Math.max(0, request.deadline + this.deadlineGraceMs - this.now()),
    );
    deadlineTimer.unref();
    attempt.settled = Promise.resolve(cut)
      .then((taken) => {
        this.options.log.info(
          {
            checkpointId,
            syncDurationMs: taken.syncDurationMs,
            ...(taken.alignmentDurationMs !== undefined && {
              alignmentDurationMs: taken.alignmentDurationMs,
            }),
            keys: taken.stages.reduce((keys, stage) => keys + stage.snapshot.entryCount, 0),
          },
          "checkpoint cut taken",
        );
        return this.upload(request, taken, abort.signal);
      })
      .then(
        (ack): CheckpointResult => ({ state: "acknowledged", ack }),
        (err: unknown): CheckpointResult => ({
          state: "declined",
          decline: {
            checkpointId,
            epoch: this.options.epoch,
            taskIndex: this.options.taskIndex,
            reason: (err as Error).message.slice(0, 4096) || "upload failed",
          },
        }),
      )
      .then((result) => {
        clearTimeout(deadlineTimer);
        attempt.result = result;
        const log = this.options.log.child({ checkpointId });
        if (result.state === "acknowledged") {
          log.info(
            { parts: result.ack.parts.length, asyncDurationMs: result.ack.asyncDurationMs },
            "checkpoint acknowledged",
          );
        } else if (result.state === "declined") {
          log.warn({ reason: result.decline.reason }, "checkpoint declined");
        }
      });
    this.attempts.set(checkpointId, attempt);
  }

  /** This task's answer, waiting up to `waitMs` for a final one; undefined when never triggered. */
  async result(checkpointId: number, waitMs: number): Promise<CheckpointResult | undefined> {
    const attempt = this.attempts.get(checkpointId);
    if (attempt === undefined) return undefined;
    if (attempt.result.state === "in_progress" && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        attempt.settled,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return attempt.result;
  }

  /** Sinks commit everything up to this cut; this and older results are forgotten. */
  async complete(request: NotifyCompleteRequest): Promise<void> {
    const { checkpointId } = request;
    if (this.sinkLocation !== undefined)
      await this.options.sink.commitThrough(checkpointId, this.sinkLocation);
    const acked = this.attempts.get(checkpointId)?.result;
    if (acked?.state === "acknowledged") this.options.onCompleted?.(acked.ack.sourceOffsets);
    for (const [id, attempt] of this.attempts) {
      if (id > checkpointId) continue;
      attempt.abort.abort(new Error(`checkpoint ${checkpointId} completed`));
      this.attempts.delete(id);
    }
    if (this.completed === null || checkpointId > this.completed) {
      this.completed = checkpointId;
      this.options.log.info({ checkpointId }, "checkpoint completed: sink output committed");
    }
  }

  /** Stops the upload and forgets the result; the sink's staged output stays for the next checkpoint. */
  abort(request: AbortCheckpointRequest): void {
    const attempt = this.attempts.get(request.checkpointId);
    if (attempt === undefined) return;
    attempt.abort.abort(new Error(`checkpoint ${request.checkpointId} aborted: ${request.reason}`));
    this.attempts.delete(request.checkpointId);
    this.options.onAborted?.(request.checkpointId);
    this.options.log.info(
      { checkpointId: request.checkpointId, reason: request.reason },
      "checkpoint aborted",
    );
  }

  /** Stops every upload (shutdown). */
  close(): void {
    for (const attempt of this.attempts.values())
      attempt.abort.abort(new Error("the TaskManager is stopping"));
  }

  private async upload(request: TriggerCheckpointRequest, cut: CheckpointCut, signal: AbortSignal) {
    // Until released, the snapshot makes every first write of a key save its old value.
    try {
      return await this.uploadParts(request, cut, signal);
    } finally {
      for (const stage of cut.stages) stage.snapshot.release();
    }
  }

  private async uploadParts(request: TriggerCheckpointRequest, cut: CheckpointCut, signal: AbortSignal) {
    const started = performance.now();
    const { keyPrefix, bucket } = request.storage;
    const location = this.options.sinkLocation ?? this.sinkLocationOfTrigger(request);
    this.sinkLocation = location;
    // Whichever of the two fails first stops the other, and both have ended before the caller
    // releases the snapshot: a state upload never reads a released snapshot.
    const stop = new AbortController();
    const either = AbortSignal.any([signal, stop.signal]);
    const stopOthers = (err: unknown): never => {
      stop.abort(err);
      throw err;
    };
    const store = this.options.storage(bucket);
    const [state, staged] = await Promise.allSettled([
      Promise.all(
        cut.stages.map((stage) =>
          stage.snapshot.entryCount === 0 && !stage.writeEmpty
            ? undefined
            : this.uploadState(store, keyPrefix, stage.snapshot, stage.stageId, either),
        ),
      ).catch(stopOthers),
      abortable(this.options.sink.stageThrough(cut.checkpointId, location), either).catch(stopOthers),
    ]);
    // The first failure: every rejection went through stopOthers.
    if (state.status === "rejected" || staged.status === "rejected") throw stop.signal.reason;
    const parts = state.value.flatMap((part) => part ?? []);
    return {
      checkpointId: cut.checkpointId,
      epoch: this.options.epoch,
      taskIndex: this.options.taskIndex,
      parts,
      sourceOffsets: cut.sourceOffsets,
      ...(Object.keys(cut.sourceLag).length > 0 && { sourceLag: cut.sourceLag }),
      syncDurationMs: cut.syncDurationMs,
      ...(cut.alignmentDurationMs !== undefined && { alignmentDurationMs: cut.alignmentDurationMs }),
      ...(cut.backpressure !== undefined && { backpressure: cut.backpressure }),
      asyncDurationMs: Math.round(performance.now() - started),
    };
  }

  private sinkLocationOfTrigger(request: TriggerCheckpointRequest): SinkLocation {
    const { keyPrefix, bucket } = request.storage;
    const jobDirectory = jobDirectoryOfPartsPrefix(keyPrefix);
    if (jobDirectory === undefined) {
      throw new Error(
        `storage.keyPrefix ${keyPrefix} does not end in chk-<id>/task-<index>/ or savepoint-<id>/task-<index>/`,
      );
    }
    return { store: this.options.storage(bucket), jobDirectory };
  }

  private async uploadState(
    store: ObjectStore,
    keyPrefix: string,
    snapshot: KeyedStateSnapshot,
    stageId: string,
    signal: AbortSignal,
  ): Promise<CheckpointPart> {
    // The keyed stage is written even when empty: every manifest covers each task's key groups.
    const key = `${keyPrefix}${statePartName(snapshot.keyGroupRange, stageId)}`;
    const body = encodeStatePart(snapshot, stageId);
    const stop = () => body.destroy(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
    // The abort is reported through `abortable`; a store that has not started reading the body yet
    // must not turn its stream error into an unhandled one.
    body.on("error", () => undefined);
    signal.addEventListener("abort", stop, { once: true });
    try {
      const stored = await abortable(store.put(key, body), signal);
      return {
        key,
        sizeBytes: stored.sizeBytes,
        sha256: stored.sha256,
        keyGroupRange: snapshot.keyGroupRange,
        stageId,
        index: body.indexLocation,
      };
    } catch (err) {
      throw new Error(`upload of ${key} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      signal.removeEventListener("abort", stop);
    }
  }
}

/** Rejects with the signal's reason as soon as it aborts, whatever `work` does. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
