// One checkpoint coordinator per running StreamJob, kept between reconcile passes (the reconciler is
// stateless; this is the operator's only in-memory state, and all of it can be rebuilt from status
// and storage after a restart). The coordinator's commit hook patches status.latestCheckpoint before
// notify-complete goes out, so two-phase-commit sinks never commit output a restore would not
// start from.
import type { Logger } from "pino";
import type { JobRef } from "../api/protocol.js";
import { parseDuration } from "../api/duration.js";
import type { StreamJob, StreamJobStatus } from "../api/streamjob.js";
import {
  CheckpointCoordinator,
  type CheckpointOutcome,
  type CompletedCheckpoint,
} from "../coordinator/checkpoint-coordinator.js";
import { CheckpointIdCounter } from "../coordinator/checkpoint-id-counter.js";
import { HttpTaskManagerClient } from "../coordinator/http-task-manager-client.js";
import type { SnapshotStore } from "../coordinator/interfaces.js";
import { TASKMANAGER_PORT } from "./desired.js";
import type { EventInput } from "./kube-gateway.js";
import type { OperatorMetrics } from "./metrics.js";
import type { ObservedPod, SnapshotObservation } from "./planner.js";

/** What the coordinator writes into status; the reconciler never writes these fields. */
export type CheckpointStatus = Pick<
  StreamJobStatus,
  "latestCheckpoint" | "latestSavepoint" | "checkpointCounts"
>;

export interface JobCoordinatorsDeps {
  patchStatus(job: JobRef, status: CheckpointStatus): Promise<boolean>;
  recordEvent(event: EventInput, options?: { aggregate?: boolean }): Promise<void>;
  /** Asks for a reconcile pass of the job (a snapshot finished, the failure manager gave up...). */
  enqueue(key: string): void;
  metrics: OperatorMetrics;
  log: Logger;
  now(): number;
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
  counts: { completed: number; failed: number };
  latestSavepoint?: StreamJobStatus["latestSavepoint"];
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
        const host = pod.podIP.includes(":") ? `[${pod.podIP}]` : pod.podIP;
        return new HttpTaskManagerClient({
          taskIndex,
          baseUrl: `http://${host}:${TASKMANAGER_PORT}`,
          token: input.token,
        });
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
    const status = job.status;
    let state = this.jobs.get(key);
    if (!state) {
      state = {
        uid: job.metadata.uid ?? "",
        counts: { ...(status?.checkpointCounts ?? { completed: 0, failed: 0 }) },
        ...(status?.latestSavepoint && { latestSavepoint: status.latestSavepoint }),
      };
      this.jobs.set(key, state);
    }
    return state;
  }

  // Runs between the manifest PUT and notify-complete: if the status patch fails, this throws and
  // the coordinator withholds notify-complete.
  private async completed(job: StreamJob, state: JobState, checkpoint: CompletedCheckpoint): Promise<void> {
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    const record = {
      id: checkpoint.checkpointId,
      path: checkpoint.manifestKey,
      completedAt: new Date(checkpoint.completedAt).toISOString(),
      durationMs: Math.round(checkpoint.durationMs),
      sizeBytes: checkpoint.sizeBytes,
    };
    const counts = { ...state.counts, completed: state.counts.completed + 1 };
    const savepoint = checkpoint.kind === "savepoint";
    const nonce = state.snapshot?.purpose.startsWith("nonce:") ? state.snapshot.purpose.slice(6) : undefined;
    const status: CheckpointStatus = savepoint
      ? { latestSavepoint: { ...record, ...(nonce !== undefined && { nonce }) }, checkpointCounts: counts }
      : { latestCheckpoint: record, checkpointCounts: counts };
    if (!(await this.deps.patchStatus(ref, status)))
      throw new Error(`StreamJob ${jobKey(ref)} no longer exists`);
    state.counts = counts;
    state.checkpointFailure = undefined;

    const labels = { ...ref, kind: checkpoint.kind };
    this.deps.metrics.checkpointDuration.observe(labels, checkpoint.durationMs / 1000);
    this.deps.metrics.checkpointSize.set(labels, checkpoint.sizeBytes);
    this.deps.metrics.checkpointsCompleted.inc(labels);
    if (!savepoint) this.deps.metrics.latestCheckpointId.set(ref, checkpoint.checkpointId);
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
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name! };
    state.counts = { ...state.counts, failed: state.counts.failed + 1 };
    // A stopping coordinator aborts what is pending; that is not a checkpoint health problem.
    if (state.coordinator)
      state.checkpointFailure = `${outcome.kind} ${outcome.checkpointId}: ${outcome.reason}`;
    this.deps.metrics.checkpointsFailed.inc({ ...ref, kind: outcome.kind });
    this.deps
      .patchStatus(ref, { checkpointCounts: state.counts })
      .catch((err: Error) =>
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
      await this.deps.recordEvent({ job, type, reason, message }, { aggregate: true });
    } catch (err) {
      this.deps.log.warn({ err, reason }, "recording an event failed");
    }
  }
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
