import { StreamJobStatus } from "../../../src/api/streamjob.js";
import type { Observed, Plan } from "../../../src/operator/planner.js";
import { serialiseSpec } from "../../../src/operator/spec-changes.js";
import { nextStatus, refusal, statusEvents, upsertCondition } from "../../../src/operator/status.js";
import { STORAGE, streamJob } from "./fixtures.js";

const T0 = Date.parse("2025-01-01T12:00:00Z");
const T1 = T0 + 60_000;

const running: Plan = {
  actions: [],
  phase: "Running",
  epoch: 1,
  parallelism: 1,
  restarts: 0,
  reason: "Running",
  message: "1 TaskManagers running epoch 1",
  progressing: false,
  degraded: false,
  reconciled: true,
};
const restarting: Plan = {
  ...running,
  phase: "Restarting",
  epoch: 2,
  restarts: 1,
  reason: "Restarting",
  message: "TaskManager orders-tm-1-0 failed; restarting from checkpoint 7",
  restoredFrom: { checkpointId: 7, manifestKey: "checkpoints/default/orders/chk-7/_metadata" },
  requeueAfterMs: 60_000,
  progressing: true,
  reconciled: false,
};
const degraded: Plan = {
  ...running,
  reason: "StorageSecretInvalid",
  message: 'missing key "secretKey"',
  degraded: true,
  requeueAfterMs: 1_000,
  reconciled: false,
};

const conditionOf = (status: StreamJobStatus, type: string) =>
  status.conditions?.find((condition) => condition.type === type);

describe("nextStatus", () => {
  it.each([
    ["running", running, { Ready: "True", Progressing: "False", Degraded: "False" }],
    ["restarting", restarting, { Ready: "False", Progressing: "True", Degraded: "False" }],
    ["degraded", degraded, { Ready: "False", Progressing: "False", Degraded: "True" }],
    [
      // Nothing to requeue for: the coordinator wakes the job when the savepoint is done.
      "taking a savepoint",
      { ...running, reason: "TakingSavepoint", progressing: true, reconciled: false } as Plan,
      { Ready: "True", Progressing: "True", Degraded: "False" },
    ],
    [
      "failed",
      { ...running, phase: "Failed", reason: "MaxRestartsReached" } as Plan,
      { Ready: "False", Progressing: "False", Degraded: "True" },
    ],
  ])("%s: conditions, valid against the status schema", (_title, plan, expected) => {
    const status = nextStatus({ job: streamJob(), plan, now: T0 });
    expect(StreamJobStatus.parse(status)).toEqual(status);
    for (const [type, value] of Object.entries(expected))
      expect(conditionOf(status, type)?.status).toBe(value);
    expect(status.phase).toBe(plan.phase);
    expect(status.observedGeneration).toBe(1);
  });

  it("records the restore, the new epoch and restarts, and keeps the last reconciled spec while restarting", () => {
    const job = streamJob();
    job.status = {
      lastReconciledSpec: "old",
      latestCheckpoint: {
        id: 7,
        path: "p/_metadata",
        completedAt: "2025-01-01T11:59:00Z",
        durationMs: 5,
        sizeBytes: 9,
      },
    };
    const status = nextStatus({ job, plan: restarting, now: T0 });
    expect(status).toMatchObject({
      epoch: 2,
      restarts: 1,
      lastRestore: {
        checkpointId: 7,
        path: "checkpoints/default/orders/chk-7/_metadata",
        at: "2025-01-01T12:00:00.000Z",
      },
      lastReconciledSpec: "old",
      latestCheckpoint: { id: 7 },
    });
  });

  it("stores the spec once the plan reconciled it", () => {
    const job = streamJob({ parallelism: 2 });
    expect(nextStatus({ job, plan: running, now: T0 }).lastReconciledSpec).toBe(serialiseSpec(job.spec));
  });

  it("keeps lastTransitionTime while a condition's status holds and moves it when it flips", () => {
    const job = streamJob();
    job.status = nextStatus({ job, plan: running, now: T0 });
    const still = nextStatus({ job, plan: { ...running, message: "other" }, now: T1 });
    expect(conditionOf(still, "Ready")?.lastTransitionTime).toBe(new Date(T0).toISOString());
    expect(conditionOf(still, "Ready")?.message).toBe("other");
    const flipped = nextStatus({ job, plan: degraded, now: T1 });
    expect(conditionOf(flipped, "Ready")?.lastTransitionTime).toBe(new Date(T1).toISOString());
    expect(conditionOf(flipped, "Degraded")).toMatchObject({
      status: "True",
      reason: "StorageSecretInvalid",
      message: 'missing key "secretKey"',
    });
  });

  it("CheckpointHealthy turns False with the failure manager's reason", () => {
    const status = nextStatus({
      job: streamJob(),
      plan: running,
      now: T0,
      checkpointFailure: "3 checkpoints declined in a row",
    });
    expect(conditionOf(status, "CheckpointHealthy")).toMatchObject({
      status: "False",
      reason: "CheckpointsFailing",
      message: "3 checkpoints declined in a row",
    });
  });
});

describe("statusEvents", () => {
  const observedWith = (status: StreamJobStatus, extra: Partial<Observed> = {}): Observed => {
    const job = streamJob();
    job.status = status;
    return {
      job,
      pods: [],
      tokenSecretExists: true,
      storage: { ok: true, ...STORAGE },
      latestCompleted: null,
      now: T0,
      ...extra,
    };
  };
  const degradedSince = (reason: string) =>
    nextStatus({ job: streamJob(), plan: { ...degraded, reason }, now: T0 });
  const restartingWithEvent: Plan = {
    ...restarting,
    actions: [{ type: "RecordEvent", eventType: "Warning", reason: "Restarting", message: "" }],
  };
  const summary = (events: ReturnType<typeof statusEvents>) =>
    events.map((event) => `${event.eventType} ${event.reason}${event.aggregate ? " (aggregated)" : ""}`);

  it.each([
    ["a new phase", { phase: "Pending" } as StreamJobStatus, running, ["Normal Running"]],
    ["the same phase", { phase: "Running" } as StreamJobStatus, running, []],
    [
      "Failed",
      { phase: "Running" } as StreamJobStatus,
      { ...running, phase: "Failed", reason: "MaxRestartsReached" } as Plan,
      ["Warning MaxRestartsReached"],
    ],
    [
      "a phase change the plan records an event for",
      { phase: "Running" } as StreamJobStatus,
      restartingWithEvent,
      [],
    ],
    [
      "degraded for a new reason",
      degradedSince("StorageUnavailable"),
      degraded,
      ["Warning StorageSecretInvalid"],
    ],
    ["degraded for the same reason", degradedSince("StorageSecretInvalid"), degraded, []],
  ])("%s", (_title, status, plan, expected) => {
    expect(summary(statusEvents(observedWith(status), plan))).toEqual(expected);
  });

  it("one aggregated Warning per checkpoint passed over", () => {
    const skippedCheckpoints = [{ checkpointId: 9, reason: "part x is missing" }];
    const events = statusEvents(observedWith({ phase: "Running" }, { skippedCheckpoints }), running);
    expect(summary(events)).toEqual(["Warning CheckpointSkipped (aggregated)"]);
    expect(events[0]?.message).toBe("checkpoint 9 is not restorable: part x is missing");
  });
});

describe("refusal", () => {
  it("Degraded SpecInvalid with one Warning per generation", () => {
    const job = streamJob({}, { generation: 3 });
    const first = refusal(job, "spec.parallelism: expected int", T0);
    expect(first?.event).toMatchObject({ eventType: "Warning", reason: "SpecInvalid" });
    expect(first?.conditions).toEqual([
      expect.objectContaining({
        type: "Degraded",
        status: "True",
        reason: "SpecInvalid",
        observedGeneration: 3,
      }),
    ]);
    job.status = { conditions: first!.conditions };
    expect(refusal(job, "spec.parallelism: expected int", T1)).toBeNull();
    job.metadata.generation = 4;
    expect(refusal(job, "spec.parallelism: expected int", T1)?.conditions[0]?.observedGeneration).toBe(4);
  });
});

describe("upsertCondition", () => {
  it("appends a new type and replaces an existing one without duplicating it", () => {
    const at = "2025-01-01T12:00:00.000Z";
    const one = upsertCondition([], { type: "Ready", status: "True", reason: "Running", message: "" }, at);
    const two = upsertCondition(
      one,
      { type: "Ready", status: "False", reason: "Restarting", message: "" },
      "2025-01-01T12:01:00.000Z",
    );
    expect(two).toHaveLength(1);
    expect(two[0]).toMatchObject({ status: "False", lastTransitionTime: "2025-01-01T12:01:00.000Z" });
  });
});
