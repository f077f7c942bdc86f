// Prometheus metrics served at /metrics. Per-job series carry namespace and name; a deleted job's
// series are removed so the registry does not grow with every job ever seen.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { CHECKPOINT_ABORT_CAUSES, isCheckpointFailure } from "../coordinator/abort-cause.js";

export class OperatorMetrics {
  readonly registry = new Registry();

  readonly checkpointDuration = new Histogram({
    name: "streamjob_checkpoint_duration_seconds",
    help: "Time from trigger to committed manifest of completed checkpoints and savepoints",
    labelNames: ["namespace", "name", "kind"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly checkpointSize = new Gauge({
    name: "streamjob_checkpoint_size_bytes",
    help: "Size of the latest completed checkpoint or savepoint",
    labelNames: ["namespace", "name", "kind"] as const,
    registers: [this.registry],
  });
  readonly checkpointsCompleted = new Counter({
    name: "streamjob_checkpoints_completed_total",
    help: "Checkpoints and savepoints committed",
    labelNames: ["namespace", "name", "kind"] as const,
    registers: [this.registry],
  });
  /** Aborts of a stopping coordinator (redeploy, upgrade, scale, suspend, restart) are no failure. */
  readonly checkpointsFailed = new Counter({
    name: "streamjob_checkpoints_failed_total",
    help: "Checkpoints and savepoints that failed, by cause (declined, expired, task-unreachable, ...)",
    labelNames: ["namespace", "name", "kind", "cause"] as const,
    registers: [this.registry],
  });
  readonly sourceLag = new Gauge({
    name: "streamjob_source_lag_records",
    help: "Records the latest checkpoint was behind the end of a source partition (Kafka: last stable offset)",
    labelNames: ["namespace", "name", "partition"] as const,
    registers: [this.registry],
  });
  /** Per job ("namespace/name"), the partitions with a sourceLag series, so they can be removed. */
  private readonly lagPartitions = new Map<string, Set<string>>();
  readonly alignmentDuration = new Histogram({
    name: "streamjob_checkpoint_alignment_duration_seconds",
    help: "Longest time a task held input back waiting for a completed checkpoint's barriers (dataflows)",
    labelNames: ["namespace", "name"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly backpressure = new Gauge({
    name: "streamjob_backpressure_ratio",
    help: "Share of the time before the latest checkpoint a TaskManager's stage waited for credit to send downstream (dataflows)",
    labelNames: ["namespace", "name", "task", "stage"] as const,
    registers: [this.registry],
  });
  /** Per job ("namespace/name"), the label sets of its backpressure series, so they can be removed. */
  private readonly backpressureSeries = new Map<string, { task: string; stage: string }[]>();

  readonly latestCheckpointId = new Gauge({
    name: "streamjob_latest_checkpoint_id",
    help: "Id of the latest completed checkpoint",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly restarts = new Counter({
    name: "streamjob_restarts_total",
    help: "Whole-job restarts after a TaskManager failure",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: "streamjob_reconcile_duration_seconds",
    help: "Duration of reconcile passes",
    labelNames: ["result"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly workQueueDepth = new Gauge({
    name: "streamjob_workqueue_depth",
    help: "StreamJobs waiting for a reconcile pass",
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: "streamjob_leader",
    help: "1 while this replica leads and reconciles",
    registers: [this.registry],
  });
  readonly runningCoordinators = new Gauge({
    name: "streamjob_coordinators",
    help: "Checkpoint coordinators running in this replica",
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** The lag of every partition the latest checkpoint reported; other partitions' series go. */
  setSourceLag(namespace: string, name: string, lag: Readonly<Record<string, number>>): void {
    const key = `${namespace}/${name}`;
    for (const partition of this.lagPartitions.get(key) ?? []) {
      if (!Object.hasOwn(lag, partition)) this.sourceLag.remove({ namespace, name, partition });
    }
    for (const [partition, records] of Object.entries(lag))
      this.sourceLag.set({ namespace, name, partition }, records);
    this.lagPartitions.set(key, new Set(Object.keys(lag)));
  }

  /** Every TaskManager's backpressure per stage, as the latest checkpoint reported it; other series go. */
  setBackpressure(
    namespace: string,
    name: string,
    byTask: Readonly<Record<number, Readonly<Record<string, number>>>>,
  ): void {
    const key = `${namespace}/${name}`;
    for (const series of this.backpressureSeries.get(key) ?? [])
      this.backpressure.remove({ namespace, name, ...series });
    const set = Object.entries(byTask).flatMap(([task, stages]) =>
      Object.entries(stages).map(([stage, ratio]) => {
        this.backpressure.set({ namespace, name, task, stage }, ratio);
        return { task, stage };
      }),
    );
    this.backpressureSeries.set(key, set);
  }

  /** Drops the series of a job that no longer exists. */
  forgetJob(namespace: string, name: string): void {
    const kinds = ["checkpoint", "savepoint"];
    for (const metric of [this.checkpointDuration, this.checkpointSize, this.checkpointsCompleted]) {
      for (const kind of kinds) metric.remove({ namespace, name, kind });
    }
    for (const kind of kinds) {
      for (const cause of CHECKPOINT_ABORT_CAUSES.filter(isCheckpointFailure)) {
        this.checkpointsFailed.remove({ namespace, name, kind, cause });
      }
    }
    this.latestCheckpointId.remove({ namespace, name });
    this.setSourceLag(namespace, name, {});
    this.lagPartitions.delete(`${namespace}/${name}`);
    this.alignmentDuration.remove({ namespace, name });
    this.setBackpressure(namespace, name, {});
    this.backpressureSeries.delete(`${namespace}/${name}`);
    this.restarts.remove({ namespace, name });
  }
}
