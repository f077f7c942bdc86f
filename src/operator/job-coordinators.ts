// One checkpoint coordinator per running StreamJob, kept between reconcile passes (the reconciler is
// stateless; this is the operator's only in-memory state, and all of it can be rebuilt from status
// and storage after a restart). The coordinator's commit hook patches status.latestCheckpoint before
// notify-complete goes out, so two-phase-commit sinks never commit output a restore would not
// start from. Those status writes are conditional on the resourceVersion they read, so a stale
// operator process still running beside its replacement cannot overwrite newer counts or ids.
import type { Logger } from "pino";
import { z } from "zod";
import type { JobRef } from "../api/protocol.js";
import { parseDuration } from "../api/duration.js";
import { StreamJobStatus, type StreamJob } from "../api/streamjob.js";
import { isCheckpointFailure } from "../coordinator/abort-cause.js";
import {
  CheckpointCoordinator,
  type CheckpointOutcome,
  type CompletedCheckpoint,
} from "../coordinator/checkpoint-coordinator.js";
import { CheckpointIdCounter } from "../coordinator/checkpoint-id-counter.js";
import type { HttpTaskManagerClientOptions } from "../coordinator/http-task-manager-client.js";
import type { SnapshotStore, TaskManagerClient, Timers } from "../coordinator/interfaces.js";
import { taskManagerUrl } from "./desired.js";
import { isConflict, type KubeGateway } from "./kube-gateway.js";
import type { OperatorMetrics } from "./metrics.js";
import type { ObservedPod, SnapshotObservation } from "./planner.js";

/** The status fields the coordinator writes; the reconciler never writes them. */
const COORDINATOR_MASK = { latestCheckpoint: true, latestSavepoint: true, checkpointCounts: true } as const;
export const COORDINATOR_FIELDS = Object.keys(COORDINATOR_MASK) as (keyof typeof COORDINATOR_MASK)[];
export type CheckpointStatus = Pick<StreamJobStatus, keyof typeof COORDINATOR_MASK>;

/** The part of a stored StreamJob a conditional write of the coordinator's fields needs. */
const StoredCheckpointStatus = z.object({
  metadata: z.object({ uid: z.string(), resourceVersion: z.string().min(1) }),
  status: StreamJobStatus.pick(COORDINATOR_MASK).partial().optional(),
});

/** Writes refused because another writer came in between, before the write is given up. */
const MAX_CONFLICTS = 10;

export interface JobCoordinatorsDeps {
  /** Quorum reads, conditional status writes (409 when the StreamJob changed since) and events. */
  gateway: Pick<KubeGateway, "getStreamJob" | "patchStatus" | "recordEvent">;
  /** The client the coordinator reaches one TaskManager with (HttpTaskManagerClient). */
  connect(options: HttpTaskManagerClientOptions): TaskManagerClient;
  /** Asks for a reconcile pass of the job (a snapshot finished, the failure manager gave up...). */
  enqueue(key: string): void;
  metrics: OperatorMetrics;
  log: Logger;
  now(): number;
  timers: Timers;
}

export interface StartInput {
  job: StreamJob;
  epoch: number;
  parallelism: number;
  /** The epoch's TaskManager pods, one per task index, each with an IP. */
  pods: ObservedPod[];
  token: string;
  store: SnapshotStore;
  /** Bucket and key prefix of the store, for the manifests. */
  bucket: string;
}

interface JobState {
  /** The StreamJob's uid: a job deleted and created again under its name is another job. */
  uid: string;
  coordinator?: CheckpointCoordinator;
  /** The checkpoint policy the coordinator runs with; a change restarts the coordinator. */
  policy?: string;
  epoch?: number;
  parallelism?: number;
  /** Shared by every epoch's coordinator, so no id is ever reused. */
  ids?: CheckpointIdCounter;
  snapshot?: SnapshotObservation;
  /** The failure manager's restart request, for the epoch it was made in. */
  restartRequest?: { epoch: number; reason: string };
  /** Why checkpoints are failing, while the last one failed. */
  checkpointFailure?: string;
  /**
   * What this operator last wrote to the checkpoint status and the resourceVersion it got back: the
   * next write is conditional on it and needs no read first, unless someone wrote since (a 409).
   */
  lastStatusWrite?: { resourceVersion: string; status: CheckpointStatus };
}

export function jobKey(job: JobRef): string {
  return `${job.namespace}/${job.name}`;
}

export class JobCoordinators {
  private readonly jobs = new Map<string, JobState>();

  constructor(private readonly deps: JobCoordinatorsDeps) {}

  isRunning(key: string): boolean {
    return this.jobs.get(key)?.coordinator !== undefined;
  }

  /** Forgets what was kept for an earlier job of the same name (another uid). */
  async adopt(key: string, uid: string): Promise<void> {
    const state = this.jobs.get(key);
    if (state && state.uid !== uid) await this.forget(key);
  }

  snapshotOf(key: string): SnapshotObservation | undefined {
    return this.jobs.get(key)?.snapshot;
  }

  restartRequestOf(key: string, epoch: number): string | undefined {
    const request = this.jobs.get(key)?.restartRequest;
    return request?.epoch === epoch ? request.reason : undefined;
  }

  checkpointFailureOf(key: string): string | undefined {
    return this.jobs.get(key)?.checkpointFailure;
  }

  /** Starts the epoch's coordinator unless it already runs; a coordinator of another epoch is stopped first. */
  /**
   * `stored` is called once per job (per operator process) to resume the id counter: the ids used
   * in status and storage, and the checkpoints that left a directory without a manifest (which
   * nothing will complete).
   */
  async start(
    input: StartInput,
    stored: () => Promise<{ recordedId: number; storedIds: number[]; leftoverIds: number[] }>,
  ): Promise<void> {
    const { job, epoch, parallelism } = input;
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    const key = jobKey(ref);
    const policy = JSON.stringify(job.spec.checkpoint);
    const running = this.jobs.get(key);
    if (running?.coordinator && running.epoch === epoch && running.parallelism === parallelism) {
      if (running.policy === policy) return;
      await this.stop(key, "the checkpoint policy changed");
    } else {
      await this.stop(key, "a new epoch starts");
    }
    const state = this.state(key, job);
    const tasks = [...input.pods]
      .sort((a, b) => (a.taskIndex ?? 0) - (b.taskIndex ?? 0))
      .map((pod, taskIndex) => {
        if (!pod.podIP) throw new Error(`TaskManager ${pod.name} has no IP yet`);
        return this.deps.connect({ taskIndex, baseUrl: taskManagerUrl(pod.podIP), token: input.token });
      });
    let leftoverIds: number[] = [];
    if (!state.ids) {
      const found = await stored();
      // A task may have been triggered for a checkpoint that reached neither status nor storage
      // (the previous operator was killed): its id must not be reused either.
      const triggered = await Promise.allSettled(tasks.map((task) => task.status()));
      const triggeredIds = triggered.flatMap((r) =>
        r.status === "fulfilled" && r.value.highestTriggeredCheckpointId !== null
          ? [r.value.highestTriggeredCheckpointId]
          : [],
      );
      state.ids = CheckpointIdCounter.resume(found.recordedId, [...found.storedIds, ...triggeredIds]);
      leftoverIds = found.leftoverIds;
    }
    const { checkpoint } = job.spec;
    const log = this.deps.log.child({ namespace: ref.namespace, name: ref.name });
    const coordinator = new CheckpointCoordinator({
      job: ref,
      epoch,
      parallelism,
      maxParallelism: job.spec.maxParallelism,
      storage: { bucket: input.bucket, basePrefix: checkpoint.storage.prefix },
      policy: {
        intervalMs: parseDuration(checkpoint.interval),
        timeoutMs: parseDuration(checkpoint.timeout),
        minPauseMs: parseDuration(checkpoint.minPause),
        maxConcurrent: checkpoint.maxConcurrent,
      },
      retained: checkpoint.retained,
      tolerableFailures: checkpoint.tolerableFailures,
      tasks,
      store: input.store,
      ids: state.ids,
      leftoverIds,
      clock: { now: this.deps.now },
      timers: this.deps.timers,
      log,
      latestCompletedId: job.status?.latestCheckpoint?.id ?? null,
      events: {
        onCompleted: (completed) => this.completed(job, state, completed),
        onAborted: (outcome) => this.aborted(job, state, outcome),
        onRestartRequested: (reason) => {
          state.restartRequest = { epoch, reason };
          this.deps.enqueue(key);
        },
      },
    });
    Object.assign(state, { coordinator, epoch, parallelism, policy, restartRequest: undefined });
    coordinator.start();
    this.deps.metrics.runningCoordinators.set(this.running());
    log.info({ parallelism }, "checkpoint coordinator started");
  }

  /**
   * Stops the job's coordinator and waits until nothing is in flight (a checkpoint that is already
   * committing finishes). Resolves true if one was running: only after this may a restore target be
   * chosen from storage.
   */
  async stop(key: string, reason: string): Promise<boolean> {
    const state = this.jobs.get(key);
    const coordinator = state?.coordinator;
    if (!state || !coordinator) return false;
    state.coordinator = undefined;
    await coordinator.stop(reason);
    this.deps.metrics.runningCoordinators.set(this.running());
    this.deps.log.info({ key, reason }, "checkpoint coordinator stopped");
    return true;
  }

  /** Asks the running coordinator for a snapshot; its outcome is kept for the next reconcile pass. */
  takeSnapshot(key: string, kind: "checkpoint" | "savepoint", purpose: string): void {
    const state = this.jobs.get(key);
    const coordinator = state?.coordinator;
    if (!state || !coordinator) {
      if (state) state.snapshot = { purpose, state: "failed", message: "no coordinator is running" };
      this.deps.enqueue(key);
      return;
    }
    state.snapshot = { purpose, state: "pending" };
    const taken = kind === "savepoint" ? coordinator.triggerSavepoint() : coordinator.triggerCheckpoint();
    taken
      .then((outcome: CheckpointOutcome) => {
        state.snapshot =
          outcome.state === "completed"
            ? {
                purpose,
                state: "completed",
                target: {
                  checkpointId: outcome.checkpoint.checkpointId,
                  manifestKey: outcome.checkpoint.manifestKey,
                },
              }
            : { purpose, state: "failed", message: outcome.reason };
      })
      .catch((err: Error) => (state.snapshot = { purpose, state: "failed", message: err.message }))
      .finally(() => this.deps.enqueue(key));
  }

  /** The job is gone: stop its coordinator and forget it. */
  async forget(key: string): Promise<void> {
    await this.stop(key, "the StreamJob was deleted");
    this.jobs.delete(key);
    const [namespace, name] = key.split("/") as [string, string];
    this.deps.metrics.forgetJob(namespace, name);
  }

  async stopAll(reason: string): Promise<void> {
    await Promise.all([...this.jobs.keys()].map((key) => this.stop(key, reason)));
  }

  private running(): number {
    return [...this.jobs.values()].filter((state) => state.coordinator !== undefined).length;
  }

  private state(key: string, job: StreamJob): JobState {
    let state = this.jobs.get(key);
    if (!state) {
      state = { uid: job.metadata.uid ?? "" };
      this.jobs.set(key, state);
    }
    return state;
  }

  /**
   * Writes the coordinator's status fields as `change` derives them from what is stored now, on
   * condition that nothing was written in between (resourceVersion). A 409 means another writer came
   * first (the reconciler, or a stale operator process still running beside its replacement): read
   * again and derive again, so counts and ids never go back and no update is lost. Resolves with
   * what was written, or null when the StreamJob is gone (or is another job of the same name).
   */
  private async writeCheckpointStatus(
    job: StreamJob,
    state: JobState,
    change: (stored: CheckpointStatus) => CheckpointStatus,
  ): Promise<CheckpointStatus | null> {
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    for (let attempt = 1; ; attempt++) {
      let stored = state.lastStatusWrite;
      state.lastStatusWrite = undefined;
      if (stored === undefined) {
        const raw = await this.deps.gateway.getStreamJob(ref.namespace, ref.name);
        if (raw === null) return null;
        const read = StoredCheckpointStatus.parse(raw);
        if (job.metadata.uid !== undefined && read.metadata.uid !== job.metadata.uid) return null;
        stored = { resourceVersion: read.metadata.resourceVersion, status: read.status ?? {} };
      }
      const status = change(stored.status);
      try {
        const resourceVersion = await this.deps.gateway.patchStatus(
          ref.namespace,
          ref.name,
          status,
          stored.resourceVersion,
        );
        if (resourceVersion === null) return null;
        state.lastStatusWrite = { resourceVersion, status: { ...stored.status, ...status } };
        return status;
      } catch (err) {
        if (!isConflict(err) || attempt === MAX_CONFLICTS) throw err;
        this.deps.log.debug(
          { key: jobKey(ref), attempt },
          "checkpoint status changed meanwhile; merging again",
        );
      }
    }
  }

  // Runs between the manifest PUT and notify-complete: if the status patch fails, this throws and
  // the coordinator withholds notify-complete.
  private async completed(job: StreamJob, state: JobState, checkpoint: CompletedCheckpoint): Promise<void> {
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    const savepoint = checkpoint.kind === "savepoint";
    const record = {
      id: checkpoint.checkpointId,
      path: checkpoint.manifestKey,
      completedAt: new Date(checkpoint.completedAt).toISOString(),
      durationMs: Math.round(checkpoint.durationMs),
      sizeBytes: checkpoint.sizeBytes,
      ...(!savepoint && checkpointFigures(checkpoint)),
    };
    const nonce = state.snapshot?.purpose.startsWith("nonce:") ? state.snapshot.purpose.slice(6) : undefined;
    const written = await this.writeCheckpointStatus(job, state, (stored) =>
      recordCompleted(stored, checkpoint.kind, {
        ...record,
        ...(savepoint && nonce !== undefined && { nonce }),
      }),
    );
    if (written === null) throw new Error(`StreamJob ${jobKey(ref)} no longer exists`);
    state.checkpointFailure = undefined;

    const labels = { ...ref, kind: checkpoint.kind };
    this.deps.metrics.checkpointDuration.observe(labels, checkpoint.durationMs / 1000);
    this.deps.metrics.checkpointSize.set(labels, checkpoint.sizeBytes);
    this.deps.metrics.checkpointsCompleted.inc(labels);
    if (!savepoint) {
      this.deps.metrics.setSourceLag(ref.namespace, ref.name, checkpoint.sourceLag ?? {});
      this.deps.metrics.setBackpressure(ref.namespace, ref.name, checkpoint.backpressureByTask ?? {});
      if (checkpoint.alignmentDurationMs !== undefined)
        this.deps.metrics.alignmentDuration.observe(ref, checkpoint.alignmentDurationMs / 1000);
    }
    if (written.latestCheckpoint) this.deps.metrics.latestCheckpointId.set(ref, written.latestCheckpoint.id);
    void this.event(
      job,
      "Normal",
      savepoint ? "SavepointCompleted" : "CheckpointCompleted",
      `${checkpoint.kind} ${checkpoint.checkpointId} completed in ${Math.round(checkpoint.durationMs)} ms, ${formatBytes(checkpoint.sizeBytes)}: ${checkpoint.manifestKey}`,
    );
  }

  private aborted(
    job: StreamJob,
    state: JobState,
    outcome: Extract<CheckpointOutcome, { state: "aborted" }>,
  ): void {
    // A coordinator stopped for a redeploy, upgrade, scale, suspend or restart cut it short: no failure.
    if (!isCheckpointFailure(outcome.cause)) return;
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    // A failure that ends only once the coordinator is stopping says nothing about the next epoch.
    if (state.coordinator)
      state.checkpointFailure = `${outcome.kind} ${outcome.checkpointId}: ${outcome.reason}`;
    this.deps.metrics.checkpointsFailed.inc({ ...ref, kind: outcome.kind, cause: outcome.cause });
    this.writeCheckpointStatus(job, state, recordFailed).catch((err: Error) =>
      this.deps.log.warn({ err, key: jobKey(ref) }, "recording a failed checkpoint failed"),
    );
    void this.event(
      job,
      "Warning",
      outcome.kind === "savepoint" ? "SavepointFailed" : "CheckpointFailed",
      `${outcome.kind} ${outcome.checkpointId} failed: ${outcome.reason}`,
    );
    this.deps.enqueue(jobKey(ref));
  }

  private async event(
    job: StreamJob,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      await this.deps.gateway.recordEvent({ job, type, reason, message }, { aggregate: true });
    } catch (err) {
      this.deps.log.warn({ err, reason }, "recording an event failed");
    }
  }
}

/** The figures a checkpoint's record carries beyond a savepoint's: lag, alignment, backpressure. */
type CheckpointFigures = Pick<
  NonNullable<CheckpointStatus["latestCheckpoint"]>,
  "sourceLag" | "alignmentDurationMs" | "backpressure"
>;

/** A savepoint carries its nonce, a checkpoint its figures. */
type CheckpointRecord = NonNullable<CheckpointStatus["latestSavepoint"]> & CheckpointFigures;

/** The figures the tasks reported, for status: the lag summed, backpressure to a thousandth. */
function checkpointFigures(checkpoint: CompletedCheckpoint): CheckpointFigures {
  const { sourceLag, alignmentDurationMs, backpressure } = checkpoint;
  return {
    ...(sourceLag && { sourceLag: Object.values(sourceLag).reduce((sum, lag) => sum + lag, 0) }),
    ...(alignmentDurationMs !== undefined && { alignmentDurationMs }),
    ...(backpressure && {
      backpressure: Object.fromEntries(
        Object.entries(backpressure).map(([stage, ratio]) => [stage, Math.round(ratio * 1000) / 1000]),
      ),
    }),
  };
}

/**
 * The status fields after a completed checkpoint or savepoint, derived from what is stored: one
 * more completed, and the record only if it is newer than the stored one (a stale writer's older
 * checkpoint never replaces a newer one).
 */
function recordCompleted(
  stored: CheckpointStatus,
  kind: "checkpoint" | "savepoint",
  record: CheckpointRecord,
): CheckpointStatus {
  const counts = stored.checkpointCounts ?? { completed: 0, failed: 0 };
  const status: CheckpointStatus = { checkpointCounts: { ...counts, completed: counts.completed + 1 } };
  const field = kind === "savepoint" ? "latestSavepoint" : "latestCheckpoint";
  if (record.id > (stored[field]?.id ?? 0)) status[field] = record;
  return status;
}

/** The status fields after a failed checkpoint or savepoint, derived from what is stored. */
function recordFailed(stored: CheckpointStatus): CheckpointStatus {
  const counts = stored.checkpointCounts ?? { completed: 0, failed: 0 };
  return { checkpointCounts: { ...counts, failed: counts.failed + 1 } };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
