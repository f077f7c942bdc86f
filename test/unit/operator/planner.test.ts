import type { StreamJobSpecInput, StreamJobStatus } from "../../../src/api/streamjob.js";
import {
  plan,
  type Action,
  type Observed,
  type ObservedPod,
  type Plan,
} from "../../../src/operator/planner.js";
import { serialiseSpec } from "../../../src/operator/spec-changes.js";
import { STORAGE, streamJob } from "./fixtures.js";

const NOW = Date.parse("2025-01-01T12:00:00Z");
const CHK_7 = { checkpointId: 7, manifestKey: "checkpoints/default/orders/chk-7/_metadata" };

function pod(epoch: number, taskIndex: number, overrides: Partial<ObservedPod> = {}): ObservedPod {
  return {
    name: `orders-tm-${epoch}-${taskIndex}`,
    epoch,
    taskIndex,
    phase: "Running",
    ready: true,
    readySince: NOW - 120_000,
    createdAt: NOW - 120_000,
    deleting: false,
    ...overrides,
  };
}

/** A job deployed at `epoch` with `parallelism` tasks whose spec was fully reconciled. */
function observed(
  options: {
    spec?: Partial<StreamJobSpecInput>;
    reconciled?: Partial<StreamJobSpecInput>;
    status?: Partial<StreamJobStatus>;
    pods?: ObservedPod[];
  } & Partial<Omit<Observed, "job" | "pods">> = {},
): Observed {
  const { spec, reconciled, status, pods, ...rest } = options;
  const job = streamJob(spec, { generation: 2 });
  const last = streamJob(reconciled ?? spec).spec;
  job.status = {
    phase: "Running",
    epoch: 1,
    parallelism: 1,
    restarts: 0,
    lastReconciledSpec: serialiseSpec(last),
    ...status,
  };
  return {
    job,
    pods: pods ?? [pod(1, 0)],
    tokenSecretExists: true,
    storage: { ok: true, ...STORAGE },
    latestCompleted: CHK_7,
    now: NOW,
    ...rest,
  };
}

function summary(result: Plan): string[] {
  return result.actions.map((action: Action) => {
    switch (action.type) {
      case "CreatePod":
        return `CreatePod ${action.pod.metadata?.name}`;
      case "DeletePod":
        return `DeletePod ${action.name}`;
      case "StartCoordinator":
        return `StartCoordinator ${action.epoch}/${action.parallelism}`;
      case "TakeSnapshot":
        return `TakeSnapshot ${action.kind} ${action.purpose}`;
      case "CreateTokenSecret":
        return `CreateTokenSecret ${action.name}`;
      default:
        return action.type;
    }
  });
}

function restoreOf(action: Action | undefined): unknown {
  if (action?.type !== "CreatePod") return undefined;
  const config = action.pod.spec?.containers[0]?.env?.find(
    (env) => env.name === "STREAMJOB_TASKMANAGER_CONFIG",
  );
  return (JSON.parse(config?.value ?? "{}") as { restoreFrom?: unknown }).restoreFrom;
}

describe("plan", () => {
  const fresh = (extra: Partial<Observed> = {}) => {
    const base = observed({ pods: [], tokenSecretExists: false, latestCompleted: null, ...extra });
    delete base.job.status;
    return base;
  };

  it("first deploy: token Secret, then one pod per task at epoch 1, fresh", () => {
    const job = fresh();
    job.job.spec.parallelism = 2;
    const result = plan(job);
    expect(summary(result)).toEqual([
      "CreateTokenSecret orders-token",
      "CreatePod orders-tm-1-0",
      "CreatePod orders-tm-1-1",
    ]);
    expect(result).toMatchObject({
      phase: "Pending",
      epoch: 1,
      parallelism: 2,
      restarts: 0,
      reconciled: true,
    });
    expect(restoreOf(result.actions[1])).toBeUndefined();
    // Looks again when the new pods would count as failed; their events wake it before.
    expect(result).toMatchObject({ progressing: true, requeueAfterMs: 60_000 });
  });

  it("first deploy with spec.restoreFrom restores from the resolved target", () => {
    const result = plan(fresh({ initialRestore: CHK_7 }));
    expect(restoreOf(result.actions.find((action) => action.type === "CreatePod"))).toEqual({
      ...CHK_7,
      bucket: "streamjob",
    });
    expect(result.restoredFrom).toEqual(CHK_7);
  });

  it("first deploy with a spec.restoreFrom that is not in storage: Degraded, nothing created", () => {
    const job = fresh({ initialRestore: null });
    job.job.spec.restoreFrom = { checkpointId: 99 };
    const result = plan(job);
    expect(result.actions).toEqual([]);
    expect(result).toMatchObject({ degraded: true, reason: "RestoreTargetNotFound" });
    expect(result.message).toContain("checkpoint 99");
  });

  it("steady state: only keeps the coordinator running", () => {
    const result = plan(observed());
    expect(summary(result)).toEqual(["StartCoordinator 1/1"]);
    expect(result).toMatchObject({ phase: "Running", epoch: 1, reconciled: true, degraded: false });
    expect(result.requeueAfterMs).toBeUndefined();
  });

  it("deletes pods of an older epoch and leaves pods already being deleted alone", () => {
    const result = plan(
      observed({ status: { epoch: 2 }, pods: [pod(1, 0), pod(1, 1, { deleting: true }), pod(2, 0)] }),
    );
    expect(summary(result)).toEqual(["DeletePod orders-tm-1-0", "StartCoordinator 2/1"]);
  });

  it("never reuses an epoch: pods newer than status.epoch (a lost status write) are the current ones", () => {
    const result = plan(observed({ status: { epoch: 1 }, pods: [pod(1, 0), pod(2, 0)] }));
    expect(summary(result)).toEqual(["DeletePod orders-tm-1-0", "StartCoordinator 2/1"]);
    expect(result.epoch).toBe(2);
  });

  const failures: Array<[string, ObservedPod[], RegExp]> = [
    [
      "a Failed pod",
      [pod(1, 0, { phase: "Failed", ready: false, terminated: { exitCode: 1, reason: "Error" } })],
      /orders-tm-1-0 failed \(exit code 1, Error\)/,
    ],
    [
      "a pod the kernel killed over its memory limit (the kubelet says OOMKilled)",
      [pod(1, 0, { phase: "Failed", ready: false, terminated: { exitCode: 137, reason: "OOMKilled" } })],
      /orders-tm-1-0 was killed by the kernel for going over its memory limit \(raise spec\.template\.resources\.limits\.memory\) \(exit code 137, OOMKilled\)/,
    ],
    [
      "a pod killed by its liveness probe (as the kubelet reports it: 137, Error)",
      [pod(1, 0, { phase: "Failed", ready: false, terminated: { exitCode: 137, reason: "Error" } })],
      /orders-tm-1-0 was killed by its liveness probe or a SIGKILL \(exit code 137, Error\)/,
    ],
    ["a deleted pod", [], /TaskManager 0 deleted/],
    [
      "a pod unready past the threshold",
      [pod(1, 0, { ready: false, readySince: NOW - 61_000 })],
      /not ready for 61s/,
    ],
  ];

  it.each(failures)("%s restarts the whole job from the latest checkpoint", (_title, pods, message) => {
    const result = plan(observed({ pods, status: { restarts: 2 } }));
    expect(result).toMatchObject({ phase: "Restarting", epoch: 2, restarts: 3, restoredFrom: CHK_7 });
    expect(result.message).toMatch(message);
    expect(summary(result)).toEqual([
      "StopCoordinator",
      ...pods.map((failed) => `DeletePod ${failed.name}`),
      "RecordEvent",
      "CreatePod orders-tm-2-0",
    ]);
    expect(restoreOf(result.actions.at(-1))).toEqual({ ...CHK_7, bucket: "streamjob" });
  });

  it("a pod unready within the threshold is waited for until its deadline, then restarted", () => {
    const pods = [
      pod(1, 0, { ready: false, readySince: NOW - 10_000 }),
      pod(1, 1, { ready: false, readySince: NOW - 25_000 }),
      pod(1, 2),
    ];
    const status = { parallelism: 3 };
    const result = plan(observed({ pods, status }));
    expect(summary(result)).toEqual([]);
    expect(result).toMatchObject({ phase: "Running", epoch: 1, reason: "Starting", progressing: true });
    // No event marks a pod staying unready: the earliest readiness deadline is the one to look at.
    expect(result.requeueAfterMs).toBe(35_000);
    const atDeadline = plan(observed({ pods, status, now: NOW + 35_000 }));
    expect(atDeadline).toMatchObject({ phase: "Restarting", epoch: 2, reason: "Restarting" });
    expect(atDeadline.message).toMatch(/orders-tm-1-1 not ready for 60s/);
  });

  const starting = (taskIndex: number, podIP?: string) =>
    pod(1, taskIndex, { ready: false, readySince: NOW - 10_000, ...(podIP && { podIP }) });
  const peersOf = (...urls: string[]) => ({
    epoch: 1,
    peers: urls.map((url, taskIndex) => ({ taskIndex, url })),
  });
  it.each([
    [
      "every TaskManager has an IP, none is ready: to each, within a second",
      [starting(0, "10.0.0.4"), starting(1, "fd00::5")],
      peersOf("http://10.0.0.4:8080", "http://[fd00::5]:8080"),
      1_000,
    ],
    [
      "one is ready already, the other has an IP: to each again, within a second",
      [pod(1, 0, { podIP: "10.0.0.4" }), starting(1, "10.0.0.5")],
      peersOf("http://10.0.0.4:8080", "http://10.0.0.5:8080"),
      1_000,
    ],
    [
      "the readiness deadline comes first: looks again then",
      [starting(0, "10.0.0.4"), pod(1, 1, { ready: false, podIP: "10.0.0.5", readySince: NOW - 59_700 })],
      peersOf("http://10.0.0.4:8080", "http://10.0.0.5:8080"),
      300,
    ],
    ["one TaskManager has no IP yet: not yet", [starting(0, "10.0.0.4"), starting(1)], undefined, 50_000],
    [
      "all are ready: never",
      [pod(1, 0, { podIP: "10.0.0.4" }), pod(1, 1, { podIP: "10.0.0.5" })],
      undefined,
      undefined,
    ],
  ])("peers while the TaskManagers start: %s", (_title, pods, peers, requeueAfterMs) => {
    const result = plan(observed({ pods, status: { parallelism: 2 } }));
    const sent = result.actions.filter((action) => action.type === "SendPeers");
    expect(sent).toEqual(peers ? [{ type: "SendPeers", ...peers }] : []);
    expect(result.requeueAfterMs).toBe(requeueAfterMs);
  });

  it("after a failure, Ready keeps naming it while the new TaskManagers start", () => {
    const failure =
      "TaskManager orders-tm-1-0 failed (exit code 1, Error): Kafka topic x: cannot read its partitions; restarting from checkpoint 7";
    const pods = [pod(2, 0, { ready: false, readySince: NOW }), pod(2, 1), pod(2, 2)];
    const conditions = [
      {
        type: "Ready",
        status: "False" as const,
        reason: "Restarting",
        message: failure,
        lastTransitionTime: "2026-12-01T00:00:00Z",
      },
    ];
    const status = { parallelism: 3, epoch: 2, phase: "Restarting" as const, restarts: 1, conditions };
    const result = plan(observed({ pods, status }));
    expect(result).toMatchObject({ phase: "Restarting", reason: "Restarting" });
    expect(result.message).toBe(`${failure}; waiting for 1 of 3 TaskManagers to become ready`);
    // The next pass does not stack the waiting part.
    const again = plan(
      observed({ pods, status: { ...status, conditions: [{ ...conditions[0]!, message: result.message }] } }),
    );
    expect(again.message).toBe(result.message);
  });

  it("asks for a requeue only at a deadline: never to poll for pods or snapshots", () => {
    const noRequeue: Array<[string, Plan]> = [
      ["running", plan(observed())],
      ["upgrade, savepoint pending", plan(observed({ spec: { image: "x:2" }, reconciled: {} }))],
      [
        "suspend, savepoint pending",
        plan(
          observed({
            spec: { suspend: true },
            reconciled: {},
            snapshot: { purpose: "suspend:2", state: "pending" },
          }),
        ),
      ],
      ["savepointNonce, pending", plan(observed({ spec: { savepointNonce: "n1" }, reconciled: {} }))],
      ["suspended", plan(observed({ spec: { suspend: true }, status: { phase: "Suspended" }, pods: [] }))],
    ];
    for (const [title, result] of noRequeue)
      expect([title, result.requeueAfterMs]).toEqual([title, undefined]);
    expect(noRequeue.map(([, result]) => result.progressing)).toEqual([false, true, true, true, false]);
  });

  it.each([
    // restarts so far, age of the epoch's pods, remaining wait (initial 1s, max 1m, doubling)
    [0, 500, 500],
    [3, 5_000, 3_000],
    [10, 30_000, 30_000],
  ])("after %d restarts with pods %dms old, waits %dms before restarting", (restarts, age, wait) => {
    const failed = pod(1, 0, { phase: "Failed", ready: false, createdAt: NOW - age });
    const result = plan(
      observed({ pods: [failed], status: { restarts }, spec: { restart: { maxRestarts: 20 } } }),
    );
    expect(result).toMatchObject({ phase: "Restarting", epoch: 1, restarts, reason: "RestartBackoff" });
    expect(result.requeueAfterMs).toBe(wait);
    expect(result.message).toContain(`restarting at ${new Date(NOW + wait).toISOString()}`);
    expect(summary(result)).toEqual(["StopCoordinator"]);
  });

  it("past maxRestarts the job is Failed with the reason and its pods kept for their logs", () => {
    const failed = pod(1, 0, { phase: "Failed", ready: false });
    const result = plan(
      observed({ pods: [failed], status: { restarts: 3 }, spec: { restart: { maxRestarts: 3 } } }),
    );
    expect(result).toMatchObject({ phase: "Failed", reason: "MaxRestartsReached", epoch: 1 });
    expect(result.message).toContain("maxRestarts is 3");
    expect(summary(result)).toEqual(["StopCoordinator", "RecordEvent"]);
  });

  it("a TaskManager's termination message is part of the failure it restarts for", () => {
    const failed = pod(1, 0, {
      phase: "Failed",
      ready: false,
      createdAt: NOW - 600_000,
      terminated: { exitCode: 1, reason: "Error", message: "the job failed: disk full" },
    });
    const result = plan(observed({ pods: [failed] }));
    expect(result).toMatchObject({ phase: "Restarting", restarts: 1 });
    const event = result.actions.find((action) => action.type === "RecordEvent");
    expect(event).toMatchObject({
      reason: "Restarting",
      message: expect.stringContaining(
        "TaskManager orders-tm-1-0 failed (exit code 1, Error): the job failed: disk full; restarting from checkpoint 7",
      ),
    });
  });

  it("a configuration error fails the job at once, saying why, with no restart and its pods kept", () => {
    const why = 'refusing to start: configuration error: job.name "nope": not a built-in job';
    const misconfigured = pod(1, 0, {
      phase: "Failed",
      ready: false,
      terminated: { exitCode: 78, reason: "Error", message: why },
    });
    const stillStarting = pod(1, 1, { phase: "Running", ready: false });
    const result = plan(observed({ pods: [stillStarting, misconfigured], spec: { parallelism: 2 } }));
    expect(result).toMatchObject({ phase: "Failed", reason: "ConfigurationError", restarts: 0, epoch: 1 });
    expect(result.message).toContain(`TaskManager orders-tm-1-0 failed (exit code 78, Error): ${why}`);
    expect(result.message).toContain("change the spec to redeploy");
    expect(summary(result)).toEqual(["StopCoordinator", "RecordEvent"]);
    expect(result.actions[1]).toMatchObject({ eventType: "Warning", reason: "ConfigurationError" });

    // The next pass keeps it Failed: nothing is created or deleted until the spec changes.
    const condition = {
      type: "Degraded",
      status: "True" as const,
      reason: result.reason,
      message: result.message,
      lastTransitionTime: "2025-01-01T11:00:00Z",
    };
    const next = plan(
      observed({
        pods: [stillStarting, misconfigured],
        spec: { parallelism: 2 },
        status: { phase: "Failed", conditions: [condition] },
      }),
    );
    expect(next).toMatchObject({ phase: "Failed", reason: "ConfigurationError", message: result.message });
    expect(summary(next)).toEqual([]);
    const fixed = plan(
      observed({
        pods: [stillStarting, misconfigured],
        spec: { parallelism: 2, job: { name: "sequence" } },
        reconciled: { parallelism: 2, job: { name: "nope" } },
        status: { phase: "Failed", conditions: [condition] },
      }),
    );
    expect(fixed).toMatchObject({ phase: "Restarting", epoch: 2, restarts: 0 });
  });

  it("a Failed job keeps its reason; raising maxRestarts alone redeploys it", () => {
    const failed = pod(1, 0, { phase: "Failed", ready: false });
    const why = {
      type: "Degraded",
      status: "True" as const,
      reason: "MaxRestartsReached",
      message: "TaskManager orders-tm-1-0 failed; restarted 3 times, maxRestarts is 3",
      lastTransitionTime: "2025-01-01T11:00:00Z",
    };
    const still = plan(observed({ pods: [failed], status: { phase: "Failed", conditions: [why] } }));
    expect(still).toMatchObject({ phase: "Failed", reason: why.reason, message: why.message });
    const raised = plan(
      observed({
        pods: [failed],
        status: { phase: "Failed", restarts: 3, conditions: [why] },
        spec: { restart: { maxRestarts: 5 } },
        reconciled: {},
      }),
    );
    expect(raised).toMatchObject({ phase: "Restarting", epoch: 2, restarts: 0, restoredFrom: CHK_7 });
  });

  it("a Failed job stays failed until the spec changes", () => {
    const failed = pod(1, 0, { phase: "Failed", ready: false });
    expect(summary(plan(observed({ pods: [failed], status: { phase: "Failed" } })))).toEqual([]);
    const changed = plan(
      observed({
        pods: [failed],
        status: { phase: "Failed", restarts: 3 },
        spec: { image: "x:2" },
        reconciled: {},
      }),
    );
    expect(changed).toMatchObject({ phase: "Restarting", epoch: 2, restarts: 0, restoredFrom: CHK_7 });
  });

  it.each([
    ["storage Secret missing", { ok: false as const, message: "Secret streamjob-storage not found" }],
    [
      "storage Secret without a key",
      { ok: false as const, message: 'Secret streamjob-storage is invalid: missing key "secretKey"' },
    ],
  ])("%s: Degraded, no pod deleted, retried with backoff", (_title, storage) => {
    const failed = pod(1, 0, { phase: "Failed", ready: false });
    const first = plan(observed({ storage, pods: [failed] }));
    expect(first.actions).toEqual([]);
    expect(first).toMatchObject({
      degraded: true,
      reason: "StorageSecretInvalid",
      message: storage.message,
      requeueAfterMs: 1_000,
    });
    // Degraded for 20s: the next retry waits 20s; for an hour, the backoff maximum of 1m.
    expect(plan(observed({ storage, degradedSince: NOW - 20_000 })).requeueAfterMs).toBe(20_000);
    expect(plan(observed({ storage, degradedSince: NOW - 3_600_000 })).requeueAfterMs).toBe(60_000);
  });

  it("an image that cannot be pulled: Degraded, pods kept, no restart counted", () => {
    const result = plan(
      observed({
        pods: [
          pod(1, 0, {
            phase: "Pending",
            ready: false,
            waitingReason: "ImagePullBackOff",
            readySince: NOW - 600_000,
          }),
        ],
      }),
    );
    expect(result).toMatchObject({ degraded: true, reason: "ImageNotStarting", restarts: 0 });
    expect(summary(result)).toEqual([]);
  });

  it("suspend while running: savepoint first, then pods deleted and Suspended", () => {
    const suspend = { spec: { suspend: true }, reconciled: {} };
    const asking = plan(observed(suspend));
    expect(summary(asking)).toEqual(["StartCoordinator 1/1", "TakeSnapshot savepoint suspend:2"]);
    expect(asking.reconciled).toBe(false);
    const pending = plan(observed({ ...suspend, snapshot: { purpose: "suspend:2", state: "pending" } }));
    expect(summary(pending)).toEqual([]);
    const done = plan(
      observed({ ...suspend, snapshot: { purpose: "suspend:2", state: "completed", target: CHK_7 } }),
    );
    expect(summary(done)).toEqual(["StopCoordinator", "DeletePod orders-tm-1-0"]);
    expect(done).toMatchObject({ phase: "Suspended", parallelism: 0, reconciled: true });
  });

  it("resume: redeploys at a new epoch from the latest checkpoint or savepoint", () => {
    const result = plan(
      observed({
        spec: {},
        reconciled: { suspend: true },
        status: { phase: "Suspended", parallelism: 0 },
        pods: [],
      }),
    );
    expect(summary(result)).toEqual(["CreatePod orders-tm-2-0"]);
    expect(result).toMatchObject({ epoch: 2, restoredFrom: CHK_7, reason: "Resuming" });
  });

  it.each([
    ["scale", { parallelism: 2 }, "checkpoint", ["CreatePod orders-tm-2-0", "CreatePod orders-tm-2-1"]],
    ["upgrade", { image: "x:2" }, "savepoint", ["CreatePod orders-tm-2-0"]],
  ] as const)("%s: snapshot while running, then redeploy from it", (kind, spec, snapshotKind, created) => {
    const asking = plan(observed({ spec, reconciled: {} }));
    expect(summary(asking)).toEqual(["StartCoordinator 1/1", `TakeSnapshot ${snapshotKind} ${kind}:2`]);
    expect(asking.epoch).toBe(1);
    const savepoint = { checkpointId: 8, manifestKey: "checkpoints/default/orders/savepoint-8/_metadata" };
    const done = plan(
      observed({
        spec,
        reconciled: {},
        snapshot: { purpose: `${kind}:2`, state: "completed", target: savepoint },
      }),
    );
    expect(summary(done)).toEqual(["StopCoordinator", "DeletePod orders-tm-1-0", ...created]);
    expect(done).toMatchObject({
      epoch: 2,
      restoredFrom: savepoint,
      reconciled: true,
      parallelism: created.length,
    });
  });

  it("a checkpoint newer than the upgrade's savepoint wins: it holds the newest state", () => {
    const savepoint = { checkpointId: 5, manifestKey: "checkpoints/default/orders/savepoint-5/_metadata" };
    const result = plan(
      observed({
        spec: { image: "x:2" },
        reconciled: {},
        snapshot: { purpose: "upgrade:2", state: "completed", target: savepoint },
      }),
    );
    expect(result.restoredFrom).toEqual(CHK_7);
  });

  it("the coordinator's failure manager giving up restarts the job like a failed pod", () => {
    const result = plan(observed({ coordinatorFailure: "4 consecutive checkpoints failed" }));
    expect(result).toMatchObject({ phase: "Restarting", epoch: 2, restarts: 1, restoredFrom: CHK_7 });
    expect(result.message).toMatch(/^4 consecutive checkpoints failed; restarting from checkpoint 7/);
    expect(summary(result)[0]).toBe("StopCoordinator");
  });

  it("upgrade of a job that is not running redeploys from the latest checkpoint without waiting", () => {
    const result = plan(
      observed({
        spec: { image: "x:2" },
        reconciled: {},
        pods: [pod(1, 0, { ready: false, readySince: NOW })],
      }),
    );
    expect(summary(result)).toEqual([
      "StopCoordinator",
      "DeletePod orders-tm-1-0",
      "CreatePod orders-tm-2-0",
    ]);
    expect(result.restoredFrom).toEqual(CHK_7);
  });

  it("savepointNonce: takes a savepoint and keeps running", () => {
    const spec = { savepointNonce: "n1" };
    expect(summary(plan(observed({ spec, reconciled: {} })))).toEqual([
      "StartCoordinator 1/1",
      "TakeSnapshot savepoint nonce:n1",
    ]);
    const done = plan(
      observed({
        spec,
        reconciled: {},
        snapshot: { purpose: "nonce:n1", state: "completed", target: CHK_7 },
      }),
    );
    expect(done).toMatchObject({
      phase: "Running",
      reconciled: true,
      message: "savepoint 7 taken",
      epoch: 1,
    });
  });
});
