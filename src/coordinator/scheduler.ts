// When to trigger the next periodic checkpoint: a pure function of the policy, what is known about
// past and running checkpoints, and the current time, in the shape of the kubebuilder CronJob
// reconciler — either "trigger now" or "nothing to do, look again after this delay". The coordinator
// also re-evaluates whenever a checkpoint completes or aborts, so the delay is an upper bound.

export interface SchedulerPolicy {
  /** Time between the starts of two periodic checkpoints. */
  intervalMs: number;
  /** How long tasks have to acknowledge before the checkpoint expires. */
  timeoutMs: number;
  /**
   * Minimum time from the end (completion or abort) of the last checkpoint to the start of the next.
   * As in Flink, a non-zero pause implies at most one checkpoint at a time: while one runs, its end
   * (and so the earliest next start) is unknown.
   */
  minPauseMs: number;
  maxConcurrent: number;
}

export interface SchedulerState {
  /** When the last checkpoint was triggered; null if none was in this epoch. */
  lastTriggeredAt: number | null;
  /** When the last checkpoint completed or aborted; null if none has. */
  lastEndedAt: number | null;
  /** Checkpoints and savepoints still in flight. */
  pending: ReadonlyArray<{ checkpointId: number; deadline: number }>;
}

export type TriggerDecision =
  | { trigger: true; deadline: number }
  | { trigger: false; reason: "max-concurrent" | "min-pause" | "interval"; requeueAfterMs: number };

export function decideTrigger(policy: SchedulerPolicy, state: SchedulerState, now: number): TriggerDecision {
  checkPolicy(policy);
  // Whatever else we wait for, wake up by the earliest deadline so the pending checkpoint expires on time.
  const untilFirstDeadline = Math.min(...state.pending.map((pending) => Math.max(0, pending.deadline - now)));

  if (state.pending.length >= policy.maxConcurrent) {
    return { trigger: false, reason: "max-concurrent", requeueAfterMs: untilFirstDeadline };
  }
  if (policy.minPauseMs > 0 && state.pending.length > 0) {
    return { trigger: false, reason: "min-pause", requeueAfterMs: untilFirstDeadline };
  }

  const dueAt = state.lastTriggeredAt === null ? now : state.lastTriggeredAt + policy.intervalMs;
  const pauseEndsAt = state.lastEndedAt === null ? now : state.lastEndedAt + policy.minPauseMs;
  const startAt = Math.max(dueAt, pauseEndsAt);
  if (startAt <= now) return { trigger: true, deadline: now + policy.timeoutMs };

  return {
    trigger: false,
    reason: pauseEndsAt > dueAt ? "min-pause" : "interval",
    requeueAfterMs: Math.min(startAt - now, untilFirstDeadline),
  };
}

function checkPolicy(policy: SchedulerPolicy): void {
  const problems = [
    policy.intervalMs > 0 ? null : "intervalMs must be positive",
    policy.timeoutMs > 0 ? null : "timeoutMs must be positive",
    policy.minPauseMs >= 0 ? null : "minPauseMs must not be negative",
    Number.isInteger(policy.maxConcurrent) && policy.maxConcurrent >= 1
      ? null
      : "maxConcurrent must be at least 1",
  ].filter((problem) => problem !== null);
  if (problems.length > 0) throw new RangeError(`invalid checkpoint schedule: ${problems.join("; ")}`);
}
