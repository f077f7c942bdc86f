// The checkpoint coordinator of one job epoch (after Flink's CheckpointCoordinator): it decides
// when to checkpoint, triggers every task, collects their acks by long poll, commits, and cleans
// up. The order that makes a checkpoint durable is fixed:
//
//   every part acked -> manifest PUT (the commit point) -> onCompleted (status) -> notify-complete
//
// A new epoch (the job redeployed) gets a new coordinator; the id counter is shared across them.
// Stopping it is prompt: every call to a TaskManager carries the coordinator's AbortSignal.
import type { Logger } from "pino";
import { MANIFEST_NAME, type CheckpointKind } from "../api/object-layout.js";
import type { CheckpointManifest, CheckpointResult, JobRef } from "../api/protocol.js";
import type { CheckpointIdCounter } from "./checkpoint-id-counter.js";
import { isCheckpointFailure, type CheckpointAbortCause } from "./abort-cause.js";
import { CheckpointFailureManager } from "./failure-manager.js";
import {
  TaskManagerCallError,
  type Clock,
  type SnapshotStore,
  type TaskManagerClient,
  type Timers,
} from "./interfaces.js";
import { PendingCheckpoint } from "./pending-checkpoint.js";
import { planRetention } from "./retention.js";
import { decideTrigger, type SchedulerPolicy } from "./scheduler.js";

export interface CompletedCheckpoint {
  checkpointId: number;
  kind: CheckpointKind;
  epoch: number;
  manifestKey: string;
  triggeredAt: number;
  completedAt: number;
  durationMs: number;
  sizeBytes: number;
  /** Per source partition, how far the cut was behind the source's end, when the tasks knew it. */
  sourceLag?: Record<string, number>;
  /** Dataflows: the longest a task held input channels back waiting for the barrier on the others. */
  alignmentDurationMs?: number;
  /** Dataflows: per stage, the highest share of time a task's stage waited for credit to send downstream. */
  backpressure?: Record<string, number>;
  /** Dataflows: the same per task index, as each task reported it. */
  backpressureByTask?: Record<number, Record<string, number>>;
}

export type CheckpointOutcome =
  | { state: "completed"; checkpoint: CompletedCheckpoint }
  | {
      state: "aborted";
      checkpointId: number;
      kind: CheckpointKind;
      cause: CheckpointAbortCause;
      reason: string;
    };

export interface CoordinatorEvents {
  /**
   * The manifest is committed. Record it (the operator patches status.latestCheckpoint here);
   * notify-complete is sent only after this resolves, so two-phase-commit sinks never commit
   * output of a checkpoint that a restore would not start from.
   */
  onCompleted(checkpoint: CompletedCheckpoint): Promise<void>;
  /** Also for aborts that are no failure (see isCheckpointFailure): the cause tells. */
  onAborted(outcome: Extract<CheckpointOutcome, { state: "aborted" }>): void;
  /** More consecutive checkpoints failed than tolerated: the job should restart from its latest checkpoint. */
  onRestartRequested(reason: string): void;
}

export interface CheckpointCoordinatorOptions {
  job: JobRef;
  epoch: number;
  parallelism: number;
  maxParallelism: number;
  storage: { bucket: string; basePrefix: string };
  policy: SchedulerPolicy;
  retained: number;
  tolerableFailures: number;
  /** One client per task index, 0..parallelism-1. */
  tasks: readonly TaskManagerClient[];
  store: SnapshotStore;
  ids: CheckpointIdCounter;
  clock: Clock;
  timers: Timers;
  log: Logger;
  events?: Partial<CoordinatorEvents>;
  /**
   * Manifest-less checkpoint directories found when the id counter resumed (left by a coordinator
   * that stopped without cleaning up, e.g. an operator killed mid-checkpoint): nothing will complete
   * them, so retention may delete them as aborted.
   */
  leftoverIds?: Iterable<number>;
  /** The checkpoint status names at start: never deleted by retention. */
  latestCompletedId?: number | null;
  /** Longest single long poll; shorter near the deadline. */
  pollWaitMs?: number;
}

export class CheckpointCoordinator {
  private readonly pending = new Map<number, PendingCheckpoint>();
  private readonly failures: CheckpointFailureManager;
  private readonly abortedIds = new Set<number>();
  private readonly manifests = new Map<string, CheckpointManifest>();
  private readonly running = new Set<Promise<unknown>>();
  private lastTriggeredAt: number | null = null;
  private lastEndedAt: number | null = null;
  private latestCompletedId: number | null;
  private cancelTick?: () => void;
  private started = false;
  /**
   * Aborted by stop(): cancels every call to a TaskManager still in flight. Each checkpoint keeps
   * the one it started with; stop() puts a fresh one in place for snapshots taken after it.
   */
  private stopping = new AbortController();
  private cleaning: Promise<void> | null = null;
  private cleanAgain = false;

  constructor(private readonly options: CheckpointCoordinatorOptions) {
    if (options.tasks.length !== options.parallelism) {
      throw new Error(`expected ${options.parallelism} task clients, got ${options.tasks.length}`);
    }
    this.failures = new CheckpointFailureManager(options.tolerableFailures);
    this.latestCompletedId = options.latestCompletedId ?? null;
    for (const id of options.leftoverIds ?? []) this.abortedIds.add(id);
  }

  /** Starts periodic checkpoints. */
  start(): void {
    this.started = true;
    this.schedule(0);
  }

  /**
   * Stops scheduling, aborts what is still collecting acks, cancels every call to a TaskManager and
   * waits until nothing is in flight. Only after this may a restore target be chosen: until then a
   * checkpoint newer than the one found in storage can still complete and its output be committed.
   * Tasks are not told about the aborts (a dead TaskManager would hold the stop up): each drops the
   * attempt at its deadline or when a later checkpoint completes, and notify-complete not sent is
   * made up by the next one or by a restore (sinks commit everything up to the checkpoint).
   */
  async stop(reason = "the coordinator stopped"): Promise<void> {
    this.started = false;
    this.cancelTick?.();
    // A checkpoint already committing may have its manifest written: it finishes, not aborts.
    for (const pending of this.pending.values()) {
      if (pending.state === "pending") pending.abort("coordinator-stopped", reason);
    }
    const stopping = this.stopping;
    this.stopping = new AbortController();
    stopping.abort(new Error(reason));
    await Promise.allSettled([...this.running]);
    await this.cleaning;
  }

  /** Takes a savepoint now, outside the periodic schedule. */
  triggerSavepoint(): Promise<CheckpointOutcome> {
    return this.track(this.run("savepoint", this.options.clock.now() + this.options.policy.timeoutMs));
  }

  /** Takes a checkpoint now, outside the periodic schedule (the scheduler still counts it). */
  triggerCheckpoint(): Promise<CheckpointOutcome> {
    return this.track(this.run("checkpoint", this.options.clock.now() + this.options.policy.timeoutMs));
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
    return work;
  }

  private schedule(delayMs: number): void {
    this.cancelTick?.();
    if (!this.started) return;
    this.cancelTick = this.options.timers.setTimeout(() => this.tick(), delayMs);
  }

  private tick(): void {
    if (!this.started) return;
    const now = this.options.clock.now();
    const decision = decideTrigger(
      this.options.policy,
      {
        lastTriggeredAt: this.lastTriggeredAt,
        lastEndedAt: this.lastEndedAt,
        pending: [...this.pending.values()].map((p) => ({
          checkpointId: p.checkpointId,
          deadline: p.deadline,
        })),
      },
      now,
    );
    if (!decision.trigger) return this.schedule(decision.requeueAfterMs);
    void this.track(this.run("checkpoint", decision.deadline));
    this.schedule(0); // maybe another one fits (maxConcurrent > 1)
  }

  private async run(kind: CheckpointKind, deadline: number): Promise<CheckpointOutcome> {
    const { clock, epoch, job } = this.options;
    const pending = new PendingCheckpoint(
      {
        checkpointId: this.options.ids.next(),
        kind,
        job,
        epoch,
        parallelism: this.options.parallelism,
        maxParallelism: this.options.maxParallelism,
        storage: this.options.storage,
        deadline,
      },
      clock,
    );
    this.pending.set(pending.checkpointId, pending);
    if (kind === "checkpoint") this.lastTriggeredAt = pending.triggeredAt;
    const log = this.options.log.child({ checkpointId: pending.checkpointId, kind, epoch });
    log.debug("checkpoint triggered");

    const { signal } = this.stopping;
    let outcome: CheckpointOutcome;
    try {
      await this.recordTrigger(pending, signal);
      if (pending.state === "pending") await this.collect(pending, signal);
      outcome = pending.state === "committing" ? await this.commit(pending) : this.aborted(pending);
    } catch (err) {
      pending.abort(
        "coordinator-error",
        `checkpoint ${pending.checkpointId} failed: ${(err as Error).message}`,
      );
      outcome = this.aborted(pending);
    } finally {
      this.pending.delete(pending.checkpointId);
      this.lastEndedAt = clock.now();
    }

    if (outcome.state === "completed") {
      log.info(
        { durationMs: outcome.checkpoint.durationMs, sizeBytes: outcome.checkpoint.sizeBytes },
        "checkpoint completed",
      );
      await this.afterCompleted(outcome.checkpoint, signal, log);
    } else {
      const level = isCheckpointFailure(outcome.cause) ? "warn" : "info";
      log[level]({ cause: outcome.cause, reason: outcome.reason }, "checkpoint aborted");
      await this.afterAborted(pending, outcome, signal);
    }
    this.cleanUp();
    this.schedule(0);
    return outcome;
  }

  /**
   * Puts the id into storage before any task hears of it, so that no later coordinator can hand it
   * out again (its ids resume above every directory in storage). Aborts the checkpoint when the PUT
   * fails or outlasts the deadline; a stop cuts the wait short.
   */
  private async recordTrigger(pending: PendingCheckpoint, signal: AbortSignal): Promise<void> {
    const { checkpointId, kind, epoch, triggeredAt, deadline } = pending;
    if (signal.aborted) return;
    const failure = await new Promise<string | null>((resolve) => {
      const settle = (outcome: string | null) => {
        cancelDeadline();
        signal.removeEventListener("abort", onStop);
        resolve(outcome);
      };
      const onStop = () => settle(null);
      signal.addEventListener("abort", onStop, { once: true });
      const cancelDeadline = this.options.timers.setTimeout(
        () => settle("it did not finish before the checkpoint's deadline"),
        Math.max(0, deadline - this.options.clock.now()),
      );
      this.options.store
        .recordTrigger({ job: this.options.job, kind, checkpointId, epoch, triggeredAt })
        .then(
          () => settle(null),
          (err: Error) => settle(err.message),
        );
    });
    if (failure !== null && pending.state === "pending") {
      pending.abort(
        "trigger-record-failed",
        `recording ${kind} ${checkpointId} in storage before triggering failed: ${failure}`,
      );
    }
  }

  /** Triggers every task and long-polls each one until the checkpoint leaves "pending". */
  private async collect(pending: PendingCheckpoint, signal: AbortSignal): Promise<void> {
    const { clock, tasks, epoch } = this.options;
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const check = () => {
      pending.expireIfDue();
      if (pending.state !== "pending") settle();
    };
    const cancelExpiry = this.options.timers.setTimeout(check, Math.max(0, pending.deadline - clock.now()));
    const fail = (cause: CheckpointAbortCause, reason: string) => {
      pending.abort(cause, reason);
      check();
    };

    const pollTask = async (task: TaskManagerClient) => {
      try {
        await task.trigger(pending.triggerRequest(task.taskIndex), signal);
      } catch (err) {
        return fail(
          callFailure(err, signal),
          `triggering task ${task.taskIndex} failed: ${(err as Error).message}`,
        );
      }
      while (pending.state === "pending") {
        const waitMs = Math.min(this.options.pollWaitMs ?? 10_000, pending.deadline - clock.now());
        if (waitMs <= 0) return check();
        let result: CheckpointResult;
        try {
          result = await task.result(pending.checkpointId, epoch, waitMs, signal);
        } catch (err) {
          return fail(
            callFailure(err, signal),
            `task ${task.taskIndex} failed during checkpoint ${pending.checkpointId}: ${(err as Error).message}`,
          );
        }
        if (result.state === "acknowledged") {
          const outcome = pending.acknowledge(result.ack);
          if (outcome.kind === "rejected") return fail("invalid-ack", outcome.reason);
          return check();
        }
        if (result.state === "declined") {
          pending.decline(result.decline);
          return check();
        }
        check();
      }
    };
    // Pollers that outlive the decision (a long poll still open after another task declined) end
    // on their own within one poll; their answers no longer change anything.
    const pollers = tasks.map((task) =>
      pollTask(task).catch((err: Error) =>
        fail("coordinator-error", `collecting task ${task.taskIndex}'s answer failed: ${err.message}`),
      ),
    );
    void Promise.all(pollers).then(check);
    await settled;
    cancelExpiry();
  }

  private async commit(pending: PendingCheckpoint): Promise<CheckpointOutcome> {
    const manifest = pending.manifest();
    try {
      await this.options.store.putManifest(manifest);
    } catch (err) {
      // The PUT may have reached the store even though its answer did not reach us.
      const written = await this.options.store.statObject(pending.manifestKey).catch(() => null);
      if (written === null) {
        pending.abort(
          "manifest-write-failed",
          `writing manifest ${pending.manifestKey} failed: ${(err as Error).message}`,
        );
        return this.aborted(pending);
      }
    }
    pending.markCompleted();
    this.manifests.set(pending.manifestKey, manifest);
    const completedAt = this.options.clock.now();
    const sourceLag = pending.sourceLag();
    const alignmentDurationMs = pending.alignmentDurationMs();
    const backpressureByTask = pending.backpressureByTask();
    return {
      state: "completed",
      checkpoint: {
        checkpointId: pending.checkpointId,
        kind: manifest.kind,
        epoch: pending.epoch,
        manifestKey: pending.manifestKey,
        triggeredAt: pending.triggeredAt,
        completedAt,
        durationMs: completedAt - pending.triggeredAt,
        sizeBytes: manifest.parts.reduce((sum, part) => sum + part.sizeBytes, 0),
        ...(sourceLag && { sourceLag }),
        ...(alignmentDurationMs !== undefined && { alignmentDurationMs }),
        ...(backpressureByTask && { backpressure: pending.backpressure(), backpressureByTask }),
      },
    };
  }

  private aborted(pending: PendingCheckpoint): Extract<CheckpointOutcome, { state: "aborted" }> {
    if (pending.state !== "aborted")
      pending.abort("coordinator-error", `checkpoint ${pending.checkpointId} ended ${pending.state}`);
    return {
      state: "aborted",
      checkpointId: pending.checkpointId,
      kind: pending.kind,
      ...pending.abortDetails!,
    };
  }

  private async afterCompleted(
    checkpoint: CompletedCheckpoint,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    this.failures.onCheckpointCompleted(checkpoint.checkpointId);
    if (this.latestCompletedId === null || checkpoint.checkpointId > this.latestCompletedId) {
      this.latestCompletedId = checkpoint.checkpointId;
    }
    try {
      await this.options.events?.onCompleted?.(checkpoint);
    } catch (err) {
      // Without the record, a restore would start from an older checkpoint: sinks must not commit yet.
      log.warn({ err }, "recording the completed checkpoint failed; notify-complete withheld");
      return;
    }
    if (signal.aborted) {
      log.info("notify-complete not sent: the coordinator stopped; the next checkpoint or a restore commits");
      return;
    }
    const request = {
      checkpointId: checkpoint.checkpointId,
      epoch: checkpoint.epoch,
      manifestKey: checkpoint.manifestKey,
    };
    const results = await Promise.allSettled(
      this.options.tasks.map((task) => task.notifyComplete(request, signal)),
    );
    results.forEach((result, taskIndex) => {
      if (result.status === "rejected") {
        log[signal.aborted ? "info" : "warn"]({ taskIndex, err: result.reason }, "notify-complete failed");
      }
    });
  }

  private async afterAborted(
    pending: PendingCheckpoint,
    outcome: Extract<CheckpointOutcome, { state: "aborted" }>,
    signal: AbortSignal,
  ): Promise<void> {
    this.abortedIds.add(outcome.checkpointId);
    // No task heard of a checkpoint whose id could not be recorded: nothing to tell them.
    if (!signal.aborted && outcome.cause !== "trigger-record-failed") {
      const request = {
        checkpointId: outcome.checkpointId,
        epoch: pending.epoch,
        reason: outcome.reason.slice(0, 4096),
      };
      const results = await Promise.allSettled(this.options.tasks.map((task) => task.abort(request, signal)));
      // Telling a task is a courtesy (it gives up at the deadline anyway), so a failure is no error.
      results.forEach((result, taskIndex) => {
        if (result.status === "rejected") {
          this.options.log.debug({ taskIndex, err: result.reason }, "telling a task about an abort failed");
        }
      });
    }
    this.options.events?.onAborted?.(outcome);
    const decision = this.failures.onCheckpointFailed(outcome.checkpointId, outcome.kind, outcome.cause);
    if (decision.restartJob) {
      this.options.events?.onRestartRequested?.(
        `${decision.consecutiveFailures} consecutive checkpoints failed (tolerable: ${this.options.tolerableFailures}); last: ${outcome.reason}`,
      );
    }
  }

  /** Applies the retention plan; one pass at a time, repeated if more ended meanwhile. */
  private cleanUp(): void {
    if (this.cleaning) {
      this.cleanAgain = true;
      return;
    }
    this.cleaning = (async () => {
      do {
        this.cleanAgain = false;
        try {
          await this.applyRetention();
        } catch (err) {
          this.options.log.warn({ err }, "checkpoint clean-up failed; will retry after the next checkpoint");
        }
      } while (this.cleanAgain);
      this.cleaning = null;
    })();
  }

  private async applyRetention(): Promise<void> {
    const { store, job } = this.options;
    const stored = await store.listCheckpoints(job);
    const manifests: CheckpointManifest[] = [];
    for (const dir of stored) {
      const key = dir.objectKeys.find((k) => k === `${dir.directory}${MANIFEST_NAME}`);
      if (key === undefined) continue;
      let manifest = this.manifests.get(key);
      if (manifest === undefined) {
        const read = await store.getManifest(key);
        if (read === null) continue;
        manifest = read;
        this.manifests.set(key, manifest);
      }
      manifests.push(manifest);
    }
    const inFlight = new Set(this.pending.keys());
    const deletions = planRetention({
      stored: stored.filter((dir) => !inFlight.has(dir.checkpointId)),
      manifests,
      abortedIds: this.abortedIds,
      pinnedIds: new Set(this.latestCompletedId === null ? [] : [this.latestCompletedId]),
      retained: this.options.retained,
    });
    for (const deletion of deletions) {
      await store.deleteObjects(deletion.keys);
      for (const key of deletion.keys) this.manifests.delete(key);
      if (deletion.reason === "aborted") this.abortedIds.delete(deletion.checkpointId);
    }
  }
}

/** A failed call to a task: cancelled by a stop, answered with an error, or no answer at all. */
function callFailure(err: unknown, signal: AbortSignal): CheckpointAbortCause {
  if (signal.aborted) return "coordinator-stopped";
  return err instanceof TaskManagerCallError && err.status !== undefined ? "task-error" : "task-unreachable";
}
