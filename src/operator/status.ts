// The one status write of a reconcile pass: old status + plan + what was observed → new status, and
// the Events that go with it. Conditions follow metav1.Condition: lastTransitionTime changes only
// when the status flips.
import type { Condition, StreamJob, StreamJobStatus } from "../api/streamjob.js";
import type { Action, Observed, Plan } from "./planner.js";
import { serialiseSpec } from "./spec-changes.js";

export interface StatusInput {
  job: StreamJob;
  plan: Plan;
  now: number;
  /** Why the coordinator considers checkpointing unhealthy (failure manager), if it does. */
  checkpointFailure?: string;
}

export function nextStatus({ job, plan, now, checkpointFailure }: StatusInput): StreamJobStatus {
  const old = job.status ?? {};
  const generation = job.metadata.generation ?? 0;
  const at = new Date(now).toISOString();
  const set = (conditions: Condition[], type: string, value: boolean, reason: string, message: string) =>
    upsertCondition(
      conditions,
      { type, status: value ? "True" : "False", reason, message, observedGeneration: generation },
      at,
    );

  let conditions = old.conditions ?? [];
  const running = plan.phase === "Running" && !plan.degraded;
  conditions = set(conditions, "Ready", running, running ? "Running" : plan.reason, plan.message);
  const progressing = plan.progressing && !plan.degraded && plan.phase !== "Failed";
  conditions = set(conditions, "Progressing", progressing, progressing ? plan.reason : "Idle", plan.message);
  conditions = plan.degraded
    ? set(conditions, "Degraded", true, plan.reason, plan.message)
    : set(
        conditions,
        "Degraded",
        plan.phase === "Failed",
        plan.phase === "Failed" ? plan.reason : "AsExpected",
        plan.phase === "Failed" ? plan.message : "",
      );
  conditions = set(
    conditions,
    "CheckpointHealthy",
    checkpointFailure === undefined,
    checkpointFailure === undefined ? "CheckpointsCompleting" : "CheckpointsFailing",
    checkpointFailure ??
      // No checkpoint id here: it would make every checkpoint rewrite the condition.
      (old.latestCheckpoint ? "checkpoints are completing" : "no checkpoint yet"),
  );

  return {
    ...old,
    phase: plan.phase,
    observedGeneration: generation,
    parallelism: plan.parallelism,
    epoch: plan.epoch,
    restarts: plan.restarts,
    checkpointCounts: old.checkpointCounts ?? { completed: 0, failed: 0 },
    ...(plan.restoredFrom && {
      lastRestore: { checkpointId: plan.restoredFrom.checkpointId, path: plan.restoredFrom.manifestKey, at },
    }),
    conditions,
    ...(plan.reconciled && { lastReconciledSpec: serialiseSpec(job.spec) }),
  };
}

/** Sets one condition, keeping lastTransitionTime when its status did not change. */
export function upsertCondition(
  conditions: Condition[],
  next: Omit<Condition, "lastTransitionTime">,
  at: string,
): Condition[] {
  const previous = conditions.find((condition) => condition.type === next.type);
  const lastTransitionTime = previous && previous.status === next.status ? previous.lastTransitionTime : at;
  const updated: Condition = { ...next, lastTransitionTime };
  return previous
    ? conditions.map((condition) => (condition.type === next.type ? updated : condition))
    : [...conditions, updated];
}

export type RecordEvent = Extract<Action, { type: "RecordEvent" }>;

const warning = (reason: string, message: string, aggregate = false): RecordEvent => ({
  type: "RecordEvent",
  eventType: "Warning",
  reason,
  message,
  ...(aggregate && { aggregate }),
});

/**
 * The Events a pass records besides the plan's own: each checkpoint passed over as not restorable
 * (aggregated), and one per status change a person should see, a new phase or a new reason to be
 * degraded, unless the plan already records one for it.
 */
export function statusEvents(observed: Observed, plan: Plan): RecordEvent[] {
  const old = observed.job.status ?? {};
  const events = (observed.skippedCheckpoints ?? []).map(({ checkpointId, reason }) =>
    warning("CheckpointSkipped", `checkpoint ${checkpointId} is not restorable: ${reason}`, true),
  );
  const wasDegraded = old.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
  const planned = plan.actions.some((action) => action.type === "RecordEvent");
  if (plan.degraded && wasDegraded?.reason !== plan.reason) {
    events.push(warning(plan.reason, plan.message));
  } else if (!plan.degraded && plan.phase !== old.phase && !planned) {
    const eventType = plan.phase === "Failed" ? "Warning" : "Normal";
    events.push({ type: "RecordEvent", eventType, reason: plan.reason, message: plan.message });
  }
  return events;
}

/**
 * A spec the CRD let through but the operator cannot use (an older CRD installed): Degraded with the
 * reason and one Warning, once per generation; null when this generation was already refused.
 */
export function refusal(
  job: Pick<StreamJob, "metadata" | "status">,
  error: string,
  now: number,
): { conditions: Condition[]; event: RecordEvent } | null {
  const generation = job.metadata.generation ?? 0;
  const conditions = job.status?.conditions ?? [];
  const refused = conditions.some(
    (c) => c.type === "Degraded" && c.reason === "SpecInvalid" && c.observedGeneration === generation,
  );
  if (refused) return null;
  const degraded = { type: "Degraded", status: "True" as const, reason: "SpecInvalid", message: error };
  return {
    conditions: upsertCondition(
      conditions,
      { ...degraded, observedGeneration: generation },
      new Date(now).toISOString(),
    ),
    event: warning("SpecInvalid", error),
  };
}
