// The coordinator loop with fake TaskManagers and an in-memory object store: the commit order,
// aborts and their causes, failure handling, prompt stops and retention, with real timers kept short
// (or a fake clock whose timers the test fires).
import { pino } from "pino";
import { manifestKey } from "../../../src/api/object-layout.js";
import {
  CheckpointCoordinator,
  type CheckpointOutcome,
  type CompletedCheckpoint,
} from "../../../src/coordinator/checkpoint-coordinator.js";
import { CheckpointIdCounter } from "../../../src/coordinator/checkpoint-id-counter.js";
import { latestCompletedCheckpoint } from "../../../src/coordinator/completed-checkpoints.js";
import {
  systemTimers,
  type Clock,
  type SnapshotStore,
  type Timers,
} from "../../../src/coordinator/interfaces.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { ObjectSnapshotStore } from "../../../src/storage/snapshot-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { FakeTaskManager } from "../support/fake-task-managers.js";
import { waitUntil } from "../support/wait.js";

const job = { namespace: "default", name: "orders" };
const storage = { bucket: "streamjob", basePrefix: "checkpoints" };
const realTime: Clock & Timers = { now: () => Date.now(), ...systemTimers };
type Aborted = Extract<CheckpointOutcome, { state: "aborted" }>;

interface Setup {
  coordinator: CheckpointCoordinator;
  tasks: FakeTaskManager[];
  objects: MemoryObjectStore;
  store: SnapshotStore;
  journal: string[];
  completed: CompletedCheckpoint[];
  aborted: Aborted[];
  restarts: string[];
}

function setup(
  options: {
    parallelism?: number;
    retained?: number;
    tolerableFailures?: number;
    onCompleted?: () => Promise<void>;
    /** Ids already used in storage, and which of those left a directory without a manifest. */
    storedIds?: number[];
    leftoverIds?: number[];
    objects?: MemoryObjectStore;
    /** Wraps the snapshot store, e.g. to make the manifest PUT fail. */
    wrapStore?: (store: SnapshotStore) => SnapshotStore;
    time?: Clock & Timers;
    timeoutMs?: number;
  } = {},
): Setup {
  const parallelism = options.parallelism ?? 3;
  const objects = options.objects ?? new MemoryObjectStore(storage.bucket);
  const snapshots = new ObjectSnapshotStore(objects, storage.basePrefix);
  const store = options.wrapStore?.(snapshots) ?? snapshots;
  const time = options.time ?? realTime;
  const journal: string[] = [];
  const tasks = Array.from(
    { length: parallelism },
    (_, i) => new FakeTaskManager(i, parallelism, 12, objects, journal),
  );
  const completed: CompletedCheckpoint[] = [];
  const aborted: Aborted[] = [];
  const restarts: string[] = [];
  const coordinator = new CheckpointCoordinator({
    job,
    epoch: 1,
    parallelism,
    maxParallelism: 12,
    storage,
    policy: { intervalMs: 20, timeoutMs: options.timeoutMs ?? 300, minPauseMs: 0, maxConcurrent: 1 },
    retained: options.retained ?? 2,
    tolerableFailures: options.tolerableFailures ?? 0,
    tasks,
    store,
    ids: CheckpointIdCounter.resume(null, options.storedIds ?? []),
    ...(options.leftoverIds && { leftoverIds: options.leftoverIds }),
    clock: time,
    timers: time,
    log: pino({ level: "silent" }),
    pollWaitMs: 100,
    events: {
      onCompleted: async (checkpoint) => {
        journal.push(`recorded ${checkpoint.checkpointId}`);
        await options.onCompleted?.();
        completed.push(checkpoint);
      },
      onAborted: (outcome) => aborted.push(outcome),
      onRestartRequested: (reason) => restarts.push(reason),
    },
  });
  return { coordinator, tasks, objects, store, journal, completed, aborted, restarts };
}

/** Every method of `store`, bound, to override some of them. */
function delegate(store: SnapshotStore): SnapshotStore {
  return {
    recordTrigger: (record) => store.recordTrigger(record),
    putManifest: (manifest) => store.putManifest(manifest),
    getManifest: (key) => store.getManifest(key),
    listCheckpoints: (j) => store.listCheckpoints(j),
    deleteObjects: (keys) => store.deleteObjects(keys),
    statObject: (key) => store.statObject(key),
  };
}

const key = (id: number) => manifestKey({ ...storage, ...job, kind: "checkpoint", checkpointId: id });

test("a checkpoint commits its manifest, is recorded, and only then are the tasks notified", async () => {
  const { coordinator, objects, journal, store } = setup();
  const outcome = await coordinator.triggerCheckpoint();
  expect(outcome).toMatchObject({
    state: "completed",
    checkpoint: { checkpointId: 1, kind: "checkpoint", epoch: 1 },
  });

  const manifest = await store.getManifest(key(1));
  expect(manifest?.parts.map((p) => p.taskIndex)).toEqual([0, 1, 2]);
  for (const part of manifest!.parts)
    expect(await objects.stat(part.key)).toEqual({ sizeBytes: part.sizeBytes });
  expect(outcome.state === "completed" && outcome.checkpoint.sizeBytes).toBe(
    manifest!.parts.reduce((s, p) => s + p.sizeBytes, 0),
  );

  const recordedAt = journal.indexOf("recorded 1");
  const notified = journal.filter((line) => line.endsWith("complete 1"));
  expect(notified).toHaveLength(3);
  for (const line of notified) expect(journal.indexOf(line)).toBeGreaterThan(recordedAt);
});

test("a completed checkpoint carries the dataflow's longest alignment and its backpressure, per stage and per task", async () => {
  const { coordinator, tasks } = setup();
  tasks[0]!.dataflow = { alignmentDurationMs: 12, backpressure: { source: 0.2, count: 0.7 } };
  tasks[1]!.dataflow = { alignmentDurationMs: 30, backpressure: { source: 0.4 } };
  const outcome = await coordinator.triggerCheckpoint();
  expect(outcome.state === "completed" && outcome.checkpoint).toMatchObject({
    alignmentDurationMs: 30,
    backpressure: { source: 0.4, count: 0.7 },
    backpressureByTask: { 0: { source: 0.2, count: 0.7 }, 1: { source: 0.4 } },
  });

  // A single-stage job's TaskManagers report neither.
  for (const task of tasks) task.dataflow = undefined;
  const next = await coordinator.triggerCheckpoint();
  expect(next.state).toBe("completed");
  for (const field of ["alignmentDurationMs", "backpressure", "backpressureByTask"])
    expect(next.state === "completed" && next.checkpoint).not.toHaveProperty(field);
});

test.each([
  ["declines", "decline", "declined", "task 1 declined checkpoint 1: state backend full"],
  [
    "cannot be reached while uploading",
    "unreachable",
    "task-unreachable",
    "task 1 failed during checkpoint 1: socket hang up",
  ],
  [
    "cannot be triggered",
    "unreachable-on-trigger",
    "task-unreachable",
    "triggering task 1 failed: connect ECONNREFUSED",
  ],
  [
    "answers the trigger with an error",
    "error-on-trigger",
    "task-error",
    "triggering task 1 failed: answered 409",
  ],
  ["never answers", "hang", "expired", "task(s) 1 did not acknowledge in time"],
  [
    "acknowledges for another epoch",
    "ack-wrong-epoch",
    "invalid-ack",
    "unexpected epoch 2 from task 1: checkpoint 1 belongs to epoch 1",
  ],
  [
    "sends an answer the coordinator trips over",
    "ack-malformed",
    "coordinator-error",
    "collecting task 1's answer failed:",
  ],
] as const)(
  "a task that %s aborts the checkpoint with its cause: no manifest, every task told to abort",
  async (_what, behaviour, cause, reason) => {
    const { coordinator, tasks, store, completed, aborted } = setup();
    tasks[1]!.behaviour = behaviour;
    const outcome = await coordinator.triggerCheckpoint();
    expect(outcome).toMatchObject({ state: "aborted", cause });
    expect(outcome.state === "aborted" && outcome.reason).toContain(reason);
    expect(aborted).toEqual([outcome]);
    expect(await store.getManifest(key(1))).toBeNull();
    expect(completed).toHaveLength(0);
    for (const task of tasks) expect(task.calls).toContain("abort 1");
    for (const task of tasks) expect(task.calls).not.toContain("complete 1");
  },
);

test("ids keep growing after aborts, and the next checkpoint after a failure completes", async () => {
  const { coordinator, tasks } = setup({ tolerableFailures: 5 });
  tasks[0]!.behaviour = "decline";
  expect((await coordinator.triggerCheckpoint()).state).toBe("aborted");
  tasks[0]!.behaviour = "ack";
  expect(await coordinator.triggerCheckpoint()).toMatchObject({
    state: "completed",
    checkpoint: { checkpointId: 2 },
  });
});

test("more consecutive failures than tolerated ask for a job restart", async () => {
  const { coordinator, tasks, restarts } = setup({ tolerableFailures: 1 });
  tasks[2]!.behaviour = "decline";
  await coordinator.triggerCheckpoint();
  expect(restarts).toHaveLength(0);
  await coordinator.triggerCheckpoint();
  expect(restarts).toHaveLength(1);
  expect(restarts[0]).toContain("2 consecutive checkpoints failed (tolerable: 1)");
});

test("when recording the checkpoint fails, notify-complete is withheld", async () => {
  const { coordinator, tasks, store } = setup({
    onCompleted: async () => {
      throw new Error("status patch conflict");
    },
  });
  const outcome = await coordinator.triggerCheckpoint();
  expect(outcome.state).toBe("completed");
  expect(await store.getManifest(key(1))).not.toBeNull();
  for (const task of tasks) expect(task.calls.some((c) => c.startsWith("complete"))).toBe(false);
});

test("retention keeps the newest `retained` checkpoints and removes the parts of aborted ones", async () => {
  const { coordinator, tasks, objects, store } = setup({ retained: 2, tolerableFailures: 10 });
  for (let i = 0; i < 4; i++) await coordinator.triggerCheckpoint();
  tasks[1]!.behaviour = "decline";
  await coordinator.triggerCheckpoint(); // 5 aborts after tasks 0 and 2 wrote their parts
  await coordinator.stop();

  const left = await store.listCheckpoints(job);
  expect(left.map((c) => c.checkpointId).sort()).toEqual([3, 4]);
  expect(await objects.list(`${storage.basePrefix}/default/orders/chk-5/`)).toEqual([]);
  const latest = await latestCompletedCheckpoint(store, job);
  expect(latest.latest?.checkpointId).toBe(4);
});

test.each([
  ["named as leftovers, they are deleted", [7], []],
  ["not named, they are kept (they might still be in flight)", undefined, ["task-0/part-0"]],
])("manifest-less directories found at resume: %s", async (_title, leftoverIds, remaining) => {
  const objects = new MemoryObjectStore(storage.bucket);
  const leftover = `${storage.basePrefix}/default/orders/chk-7/`;
  await objects.put(`${leftover}task-0/part-0`, Buffer.from("half a checkpoint"));
  const { coordinator } = setup({ objects, storedIds: [7], ...(leftoverIds && { leftoverIds }) });
  expect(await coordinator.triggerCheckpoint()).toMatchObject({ checkpoint: { checkpointId: 8 } });
  await coordinator.stop();
  expect((await objects.list(leftover)).map((k) => k.slice(leftover.length))).toEqual(remaining);
});

test("periodic checkpoints follow the interval until stopped", async () => {
  const { coordinator, completed } = setup();
  coordinator.start();
  await new Promise((r) => setTimeout(r, 400));
  await coordinator.stop();
  const ids = completed.map((c) => c.checkpointId);
  expect(ids.length).toBeGreaterThanOrEqual(3);
  expect(ids).toEqual([...ids].sort((a, b) => a - b));
  const count = completed.length;
  await new Promise((r) => setTimeout(r, 100));
  expect(completed).toHaveLength(count);
});

test("a manifest whose part disappeared is passed over for restore, with the reason", async () => {
  const { coordinator, objects, store } = setup();
  await coordinator.triggerCheckpoint();
  await coordinator.triggerCheckpoint();
  const manifest = await store.getManifest(key(2));
  await objects.delete([manifest!.parts[0]!.key]);
  const { latest, skipped } = await latestCompletedCheckpoint(store, job);
  expect(latest?.checkpointId).toBe(1);
  expect(skipped).toEqual([{ checkpointId: 2, reason: `part ${manifest!.parts[0]!.key} is missing` }]);
});

test("the id is in storage before any task is triggered, so a coordinator taking over never reuses it", async () => {
  const callsWhenStored: string[][] = [];
  const first: Setup = setup({
    wrapStore: (inner) => ({
      ...delegate(inner),
      recordTrigger: async (record) => {
        await inner.recordTrigger(record);
        callsWhenStored.push(first.tasks.flatMap((task) => task.calls));
      },
    }),
  });
  // Every task hangs: the operator is lost mid-checkpoint, before any task wrote a part.
  for (const task of first.tasks) task.behaviour = "hang";
  const pending = first.coordinator.triggerCheckpoint();
  await waitUntil(() => first.tasks.every((task) => task.calls.includes("trigger 1")));
  expect(callsWhenStored).toEqual([[]]);
  expect(await first.objects.list("checkpoints/default/orders/chk-1/task-")).toEqual([]);

  // What the next operator finds in storage while the first checkpoint is still in flight.
  const stored = (await first.store.listCheckpoints(job)).map((c) => c.checkpointId);
  expect(stored).toEqual([1]);
  const second = setup({ objects: first.objects, storedIds: stored });
  const outcome = await second.coordinator.triggerCheckpoint();
  expect(outcome).toMatchObject({ state: "completed", checkpoint: { checkpointId: 2 } });
  await first.coordinator.stop("the operator lost its lease");
  expect(await pending).toMatchObject({ state: "aborted", cause: "coordinator-stopped" });
  await second.coordinator.stop();
});

test("a trigger record that cannot be written aborts the checkpoint before any task hears of it", async () => {
  const { coordinator, tasks, aborted } = setup({
    wrapStore: (inner) => ({
      ...delegate(inner),
      recordTrigger: () => Promise.reject(new Error("503 SlowDown")),
    }),
  });
  const outcome = await coordinator.triggerCheckpoint();
  expect(outcome).toMatchObject({ state: "aborted", cause: "trigger-record-failed" });
  expect(outcome.state === "aborted" && outcome.reason).toBe(
    "recording checkpoint 1 in storage before triggering failed: 503 SlowDown",
  );
  expect(aborted).toHaveLength(1);
  for (const task of tasks) expect(task.calls).toEqual([]);
});

test("a manifest PUT that fails and left no manifest aborts with manifest-write-failed", async () => {
  const { coordinator, tasks, store } = setup({
    wrapStore: (inner) => ({
      ...delegate(inner),
      putManifest: () => Promise.reject(new Error("503 SlowDown")),
    }),
  });
  const outcome = await coordinator.triggerCheckpoint();
  expect(outcome).toMatchObject({ state: "aborted", cause: "manifest-write-failed" });
  expect(outcome.state === "aborted" && outcome.reason).toContain("503 SlowDown");
  expect(await store.getManifest(key(1))).toBeNull();
  for (const task of tasks) expect(task.calls).not.toContain("complete 1");
});

test("a checkpoint expires when the injected clock passes its deadline", async () => {
  const time = new FakeClock();
  const { coordinator, tasks } = setup({ time, timeoutMs: 60_000 });
  tasks[2]!.behaviour = "hang";
  const taken = coordinator.triggerCheckpoint();
  await waitUntil(() => tasks[2]!.calls.includes("result 1"));
  time.advance(59_999);
  await new Promise((r) => setTimeout(r, 20));
  expect(tasks[0]!.calls).not.toContain("abort 1");
  time.advance(1);
  expect(await taken).toMatchObject({ state: "aborted", cause: "expired" });
});

test("stopping cuts a pending checkpoint short: coordinator-stopped, no failure counted, no restart", async () => {
  const { coordinator, tasks, aborted, restarts } = setup({ tolerableFailures: 0 });
  tasks[1]!.behaviour = "hang";
  const taken = coordinator.triggerCheckpoint();
  await waitUntil(() => tasks[1]!.calls.includes("result 1"));
  await coordinator.stop("the StreamJob is being upgraded");
  expect(await taken).toMatchObject({
    state: "aborted",
    cause: "coordinator-stopped",
    reason: "the StreamJob is being upgraded",
  });
  expect(aborted.map((a) => a.cause)).toEqual(["coordinator-stopped"]);
  expect(restarts).toEqual([]);
});

test("after stop(), the coordinator takes snapshots and starts again with calls no longer cancelled", async () => {
  const { coordinator, tasks, completed } = setup();
  tasks[1]!.behaviour = "hang-until-cancelled";
  const cut = coordinator.triggerCheckpoint();
  await waitUntil(() => tasks[1]!.calls.includes("result 1"));
  await coordinator.stop();
  expect(await cut).toMatchObject({ state: "aborted", cause: "coordinator-stopped" });

  tasks[1]!.behaviour = "ack";
  expect(await coordinator.triggerSavepoint()).toMatchObject({ state: "completed" });
  coordinator.start();
  await waitUntil(() => completed.length >= 3);
  await coordinator.stop();
  for (const task of tasks) expect(task.calls).toContain("complete 3");
});

test("stop() is prompt while a long poll hangs: the call is cancelled, the tasks are not waited for", async () => {
  const { coordinator, tasks } = setup({ timeoutMs: 60_000 });
  tasks[1]!.behaviour = "hang-until-cancelled";
  const taken = coordinator.triggerCheckpoint();
  await waitUntil(() => tasks[1]!.calls.includes("result 1"));
  const started = performance.now();
  await coordinator.stop();
  expect(performance.now() - started).toBeLessThan(1_000);
  expect(await taken).toMatchObject({ state: "aborted", cause: "coordinator-stopped" });
  // A stopped coordinator sends nothing more: no abort messages that a dead TaskManager would hold up.
  for (const task of tasks) expect(task.calls).not.toContain("abort 1");
});

test("stop() is prompt while notify-complete hangs on a dead TaskManager", async () => {
  const { coordinator, tasks, completed } = setup();
  tasks[0]!.notifyHangs = true;
  const taken = coordinator.triggerCheckpoint();
  await waitUntil(() => tasks[0]!.calls.includes("complete 1"));
  const started = performance.now();
  await coordinator.stop();
  expect(performance.now() - started).toBeLessThan(1_000);
  // The checkpoint was committed and recorded before the stop: it stays completed.
  expect(await taken).toMatchObject({ state: "completed", checkpoint: { checkpointId: 1 } });
  expect(completed.map((c) => c.checkpointId)).toEqual([1]);
});
