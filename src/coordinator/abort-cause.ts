// Why a checkpoint or savepoint was aborted (after Flink's CheckpointFailureReason). The cause, not
// the free-text reason, decides whether the abort is a failure: counted in status and metrics,
// reported as a Warning event, and weighed by the CheckpointFailureManager. A coordinator stopped
// for a redeploy, upgrade, scale, suspend, restart or operator shutdown aborts what is in flight, but
// nothing failed. The list is closed, so it can label a metric.
export const CHECKPOINT_ABORT_CAUSES = [
  /** Recording the id in storage before the trigger failed: no task was triggered. */
  "trigger-record-failed",
  /** A task declined: its snapshot or upload failed. */
  "declined",
  /** The deadline passed before every task acknowledged. */
  "expired",
  /** A call to a task got no answer (connection refused or reset, timeout). */
  "task-unreachable",
  /** A task answered a call with an error status or a body that is not the protocol's. */
  "task-error",
  /** An ack broke the protocol (another checkpoint or epoch, parts outside the task's prefix or key groups). */
  "invalid-ack",
  /** The manifest PUT failed and no manifest exists. */
  "manifest-write-failed",
  /** The coordinator itself failed unexpectedly while collecting acks. */
  "coordinator-error",
  /** The coordinator stopped with the checkpoint in flight: not a failure. */
  "coordinator-stopped",
] as const;

export type CheckpointAbortCause = (typeof CHECKPOINT_ABORT_CAUSES)[number];

/** Whether an abort with this cause is a failed checkpoint (as opposed to one cut short on purpose). */
export function isCheckpointFailure(cause: CheckpointAbortCause): boolean {
  return cause !== "coordinator-stopped";
}
